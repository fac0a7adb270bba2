"""A lock-protected "latest value" slot between the sampler thread and the UI.

The sampler calls :meth:`LatestSlot.put` after every step; the UI's timer calls
:meth:`LatestSlot.take` a bounded number of times per second. Intermediate values are dropped
(coalesced), so a fast sampler cannot flood the UI, and the newest value is never lost.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: T | None = None
        self._puts = 0
        self._takes = 0

    def put(self, value: T) -> None:
        with self._lock:
            self._value = value
            self._puts += 1

    def take(self) -> T | None:
        """Return the newest value put since the last take, or None if there is none."""
        with self._lock:
            value, self._value = self._value, None
            if value is not None:
                self._takes += 1
            return value

    @property
    def counts(self) -> tuple[int, int]:
        """(values put, values taken): how much coalescing happened."""
        with self._lock:
            return self._puts, self._takes
