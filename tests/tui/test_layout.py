"""Where things go at each terminal size (the pure layout plan)."""

from __future__ import annotations

import pytest

from clipterm.tui import layout


def test_80x24_shows_sample_every_bar_trace_and_thumbnails() -> None:
    plan = layout.plan(80, 24, n_captions=10, image_px=32)
    assert plan.mode == "narrow" and not plan.header and plan.form_width == 0
    assert plan.sample_width == 34 and plan.top_rows >= 17  # 32x32 pixel-exact + caption
    assert plan.bars_rows == 11  # a heading and every caption
    assert plan.trace_rows >= layout.TRACE_MIN_ROWS
    assert plan.grid_rows >= layout.GRID_MIN_ROWS
    assert plan.top_rows + plan.grid_rows == 24 - 2


def test_120x40_puts_the_form_beside_the_results() -> None:
    plan = layout.plan(120, 40)
    assert plan.mode == "wide" and plan.header and plan.form_width == layout.FORM_WIDTH
    assert plan.sample_width + layout.BARS_MIN_WIDTH <= 120 - layout.FORM_WIDTH


def test_the_sample_grows_on_a_large_terminal() -> None:
    assert layout.plan(200, 60).sample_width > layout.plan(120, 40).sample_width
    assert layout.plan(200, 60).sample_width == 66  # 2x: 64 cells


def test_below_the_minimum_a_notice() -> None:
    assert layout.plan(59, 30).too_small and layout.plan(100, 19).too_small
    assert not layout.plan(*layout.MIN_SIZE).too_small


@pytest.mark.parametrize("width", range(60, 260, 7))
@pytest.mark.parametrize("height", range(20, 90, 5))
def test_every_size_fits(width: int, height: int) -> None:
    plan = layout.plan(width, height)
    main = height - 2 - plan.header
    assert plan.top_rows + plan.grid_rows == main
    assert plan.grid_rows >= layout.GRID_MIN_ROWS
    assert plan.bars_rows == min(11, plan.top_rows)
    results = width - plan.form_width
    assert plan.sample_width + layout.BARS_MIN_WIDTH <= results or plan.sample_width <= 10
