"""Pilot tests of runs with a deterministic fake sampler: live updates, cancel, save, history,
errors, quitting."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from clipterm.errors import ModelUnavailableError
from clipterm.tui.app import ClipTermApp, default_saver
from clipterm.tui.quit_screen import QuitScreen

from .fakes import FakeLoader, FakeRunner
from .helpers import Notes, run_to_end, until

SIZE = (120, 40)


async def test_run_updates_step_counter_bars_trace_and_previews(make_app) -> None:
    runner = FakeRunner(pause_at=4)
    app = make_app(runner=runner, n=6, steps=10)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await until(pilot, runner.paused.is_set)
        await until(pilot, lambda: app.last_event is not None and app.last_event.step == 3)
        # mid-run: the status line counts steps, bars, trace and previews show step 3
        assert "step 3/10" in app.status.text and "t=700" in app.status.text
        bars = app.bars.text_lines()
        assert bars[1].startswith("■ ▸seven")
        assert app.grid.count == 6
        assert "step 3/10" in app.grid.text_lines()[0]
        steps, probs = app.trace.mean
        assert steps == [1.0, 2.0, 3.0] and probs.shape == (3, 10)
        assert app.trace.sample is not None and app.trace.sample_label == "sample #0"
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
        # the trace covers every step of the chain, for the mean and the selected sample
        assert app.trace.mean[0] == [float(s) for s in range(1, 11)]
        await pilot.press("ctrl+n")
        assert app.trace.sample_label == "sample #1"
        expected = [float(p[1, 0]) for p in
                    (pt.probs for pt in app.controller.current.traces[0].points())]
        assert np.allclose(app.trace.sample[1][:, 0], expected)


async def test_updates_are_coalesced_and_the_last_state_shows(make_app) -> None:
    runner = FakeRunner()  # no delay: far faster than the UI refresh rate
    app = make_app(runner=runner, steps=300, n=4)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        puts, takes = app.controller.slot.counts
        assert puts == 300
        assert takes < 300 and takes == app.events_shown
        assert app.last_event is not None and app.last_event.step == 300  # the newest event won


async def test_cancel_mid_run_keeps_the_finished_batch(make_app) -> None:
    runner = FakeRunner(pause_at=5, pause_batch=1)  # the second batch waits at step 5
    app = make_app(runner=runner, steps=40, n=4, seed=3)
    async with app.run_test(size=SIZE) as pilot:
        app.form.set_value("batch", "2")
        await pilot.press("ctrl+r")
        await until(pilot, runner.paused.is_set)
        await pilot.press("escape")
        await until(pilot, lambda: not app.running)  # stops between steps
        await pilot.pause()
        ((result, _),) = app.results
        assert not result.completed
        assert len(result.images) == 2  # the first batch finished; the second was cut short
        assert "cancelled" in app.status.text
        assert "cancelled" in app.grid.text_lines()[0]


async def test_cancel_with_one_batch_keeps_the_unfinished_preview_to_save(make_app, tmp_path
                                                                          ) -> None:
    """Batch = n: nothing finishes before Esc; the preview of the unfinished batch is kept,
    shown and saved (status incomplete), instead of "nothing to save"."""
    runner = FakeRunner(pause_at=5, partial_preview=True)
    app = make_app(runner=runner, steps=40, n=4, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        await pilot.press("ctrl+r")
        await until(pilot, runner.paused.is_set)
        await pilot.press("escape")
        await until(pilot, lambda: not app.running)
        await pilot.pause()
        assert "unfinished batch" in app.status.text
        assert app.grid.count == 4 and "unfinished batch" in app.grid.text_lines()[0]
        await pilot.press("ctrl+s")
        await pilot.pause()
        (folder,) = app.saved_paths
        run = json.loads((folder / "run.json").read_text())
        assert run["status"] == "incomplete" and (folder / "partial-grid.png").is_file()
        assert "saved" in notes


async def test_a_finished_run_survives_a_new_run(make_app, tmp_path) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner, n=3, seed=1, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        first = app.shown
        first_images = first.results[0].images.copy()
        app.form.set_value("seed", "2")
        await run_to_end(pilot)
        assert app.shown is not first and app.shown.configs[0].seed == 2
        records = app.controller.history.records
        assert [r.configs[0].seed for r in records] == [1, 2]
        # both are kept unsaved; the first can be shown again and saved
        assert [r.id for r in app.controller.history.unsaved()] == [first.id, app.shown.id]
        await pilot.press("ctrl+g")
        await pilot.pause()
        await pilot.press("down", "enter")  # the list is newest first: the first run is second
        await pilot.pause()
        assert app.shown is first
        assert np.array_equal(app.grid.rows[0].images, first_images)
        assert app.sample_view.caption.startswith("#0 contrastive · seven")
        await pilot.press("ctrl+s")
        await pilot.pause()
        (folder,) = app.saved_paths
        assert json.loads((folder / "run.json").read_text())["config"]["seed"] == 1
        assert [r.id for r in app.controller.history.unsaved()] == [records[1].id]


async def test_every_key_answers(make_app) -> None:
    runner = FakeRunner(pause_at=3)
    app = make_app(runner=runner, n=2)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        notes = Notes(app)
        await pilot.press("ctrl+s")
        assert "nothing to save yet" in notes
        await pilot.press("ctrl+n")
        assert "no samples yet" in notes
        await pilot.press("escape")
        assert "no run to cancel" in notes
        await pilot.press("f2")
        assert "no sample to view yet" in notes
        await pilot.press("ctrl+g")
        assert "no runs yet" in notes
        await pilot.press("ctrl+r")
        await until(pilot, runner.paused.is_set)
        await pilot.press("ctrl+r")
        assert "a run is going" in notes and "esc cancels it" in notes
        await pilot.press("ctrl+s")
        assert notes.count("a run is going") == 2
        assert len(runner.configs) == 1  # no second run started
        runner.release.set()
        await until(pilot, lambda: not app.running)


async def test_save_writes_one_folder_with_the_runs_own_times(make_app, tmp_path) -> None:
    runner = FakeRunner(size=16, run_started="2026-01-02T03:04:05+00:00",
                        run_finished="2026-01-02T03:04:09+00:00")
    app = make_app(runner=runner, n=4, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        await run_to_end(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert len(app.saved_paths) == 1
        folder = app.saved_paths[0]
        assert folder.parent == tmp_path / "out"
        run = json.loads((folder / "run.json").read_text())
        assert run["started"] == "2026-01-02T03:04:05+00:00"
        assert run["created"] == "2026-01-02T03:04:05+00:00"  # the run's time, not the save's
        assert run["finished"] == "2026-01-02T03:04:09+00:00"
        pngs = sorted(p for p in folder.glob("*.png") if p.name != "grid.png")
        assert len(pngs) == 4 and (folder / "grid.png").is_file()
        ((result, _),) = app.results
        assert np.array_equal(np.asarray(Image.open(pngs[0]).convert("RGB")), result.images[0])
        # saving again writes nothing new and says where it is
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert len(list((tmp_path / "out").iterdir())) == 1
        assert "already saved" in notes


async def test_save_to_is_checked_before_saving(make_app, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    app = make_app(runner=FakeRunner(), n=2, saver=default_saver, out_dir=str(blocker))
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        assert "out_dir" in app.form.state.errors
        assert app.query_one("#out_dir").has_class("-field-error")
        await run_to_end(pilot)  # running does not need it
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "cannot save: Save to:" in notes and "is a file" in notes
        assert app.saved_paths == [] and blocker.read_text() == "x"


async def test_worker_error_notifies_and_the_app_survives(make_app) -> None:
    runner = FakeRunner(fail_at=2, error=RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    app = make_app(runner=runner, n=8)
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        await run_to_end(pilot)
        assert "out of memory: try a smaller batch (now 8)" in notes
        assert any("out of memory" in line for line in app.log_panel.lines_written)
        assert "run failed: see the log (ctrl+l)" in app.status.text
        # still usable: a good run works afterwards
        app.controller.sampler = FakeRunner()
        await run_to_end(pilot)
        assert app.results and app.results[0][0].completed


async def test_failure_status_says_in_the_log_when_the_log_is_open(make_app) -> None:
    app = make_app(runner=FakeRunner(fail_at=1, error=ValueError("nan in latents")))
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        await pilot.press("ctrl+l")
        await run_to_end(pilot)
        assert "ValueError: nan in latents" in notes
        assert "see in the log" in app.status.text and "ctrl+l" not in app.status.text
        assert any("ValueError" in line for line in app.log_panel.lines_written)


async def test_missing_weights_disable_run_and_are_said_once(make_app) -> None:
    loader = FakeLoader()
    app = make_app(loader=loader, availability=lambda spec: "the weights of fakepack are not "
                   "on this machine: download them")
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        assert not app.form.state.valid
        assert app.query_one("#model").has_class("-field-error")
        assert app.query_one("#run").disabled
        await pilot.press("ctrl+r")
        await pilot.pause(1.2)  # past the preload delay: nothing is loaded for a missing pack
        assert notes.count("not on this machine") == 1
        assert loader.calls == [] and not app.controller.history.records


async def test_a_load_error_is_notified_once(make_app) -> None:
    loader = FakeLoader(error=ModelUnavailableError("weights for fakepack are damaged"))
    app = make_app(loader=loader)
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        await until(pilot, lambda: len(loader.calls) >= 1)  # the preload fails first
        await until(pilot, lambda: "damaged" in notes)
        await run_to_end(pilot)  # the run fails the same way: said once
        assert notes.count("damaged") == 1
        assert not app.running


async def test_quitting_during_a_run_is_prompt_and_stops_the_sampler(make_app) -> None:
    runner = FakeRunner(delay=0.02)
    app: ClipTermApp = make_app(runner=runner, steps=1000, n=2)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.last_event is not None)
        await pilot.press("ctrl+q")  # nothing finished yet: no question
        await until(pilot, lambda: not app.is_running)
    assert app.controller.wait(10)  # the sampler was told to stop, and does between steps
    assert runner.finished.is_set()
    assert not app.controller.busy_threads()


async def test_quit_asks_about_unsaved_runs(make_app, tmp_path) -> None:
    app = make_app(runner=FakeRunner(), n=2, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, QuitScreen)
        assert "not saved" in str(app.screen.query_one("#quit-question").render())
        await pilot.press("escape")  # stay
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, QuitScreen)
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("s")  # save, then quit
        await until(pilot, lambda: not app.is_running)
    assert len(list((tmp_path / "out").iterdir())) == 1


async def test_quit_twice_quits_without_saving(make_app, tmp_path) -> None:
    app = make_app(runner=FakeRunner(), n=2, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running)
    assert not (tmp_path / "out").exists()


async def test_compare_runs_methods_from_one_seed_as_rows(make_app) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner, n=3, seed=5)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot, key="ctrl+o")
        assert [c.method for c in runner.configs] == ["uncond", "spherical", "contrastive"]
        assert {c.seed for c in runner.configs} == {5}
        assert [c.scale for c in runner.configs] == [None, 5.0, 2.0]  # pack defaults
        titles = [line for line in app.grid.text_lines() if "· done ·" in line]
        assert [t.split(" ")[0] for t in titles] == ["uncond", "spherical", "contrastive"]
        assert app.grid.count == 9
        # selecting past the first row walks into the second, with that method's trace
        for _ in range(3):
            await pilot.press("ctrl+n")
        assert app.sample_view.caption.startswith("#0 spherical")
        assert app.trace.mean is app.trace.mean and len(app.trace.mean[0]) == 10
        await pilot.press("ctrl+b")
        assert app.sample_view.caption.startswith("#2 uncond")


async def test_compare_with_a_bad_method_list_is_flagged_inline(make_app) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner)
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        app.form.set_value("compare", "uncond, banana")
        await pilot.pause()
        assert app.query_one("#compare").has_class("-field-error")  # before ctrl+o is pressed
        assert "unknown method 'banana'" in app.form.state.errors["compare"]
        assert app.form.state.valid  # Run itself is fine
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert not app.running and runner.configs == []
        assert "Compare: unknown method 'banana'" in notes


async def test_text_from_outside_is_shown_literally(make_app) -> None:
    """Markup-like or escape-carrying captions never style, move or break the screen."""
    runner = FakeRunner()
    app = make_app(runner=runner, n=2, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        notes = Notes(app)
        app.form.set_value("prompt", "[red]se[/]ven\x1b[2J")
        app.form.set_value("distractors", "[/bold\none")
        await run_to_end(pilot)
        assert runner.configs[0].prompt == "[red]se[/]ven\x1b[2J"
        bars = "\n".join(app.bars.text_lines())
        assert "▸[red]se[/]ven\\x" in bars and "[/bold" in bars and "\x1b" not in bars
        assert "[red]se[/]ven\\x1b[2J" in app.sample_view.caption
        await pilot.press("ctrl+g")  # the run list shows the prompt as text
        await pilot.pause()
        await pilot.press("escape")
        app.form.set_value("seed", "[b]x")
        await pilot.press("ctrl+r")  # the error names the value as typed
        assert "cannot run: Seed: '[b]x' is not a whole number" in notes


async def test_save_and_quit_during_a_compare_keeps_the_finished_methods(make_app, tmp_path
                                                                          ) -> None:
    runner = FakeRunner(pause_at=2, pause_method="spherical")
    app = make_app(runner=runner, n=2, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await until(pilot, runner.paused.is_set)  # uncond is done, spherical waits
        await until(pilot, lambda: len(app.shown.results) == 1)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        assert app.screen.running  # it says a run is going
        await pilot.press("s")  # stops the run between steps, saves what is done, quits
        await until(pilot, lambda: not app.is_running)
    folders = list((tmp_path / "out").iterdir())
    methods = sorted(json.loads((f / "run.json").read_text())["config"]["method"]
                     for f in folders)
    assert methods == ["uncond"]  # the finished method; spherical had nothing finished
    assert len(runner.configs) == 2  # contrastive never started
