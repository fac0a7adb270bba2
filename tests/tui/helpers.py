from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from textual import events
from textual.pilot import Pilot


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the app run until ``condition()`` holds; fail the test after ``timeout`` seconds
    (generous: a loaded 2-core machine is slow, and nothing here is timed)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)
    await asyncio.sleep(0)


async def run_to_end(pilot: Pilot, key: str = "ctrl+r", timeout: float = 20.0) -> None:
    app = pilot.app
    ended = app.runs_ended  # type: ignore[attr-defined]
    await pilot.press(key)
    await until(pilot, lambda: app.runs_ended > ended, timeout=timeout)  # type: ignore[attr-defined]
    await pilot.pause()


def burst(app: Any, *keys: str) -> None:
    """Post key events all at once, as a terminal delivers a fast burst (no waiting between
    them, unlike ``pilot.press``)."""
    for key in keys:
        char = key if len(key) == 1 else None
        app.post_message(events.Key(key, char))


class Notes:
    """Every notification the app posts (shown ones expire; this keeps them all)."""

    def __init__(self, app: Any) -> None:
        self.messages: list[str] = []
        real = app.notify

        def notify(message: str, *args: Any, **kw: Any) -> None:
            self.messages.append(str(message))
            real(message, *args, **kw)

        app.notify = notify

    def __contains__(self, needle: str) -> bool:
        return any(needle in m for m in self.messages)

    def count(self, needle: str) -> int:
        return sum(needle in m for m in self.messages)
