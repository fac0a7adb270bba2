"""Loaded model packs, cached per (model, device) and loaded at most once, from any thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Loader = Callable[[str, str], Any]


class _Entry:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class PackCache:
    """``get`` blocks until the pack is loaded; concurrent callers share one load.

    A failed load is not cached: the next ``get`` tries again (the user may fix the cause).
    """

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def peek(self, model: str, device: str) -> Any | None:
        """The loaded pack if it is ready, else None (never blocks)."""
        with self._lock:
            entry = self._entries.get((model, device))
        if entry is not None and entry.done.is_set() and entry.error is None:
            return entry.value
        return None

    def get(self, model: str, device: str) -> Any:
        key = (model, device)
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if owner:
                entry = self._entries[key] = _Entry()
        assert entry is not None
        if owner:
            try:
                entry.value = self._loader(model, device)
            except BaseException as exc:
                entry.error = exc
                with self._lock:
                    self._entries.pop(key, None)
            finally:
                entry.done.set()
        else:
            entry.done.wait()
        if entry.error is not None:
            raise entry.error
        return entry.value
