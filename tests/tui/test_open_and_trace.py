"""A past run opened in the app, and the probability trace drawn as `clipterm plot` draws it."""

from __future__ import annotations

import numpy as np

from clipterm import plots
from clipterm.api import make_config
from clipterm.output import read_run, write_run
from clipterm.packs import spec_from_json
from clipterm.trace_plot import caption_style, draw_trace
from clipterm.tui.open_screen import OpenRunScreen
from clipterm.tui.past_run import load_past_run

from .fakes import FAKE_PACK_JSON, FakeRunner
from .helpers import Notes, until

SIZE = (120, 40)


def saved_run(tmp_path):
    spec = spec_from_json(FAKE_PACK_JSON)
    cfg = make_config(spec, prompt="seven", method="contrastive", n=4, steps=10, seed=3)
    result = FakeRunner()(None, cfg)
    rng = np.random.default_rng(0)
    for step in range(1, 11):
        p = rng.dirichlet(np.ones(10)).round(6)
        p[0] += step / 20
        result.prob_trace.append((step, 1000 - 100 * step, (p / p.sum()).tolist()))
    return write_run(result, tmp_path / "out", "fakepack"), result


def test_the_app_and_clipterm_plot_draw_the_trace_alike(tmp_path) -> None:
    folder, result = saved_run(tmp_path)
    info = read_run(folder)
    plot = plots.terminal_plot(plots.prob_trace_plot(info), width=40, height=8)
    steps = [float(r[0]) for r in result.prob_trace]
    probs = [r[2] for r in result.prob_trace]
    app_way = draw_trace(result.captions, steps, probs, 40, 8)
    grid = lambda text: [ln for ln in text.plain.splitlines() if "┤" in ln or "│" in ln]  # noqa: E731
    assert grid(plot) == grid(app_way) and len(grid(plot)) == 8
    # and each caption in the same colour, the target's bold
    for text in (plot, app_way):
        styles = {str(span.style) for span in text.spans}
        assert caption_style(0) in styles and caption_style(0).startswith("bold")
        assert caption_style(3) in styles


async def test_a_past_run_opens_as_if_just_finished(make_app, tmp_path) -> None:
    folder, result = saved_run(tmp_path)
    past = load_past_run(folder)
    app = make_app(open_run=past, preload=False)
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        await pilot.pause()
        assert app.shown.state == "opened" and app.grid.count == 4
        assert np.array_equal(app.grid.rows[0].images, result.images)
        mean = float(result.probs[:, 0].mean()) * 100
        assert f"{mean:5.1f}%" in app.bars.text_lines()[1]
        steps, probs = app.trace.mean
        assert steps == [float(s) for s in range(1, 11)]
        assert np.allclose(probs, [r[2] for r in result.prob_trace], atol=1e-5)
        # the widget shows exactly the shared drawing at its size
        shown = [ln for ln in app.trace.render().plain.splitlines() if "┤" in ln]
        width = app.trace.content_size.width - 5
        rows = max(2, app.trace.content_size.height - 3)
        expected = draw_trace(result.captions, steps, probs, width, rows)
        assert shown == [ln for ln in expected.plain.splitlines() if "┤" in ln]
        await pilot.press("ctrl+s")
        assert "already in" in notes


async def test_the_open_action_asks_for_a_folder(make_app, tmp_path) -> None:
    folder, _ = saved_run(tmp_path)
    app = make_app(preload=False)
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        app.action_open_run()
        await until(pilot, lambda: isinstance(app.screen, OpenRunScreen)
                    and bool(app.screen.query("#open-path")))
        app.screen.query_one("#open-path").value = str(tmp_path / "nope")
        await pilot.press("enter")
        await until(pilot, lambda: "is not a folder" in notes)
        assert app.shown is None
        app.action_open_run()
        await until(pilot, lambda: isinstance(app.screen, OpenRunScreen)
                    and bool(app.screen.query("#open-path")))
        app.screen.query_one("#open-path").value = str(folder)
        await pilot.press("enter")
        await until(pilot, lambda: app.shown is not None)
        assert app.grid.count == 4 and app.shown.source == folder
