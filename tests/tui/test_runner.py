"""The run controller driven directly, without the app: threads, slot, history, traces."""

from __future__ import annotations

import pytest

from clipterm.api import make_config
from clipterm.packs import spec_from_json
from clipterm.tui.messages import PackReady, ResultReady, RunEnded, RunFailed
from clipterm.tui.runner import RunController, RunHistory

from .fakes import FAKE_PACK_JSON, FakeLoader, FakeRunner

WAIT = 30.0  # generous: a loaded machine is slow; nothing here is timed


@pytest.fixture
def spec():
    return spec_from_json(FAKE_PACK_JSON)


def config(spec, **kw):
    return make_config(spec, prompt="seven", method=kw.pop("method", "contrastive"), **kw)


def test_a_run_records_results_traces_and_messages(spec) -> None:
    posted: list[object] = []
    runner = FakeRunner()
    ctl = RunController(posted.append, loader=FakeLoader(), sampler=runner)
    record = ctl.start("fake", "cpu", [config(spec, n=4, steps=5)])
    assert ctl.wait(WAIT) and not ctl.running
    assert record.state == "done" and record.pack_name == "fakepack"
    (result,) = record.results
    assert result.completed and len(result.images) == 4
    trace = record.traces[0]
    steps, mean = trace.mean()
    assert steps == [1.0, 2.0, 3.0, 4.0, 5.0] and mean.shape == (5, 10)
    sample_steps, sample = trace.sample(2)
    assert sample_steps == steps and sample.shape == (5, 10)
    assert [type(m) for m in posted] == [PackReady, ResultReady, RunEnded]
    assert ctl.take_event().step == 5 and ctl.take_event() is None


def test_cancel_keeps_finished_batches_and_losses_are_kept(spec) -> None:
    runner = FakeRunner(pause_at=3, pause_batch=1)
    ctl = RunController(lambda m: None, loader=FakeLoader(), sampler=runner)
    record = ctl.start("fake", "cpu", [config(spec, n=4, batch=2, steps=6)])
    assert runner.paused.wait(WAIT)
    assert ctl.cancel() and ctl.cancelling and not ctl.cancel()
    assert ctl.wait(WAIT)
    assert record.state == "cancelled" and len(record.results[0].images) == 2
    assert record.savable and record.unsaved


def test_a_second_run_cannot_start_while_one_runs(spec) -> None:
    runner = FakeRunner(pause_at=1)
    ctl = RunController(lambda m: None, loader=FakeLoader(), sampler=runner)
    ctl.start("fake", "cpu", [config(spec, n=1, steps=2)])
    with pytest.raises(RuntimeError, match="a run is going"):
        ctl.start("fake", "cpu", [config(spec, n=1, steps=2)])
    runner.release.set()
    assert ctl.wait(WAIT)


def test_failures_are_recorded_and_posted(spec) -> None:
    posted: list[object] = []
    ctl = RunController(posted.append, loader=FakeLoader(),
                        sampler=FakeRunner(fail_at=1, error=ValueError("boom")))
    record = ctl.start("fake", "cpu", [config(spec, n=1, steps=2)])
    assert ctl.wait(WAIT)
    assert record.state == "failed" and record.error == "ValueError: boom"
    assert any(isinstance(m, RunFailed) for m in posted) and isinstance(posted[-1], RunEnded)


def test_shutdown_does_not_wait_for_a_stuck_sampler(spec) -> None:
    runner = FakeRunner(pause_at=1)  # holds until released (or cancelled)
    ctl = RunController(lambda m: None, loader=FakeLoader(), sampler=runner)
    ctl.start("fake", "cpu", [config(spec, n=1, steps=2)])
    assert runner.paused.wait(WAIT)
    ctl.shutdown(timeout=WAIT)  # the fake honours cancel while paused
    assert not ctl.running and not ctl.busy_threads()
    assert all(t.daemon for t in ctl.busy_threads())


def test_history_keeps_runs_and_drops_the_oldest_saved_first(spec) -> None:
    history = RunHistory(limit=3)
    cfg = config(spec, n=1, steps=1)
    result = FakeRunner()(None, cfg)

    def finished():
        record = history.new("m", "cpu", [cfg])
        record.results, record.state = [result], "done"
        return record

    a, b, c = finished(), finished(), finished()
    b.saved = [FAKE_PACK_JSON]
    d = finished()
    assert [r.id for r in history.records] == [a.id, c.id, d.id]  # b (saved) went first
    assert history.dropped_unsaved == 0
    finished()
    assert history.dropped_unsaved == 1 and a not in history.records
