"""The app driving the real sampler: the tiny random pack, and the embedded digits pack."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input

from clipterm.tui.app import ClipTermApp
from clipterm.tui.themes import repo_themes_dir

from .helpers import run_to_end

SIZE = (120, 40)


async def test_full_run_on_the_tiny_pack(tiny_pack, tmp_path) -> None:
    app = ClipTermApp(
        model=str(tiny_pack),
        device="cpu",
        n=4,
        steps=6,
        config_dir=tmp_path / "cfg",
        theme_dirs=[repo_themes_dir()],
        out_dir=str(tmp_path / "out"),
    )
    async with app.run_test(size=SIZE) as pilot:
        assert app.form.state.valid, app.form.state.error
        await run_to_end(pilot, timeout=120)
        assert app.results, app.log_panel.lines_written
        result, pack_name = app.results[0]
        assert result.completed and len(result.images) == 4
        assert app.last_event is not None and app.last_event.total == 6
        # the bars show the real final probabilities, target first
        assert app.bars.text_lines()[1].startswith("■ ▸one")
        assert f"{float(result.probs[:, 0].mean()) * 100:5.1f}%" in app.bars.text_lines()[1]
        assert app.grid.count == 4 and "▀" in "".join(app.grid.text_lines())
        assert "finished: 4 samples" in app.status.text
        await pilot.press("ctrl+s")
        await pilot.pause()
        folder = app.saved_paths[0]
        meta = json.loads((folder / "run.json").read_text())
        # the run's own wall-clock times, not the time it was saved
        assert meta["started"] == result.started and meta["created"] == result.started
        assert meta["finished"] == result.finished and meta["status"] == "complete"
        assert len([p for p in folder.glob("*.png") if p.name != "grid.png"]) == 4


async def test_cancel_real_run_on_the_tiny_pack(tiny_pack, tmp_path) -> None:
    app = ClipTermApp(
        model=str(tiny_pack),
        device="cpu",
        n=2,
        steps=400,
        config_dir=tmp_path / "cfg",
        theme_dirs=[repo_themes_dir()],
    )
    async with app.run_test(size=SIZE) as pilot:
        from .helpers import until

        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.last_event is not None, timeout=120)
        await pilot.press("escape")
        await until(pilot, lambda: not app.running, timeout=5)
        assert app.results and not app.results[0][0].completed
        assert "cancelled" in app.status.text
        # nothing finished (one batch): the unfinished batch's preview is kept to look at
        assert app.shown.savable and app.grid.count == 2


@pytest.mark.slow
async def test_run_on_the_digits_pack(tmp_path) -> None:
    from clipterm.packs import builtin_pack_names

    if "digits" not in builtin_pack_names():
        pytest.skip("the digits pack is not built yet")
    try:
        from clipterm.models import load_pack

        load_pack("digits", device="cpu")
    except Exception as exc:  # weights not trained yet
        pytest.skip(f"digits pack not loadable: {exc}")
    app = ClipTermApp(
        model="digits",
        device="cpu",
        prompt="seven",
        n=8,
        config_dir=tmp_path / "c",
        theme_dirs=[repo_themes_dir()],
    )
    async with app.run_test(size=SIZE) as pilot:
        assert app.query_one("#model", Input).value == "digits"
        assert app.form.state.valid, app.form.state.error
        await run_to_end(pilot, timeout=120)
        result, _ = app.results[0]
        assert result.completed and len(result.images) == 8
        assert app.bars.text_lines()[1].startswith("■ ▸seven")
        assert app.grid.count == 8
