"""Pilot tests of runs with a deterministic fake sampler: live updates, cancel, save, errors."""

from __future__ import annotations

import json
import threading

import numpy as np
from PIL import Image

from clipterm.errors import ModelUnavailableError
from clipterm.tui.app import ClipTermApp, default_saver

from .fakes import FakeLoader, FakeRunner
from .helpers import run_to_end, until

SIZE = (120, 40)


async def test_run_updates_step_counter_bars_and_previews(make_app) -> None:
    runner = FakeRunner(pause_at=4)
    app = make_app(runner=runner, n=6, steps=10)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await until(pilot, runner.paused.is_set)
        await until(pilot, lambda: app.last_event is not None and app.last_event.step == 3)
        # mid-run: the status line counts steps, bars and previews show step 3
        assert "step 3/10" in app.status.text and "t=700" in app.status.text
        bars = app.bars.text_lines()
        assert bars[1].startswith("▸seven")
        assert app.grid.count == 6
        assert "step 3/10" in app.grid.text_lines()[0]
        assert app.check_action("run", ()) is None  # Run is off while running
        runner.release.set()
        await until(pilot, lambda: not app.running)
        await pilot.pause()
        assert "finished: 6 samples" in app.status.text
        assert app.grid.text_lines()[0].startswith("contrastive · done · 6/6 samples")
        assert "#5" in "".join(app.grid.text_lines())
        ((result, pack_name),) = app.results
        assert result.completed and pack_name == "fakepack"
        # the bars show the final probabilities: the mean over the samples, target first
        mean_target = float(result.probs[:, 0].mean()) * 100
        assert f"{mean_target:5.1f}%" in app.bars.text_lines()[1]
        assert app.sample_view.caption.startswith("#0 contrastive · seven")
        assert "▀" in "".join(app.grid.text_lines())


async def test_updates_are_coalesced_and_the_last_state_shows(make_app) -> None:
    runner = FakeRunner()  # no delay: far faster than the UI refresh rate
    app = make_app(runner=runner, steps=300, n=4)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        puts, takes = app._slot.counts
        assert puts == 300
        assert takes < 300 and takes == app.events_shown
        assert app.last_event is not None and app.last_event.step == 300  # the newest event won


async def test_cancel_mid_run_keeps_what_is_done(make_app) -> None:
    runner = FakeRunner(pause_at=5, pause_batch=1)  # the second batch waits at step 5
    app = make_app(runner=runner, steps=40, n=4, seed=3)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#batch").value = "2"
        await pilot.pause()
        await pilot.press("ctrl+r")
        await until(pilot, runner.paused.is_set)
        await pilot.press("escape")
        await until(pilot, lambda: not app.running, timeout=2)  # stops between steps, promptly
        await pilot.pause()
        ((result, _),) = app.results
        assert not result.completed
        assert len(result.images) == 2  # the first batch finished; the second was cut short
        assert "cancelled" in app.status.text
        assert runner.finished.is_set()
        assert "cancelled" in app.grid.text_lines()[0]


async def test_save_writes_a_valid_run_folder(make_app, tmp_path) -> None:
    app = make_app(runner=FakeRunner(size=16), n=4, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        assert app.check_action("save", ()) is None  # nothing to save yet
        await run_to_end(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert len(app.saved_paths) == 1
        folder = app.saved_paths[0]
        assert folder.parent == tmp_path / "out"
        run = json.loads((folder / "run.json").read_text())
        assert json.dumps(run)  # valid JSON
        pngs = sorted(p for p in folder.glob("*.png") if p.name != "grid.png")
        assert len(pngs) == 4 and (folder / "grid.png").is_file()
        ((result, _),) = app.results
        assert np.array_equal(np.asarray(Image.open(pngs[0]).convert("RGB")), result.images[0])
        assert any("saved" in line for line in app.log_panel.lines_written)


async def test_worker_error_notifies_and_the_app_survives(make_app) -> None:
    runner = FakeRunner(
        fail_at=2, error=RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
    )
    app = make_app(runner=runner, n=8)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await run_to_end(pilot)
        messages = [n.message for n in app._notifications]
        assert any("out of memory: try a smaller batch (now 8)" in m for m in messages)
        assert any("out of memory" in line for line in app.log_panel.lines_written)
        assert "run failed" in app.status.text
        # still usable: a good run works afterwards
        app._runner = FakeRunner()
        await run_to_end(pilot)
        assert app.results and app.results[0][0].completed


async def test_bug_in_worker_is_logged_with_its_type(make_app) -> None:
    app = make_app(runner=FakeRunner(fail_at=1, error=ValueError("nan in latents")))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await run_to_end(pilot)
        assert any("ValueError: nan in latents" in n.message for n in app._notifications)
        assert any(
            "Traceback" in line or "ValueError" in line for line in app.log_panel.lines_written
        )


async def test_missing_weights_are_reported(make_app) -> None:
    loader = FakeLoader(error=ModelUnavailableError("weights for fakepack are not on this machine"))
    app = make_app(loader=loader, preload=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await run_to_end(pilot)
        assert any("not on this machine" in n.message for n in app._notifications)
        assert not app.running and app.check_action("run", ()) is True


async def test_quitting_during_a_run_cancels_it_and_leaves_no_thread(make_app) -> None:
    runner = FakeRunner(delay=0.02)
    app: ClipTermApp = make_app(runner=runner, steps=1000, n=2)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.last_event is not None)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running, timeout=5)
    # the sampler returned (cancelled between steps) before the app exited: nothing abandoned
    assert runner.finished.is_set() and app._run_done.is_set()
    assert app._cancel.is_set()
    assert not any(
        t.name == name and t.is_alive() and not runner.finished.is_set()
        for t in threading.enumerate()
        for name in runner.thread_names
    )


async def test_compare_runs_methods_from_one_seed_as_rows(make_app) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner, n=3, seed=5)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot, key="ctrl+o")
        assert [c.method for c in runner.configs] == ["uncond", "spherical", "contrastive"]
        assert {c.seed for c in runner.configs} == {5}
        assert [c.scale for c in runner.configs] == [None, 5.0, 2.0]  # uncond has none; pack defaults
        titles = [line for line in app.grid.text_lines() if "· done ·" in line]
        assert [t.split(" ")[0] for t in titles] == ["uncond", "spherical", "contrastive"]
        assert app.grid.count == 9
        # selecting past the first row walks into the second
        for _ in range(3):
            await pilot.press("ctrl+n")
        assert app.sample_view.caption.startswith("#0 spherical")
        await pilot.press("ctrl+b")
        assert app.sample_view.caption.startswith("#2 uncond")


async def test_compare_with_a_bad_method_list_is_flagged(make_app) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        app.query_one("#compare").value = "uncond, magic"
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert not app.running and runner.configs == []
        assert app.query_one("#compare").has_class("-invalid")
        assert any("unknown method 'magic'" in n.message for n in app._notifications)
