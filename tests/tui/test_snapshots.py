"""Snapshot tests (pytest-textual-snapshot) at 120x40 and 80x24 with deterministic content.

Update after an intended visual change: ``pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the SVGs in ``__snapshots__/`` before committing them.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from clipterm.tui.log_panel import LogPanel

from .fakes import FakeRunner
from .helpers import until

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LogPanel, "clock", staticmethod(lambda: "12:00:00"))


async def steady_cursor(pilot: Pilot) -> None:
    """A blinking cursor would make the screenshot depend on timing."""
    for widget in pilot.app.query(Input):
        widget.cursor_blink = False
    for area in pilot.app.query(TextArea):
        area.cursor_blink = False
    await pilot.pause()


@pytest.mark.parametrize("size", [SIZE, (80, 24)], ids=["120x40", "80x24"])
def test_idle(make_app, snap_compare, size) -> None:
    app = make_app(out_dir="out", preload=False)
    assert snap_compare(app, terminal_size=size, run_before=steady_cursor)


@pytest.mark.parametrize("size", [SIZE, (80, 24)], ids=["120x40", "80x24"])
def test_mid_run(make_app, snap_compare, size) -> None:
    runner = FakeRunner(pause_at=6, size=32)
    app = make_app(out_dir="out", runner=runner, n=8, steps=10)

    async def run_before(pilot: Pilot) -> None:
        await steady_cursor(pilot)
        await pilot.press("ctrl+r")
        await until(pilot, runner.paused.is_set)
        await until(pilot, lambda: app.last_event is not None and app.last_event.step == 5)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
    runner.release.set()


def test_help_screen(make_app, snap_compare) -> None:
    app = make_app(out_dir="out", preload=False)

    async def run_before(pilot: Pilot) -> None:
        await steady_cursor(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
