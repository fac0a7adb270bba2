"""The app at the sizes people use: 80x24 (every bar visible while running), smaller, larger,
resized, under NO_COLOR, and with the mouse."""

from __future__ import annotations

import pytest
from textual import events
from textual.geometry import Region

from clipterm.tui import layout
from clipterm.tui.bars import ProbabilityBars
from clipterm.tui.sample_view import SampleView

from .fakes import CAPTIONS, FakeRunner
from .helpers import run_to_end, until


def fully_visible(app, widget) -> bool:
    """The widget is on screen, not cut off, and nothing covers its corners."""
    screen = Region(0, 0, *app.size)
    region = widget.region
    if not region or screen.intersection(region) != region:
        return False
    corners = [(region.x, region.y), (region.right - 1, region.bottom - 1)]
    return all(app.screen.get_widget_at(x, y)[0] is widget for x, y in corners)


async def test_80x24_run_shows_every_caption_sample_and_step(make_app) -> None:
    runner = FakeRunner(pause_at=4, size=32)
    app = make_app(runner=runner, n=16, steps=10)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.plan.mode == "narrow"
        await until(pilot, lambda: fully_visible(app, app.query_one("#run")))  # a way to run
        await pilot.press("ctrl+r")
        await until(pilot, lambda: runner.paused.is_set() and app.last_event is not None
                    and app.last_event.step == 3)
        bars = app.query_one(ProbabilityBars)
        # (the layout settles after the results pane replaces the form: wait, never time)
        await until(pilot, lambda: fully_visible(app, bars) and fully_visible(app, app.grid))
        assert bars.region.height >= len(CAPTIONS) + 1
        lines = bars.text_lines()
        for caption in CAPTIONS:
            (line,) = [ln for ln in lines if f" {caption} " in ln or f"▸{caption} " in ln]
            assert line.rstrip().endswith("%") and line.count("%") == 2
        sample = app.query_one(SampleView)
        assert fully_visible(app, sample) and sample.factor == 1.0  # 32x32 pixel-exact
        assert fully_visible(app, app.status) and "step 3/10" in app.status.text
        assert app.trace.display and fully_visible(app, app.trace)
        assert fully_visible(app, app.grid)
        runner.release.set()
        await until(pilot, lambda: not app.running)
        await pilot.press("ctrl+f")  # the form again, Run on screen
        await until(pilot, lambda: fully_visible(app, app.query_one("#run")))


async def test_60x20_is_usable_and_smaller_shows_a_notice(make_app) -> None:
    app = make_app(runner=FakeRunner(size=32), n=4)
    async with app.run_test(size=(60, 20)) as pilot:
        await run_to_end(pilot)
        await until(pilot, lambda: fully_visible(app, app.bars)
                    and fully_visible(app, app.sample_view))
        assert len(app.bars.text_lines()) == len(CAPTIONS) + 1
        await pilot.resize_terminal(50, 15)
        notice = app.query_one("#too-small")
        await until(pilot, lambda: app.plan.too_small and notice.display)
        text = str(notice.render())
        assert f"at least {layout.MIN_SIZE[0]}x{layout.MIN_SIZE[1]}" in text and "50x15" in text
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: app.plan.mode == "wide" and fully_visible(app, app.bars))
        await pilot.press("ctrl+q")


async def test_the_sample_grows_on_a_large_terminal(make_app) -> None:
    app = make_app(runner=FakeRunner(size=32), n=4)
    async with app.run_test(size=(200, 60)) as pilot:
        await run_to_end(pilot)
        await until(pilot, lambda: app.sample_view.factor == 2.0)
        assert app.sample_view.region.width >= 64


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_no_color_starts_runs_and_draws(make_app, monkeypatch, size) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(runner=FakeRunner(size=32), n=4)
    async with app.run_test(size=size) as pilot:
        assert app.no_color
        await run_to_end(pilot)
        shot = app.export_screenshot()
        assert "▀" in shot and "seven" in shot
        await pilot.press("ctrl+n")
        assert app.sample_view.caption.startswith("#1 ")


async def test_clicking_a_thumbnail_selects_it_and_the_wheel_scrolls(make_app) -> None:
    app = make_app(runner=FakeRunner(size=32), n=16)
    async with app.run_test(size=(80, 24)) as pilot:
        await run_to_end(pilot)
        grid = app.grid
        cell = grid.thumb_factor * 32 + 1  # a thumbnail and its gap
        offset = (int(cell * 2) + 1, 1)  # inside the third thumbnail of the first line
        await pilot.click(grid, offset=offset)
        await pilot.pause()
        assert grid.selected == 2 and app.sample_view.caption.startswith("#2 ")
        lines = grid.text_lines()
        assert len(lines) > grid.content_size.height  # more than fits: it scrolls
        top = grid.top
        x, y = grid.region.x + 2, grid.region.y + 1
        app.post_message(events.MouseScrollDown(grid, x, y, 0, 0, 0, False, False, False,
                                                screen_x=x, screen_y=y))  # the mouse wheel
        await until(pilot, lambda: grid.top > top)
