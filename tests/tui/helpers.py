from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from textual.pilot import Pilot


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)
    await asyncio.sleep(0)


async def run_to_end(pilot: Pilot, key: str = "ctrl+r", timeout: float = 10.0) -> None:
    app = pilot.app
    ended = app.runs_ended  # type: ignore[attr-defined]
    await pilot.press(key)
    await until(pilot, lambda: app.runs_ended > ended, timeout=timeout)  # type: ignore[attr-defined]
    await pilot.pause()
