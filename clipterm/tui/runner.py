"""The app's run controller: the sampler thread, its newest event, and this sitting's runs.

:class:`RunController` owns everything about running that is not drawing: the model packs
(loaded once per model and device, in the background), the sampler thread of the current run,
the slot holding its newest :class:`~clipterm.events.StepEvent`, and the history of this
sitting's runs (:class:`RunRecord`: configs, results, loss and probability traces, where it was
saved). It draws nothing: it reports through a ``post`` callable (the app passes its thread-safe
``post_message``; tests pass ``list.append``) the dataclass messages of
:mod:`clipterm.tui.messages`, so tests drive it directly.

Threads: the sampler and the pack loader run in daemon threads. They write only into their
own run record (under its lock) and the slot, then post a message; the UI pulls the newest event
at its own pace, so a fast sampler never floods it. Being daemons, they never hold up quitting:
``shutdown`` asks the sampler to stop between steps and waits a moment, no more.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipterm.animation import FrameRecorder
from clipterm.config import RunConfig
from clipterm.errors import UserError
from clipterm.events import RunResult, StepEvent
from clipterm.tui.latest import LatestSlot
from clipterm.tui.messages import PackFailed, PackReady, ResultReady, RunEnded, RunFailed
from clipterm.tui.pack_cache import PackCache

Loader = Callable[[str, str], Any]
Sampler = Callable[..., RunResult]
Post = Callable[[Any], Any]

MAX_HISTORY = 12  # runs kept in a sitting; the oldest go first
# How much nicer than the UI the sampler and loader threads are (Linux sets niceness per thread,
# and torch's worker threads inherit it): on a busy CPU the keys still answer at once.
WORKER_NICENESS = int(os.environ.get("CLIPTERM_WORKER_NICENESS", "5"))


def lower_thread_priority(step: int = WORKER_NICENESS) -> None:
    """Make the calling thread ``step`` nicer (where the system allows; else nothing)."""
    if step <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except OSError:
        pass


def default_loader(model: str, device: str) -> Any:
    from clipterm.models import load_pack

    return load_pack(model, device=device)


def default_sampler(pack: Any, cfg: RunConfig, on_event: Callable[[StepEvent], None] | None = None,
                    cancel: threading.Event | None = None) -> RunResult:
    from clipterm.sampling import sample

    return sample(pack, cfg, on_event=on_event, cancel=cancel)


def is_out_of_memory(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def describe_error(exc: BaseException, cfg: RunConfig | None = None) -> str:
    """One line for the user: their own errors as is, OOM with a way out, bugs by type."""
    if is_out_of_memory(exc):
        batch = cfg.batch if cfg is not None else None
        hint = f" (now {batch})" if batch else ""
        return f"out of memory: try a smaller batch{hint} or fewer samples"
    if isinstance(exc, UserError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- traces
@dataclass(frozen=True)
class TracePoint:
    batch_index: int
    step: int
    total: int
    probs: np.ndarray  # [B, C]: each sample of the batch (or [1, C]: a recorded batch mean)
    sample_offset: int = 0


class ProbTrace:
    """Per-caption probabilities over the steps of one chain per batch, as the run goes."""

    def __init__(self, captions: Sequence[str], per_sample: bool = True) -> None:
        self.captions = tuple(captions)
        self.per_sample = per_sample  # False: only batch means (a run opened from its folder)
        self._points: list[TracePoint] = []
        self._lock = threading.Lock()

    def add(self, event: StepEvent) -> None:
        if event.probs is None or not len(event.probs):
            return
        point = TracePoint(event.batch_index, event.step, event.total,
                           np.asarray(event.probs, dtype=np.float32), event.sample_offset)
        with self._lock:
            self._points.append(point)

    @classmethod
    def from_means(cls, captions: Sequence[str], rows: Sequence[tuple[int, Sequence[float]]],
                   total: int) -> ProbTrace:
        """A trace of recorded batch means: (step, probabilities) rows, as run.json keeps."""
        trace = cls(captions, per_sample=False)
        for step, probs in rows:
            trace._points.append(TracePoint(0, int(step), total,
                                            np.asarray([probs], dtype=np.float32)))
        return trace

    def points(self) -> list[TracePoint]:
        with self._lock:
            return list(self._points)

    def __len__(self) -> int:
        with self._lock:
            return len(self._points)

    def batch_of(self, sample_index: int) -> int | None:
        for p in self.points():
            if p.sample_offset <= sample_index < p.sample_offset + len(p.probs):
                return p.batch_index
        return None

    def mean(self, batch_index: int | None = None) -> tuple[list[float], np.ndarray]:
        """(steps, [S, C] batch-mean probabilities) of one batch's chain (default: the last)."""
        pts = self.points()
        if not pts:
            return [], np.zeros((0, len(self.captions)), np.float32)
        b = pts[-1].batch_index if batch_index is None else batch_index
        chosen = [p for p in pts if p.batch_index == b]
        if not chosen:
            return [], np.zeros((0, len(self.captions)), np.float32)
        return [float(p.step) for p in chosen], np.stack([p.probs.mean(axis=0) for p in chosen])

    def sample(self, sample_index: int) -> tuple[list[float], np.ndarray] | None:
        """(steps, [S, C]) of one sample, or None when it was not traced (another batch's run
        not recorded per sample)."""
        if not self.per_sample:
            return None
        chosen = [p for p in self.points()
                  if p.sample_offset <= sample_index < p.sample_offset + len(p.probs)]
        if not chosen:
            return None
        return ([float(p.step) for p in chosen],
                np.stack([p.probs[sample_index - p.sample_offset] for p in chosen]))


class FrameTaker:
    """Keeps the denoising frames of a run from its step events, for an animation written later
    (:func:`clipterm.output.write_animations`): each chain's previews at the steps of the
    reporter's regular grid (about 50 a chain, whatever the number of steps), so the frames
    are evenly spaced and memory stays bounded. A chain that starts again (an out-of-memory
    split) starts its frames again."""

    GRID_POINTS = 50  # as the core's Reporter

    def __init__(self) -> None:
        self.recorder = FrameRecorder()
        self._last_step: dict[tuple[str, int], int] = {}

    def add(self, event: StepEvent) -> None:
        if event.preview is None or not len(event.preview):
            return
        every = max(1, event.total // self.GRID_POINTS)
        if event.step % every and event.step != event.total:
            return
        indices = range(event.sample_offset, event.sample_offset + len(event.preview))
        key = (event.phase, event.batch_index)
        if event.step <= self._last_step.get(key, 0):
            self.recorder.reset(indices)
        self._last_step[key] = event.step
        self.recorder.add(indices, np.asarray(event.preview))


# ----------------------------------------------------------------------------- history
@dataclass
class RunRecord:
    """One run of this sitting (several methods when comparing), as the app shows it."""

    id: int
    model: str
    device: str
    configs: list[RunConfig]
    pack_name: str = ""
    results: list[RunResult] = field(default_factory=list)
    traces: list[ProbTrace] = field(default_factory=list)  # one per config, as they start
    losses: list[list[float]] = field(default_factory=list)  # optimize: one per config
    frames: list[FrameRecorder] = field(default_factory=list)  # one per config (not opened)
    state: str = "running"  # running | done | cancelled | failed | opened
    error: str | None = None
    saved: list[Path] = field(default_factory=list)
    folders: dict[int, Path] = field(default_factory=dict)  # config index -> its saved folder
    animations: list[Path] = field(default_factory=list)  # animation files written
    created: float = field(default_factory=time.time)
    source: Path | None = None  # the folder it was opened from

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def n_images(self) -> int:
        return sum(len(r.images) for r in self.results)

    @property
    def savable(self) -> bool:
        """Something to write: finished samples, or a preview of an unfinished batch."""
        return any(len(r.images) or r.partial_preview is not None for r in self.results)

    @property
    def unsaved(self) -> bool:
        return not self.running and self.source is None and self.savable and not self.saved

    @property
    def title(self) -> str:
        methods = ", ".join(dict.fromkeys(c.method for c in self.configs))
        prompt = self.configs[0].prompt if self.configs else ""
        return f"#{self.id} {methods} · {prompt!r}"

    def describe(self) -> str:
        where = f" · saved {self.saved[0]}" if self.saved else (
            f" · from {self.source}" if self.source else (" · unsaved" if self.savable else ""))
        return f"{self.title} · {self.state} · {self.n_images} samples{where}"


class RunHistory:
    """This sitting's runs, newest last; at most ``limit`` (the oldest are dropped)."""

    def __init__(self, limit: int = MAX_HISTORY) -> None:
        self.limit = limit
        self.records: list[RunRecord] = []
        self.dropped_unsaved = 0
        self._ids = itertools.count(1)

    def new(self, model: str, device: str, configs: Sequence[RunConfig]) -> RunRecord:
        record = RunRecord(next(self._ids), model, device, list(configs))
        self.records.append(record)
        while len(self.records) > self.limit:
            old = next((r for r in self.records if not r.running and not r.unsaved),
                       next(r for r in self.records if not r.running))
            self.dropped_unsaved += old.unsaved
            self.records.remove(old)
        return record

    def get(self, record_id: int) -> RunRecord | None:
        return next((r for r in self.records if r.id == record_id), None)

    @property
    def latest(self) -> RunRecord | None:
        return self.records[-1] if self.records else None

    def unsaved(self) -> list[RunRecord]:
        return [r for r in self.records if r.unsaved]


# ----------------------------------------------------------------------------- controller
class RunController:
    """Starts, cancels and records runs; loads packs in the background. UI-framework free."""

    def __init__(self, post: Post, loader: Loader | None = None,
                 sampler: Sampler | None = None, history_limit: int = MAX_HISTORY) -> None:
        self.post = post
        self.packs = PackCache(loader or default_loader)
        self.sampler: Sampler = sampler or default_sampler
        self.history = RunHistory(history_limit)
        self.slot: LatestSlot[StepEvent] = LatestSlot()
        self.current: RunRecord | None = None
        self.done = threading.Event()
        self.done.set()
        self._cancel = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return not self.done.is_set()

    @property
    def cancelling(self) -> bool:
        return self.running and self._cancel.is_set()

    def take_event(self) -> StepEvent | None:
        """The newest step event since the last call (older ones are dropped)."""
        return self.slot.take()

    # ------------------------------------------------------------------ packs
    def preload(self, model: str, device: str) -> None:
        """Load a pack in the background (no-op when it is loaded); posts PackReady/Failed."""
        if self.packs.peek(model, device) is not None:
            return
        self._spawn(self._load, (model, device), "clipterm-preload")

    def busy_threads(self) -> list[threading.Thread]:
        """The controller's threads still running (a sampler, a pack loader)."""
        return [t for t in self._threads if t.is_alive()]

    def _load(self, model: str, device: str) -> None:
        try:
            pack = self.packs.get(model, device)
        except BaseException as exc:  # reported; the app stays usable
            self.post(PackFailed(model, device, exc, preload=True))
            return
        self.post(PackReady(model, device, pack))

    # ------------------------------------------------------------------ runs
    def start(self, model: str, device: str, configs: Sequence[RunConfig]) -> RunRecord:
        """Start a run of ``configs`` (one, or one per compared method) in a new thread."""
        if self.running:
            raise RuntimeError("a run is going: cancel it first")
        if not configs:
            raise ValueError("nothing to run")
        record = self.history.new(model, device, configs)
        self.current = record
        self._cancel = threading.Event()
        self.slot = LatestSlot()
        self.done = threading.Event()
        self._spawn(self._run, (record, self._cancel, self.slot, self.done),
                    f"clipterm-run-{record.id}")
        return record

    def _spawn(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        def body() -> None:
            lower_thread_priority()
            target(*args)

        thread = threading.Thread(target=body, daemon=True, name=name)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def cancel(self) -> bool:
        """Ask the current run to stop between steps; False when nothing runs."""
        if not self.running or self._cancel.is_set():
            return False
        self._cancel.set()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the sampler thread has returned (True) or ``timeout`` passed."""
        return self.done.wait(timeout)

    def shutdown(self, timeout: float = 0.5) -> bool:
        """Stop the run for quitting: cancel, and wait at most ``timeout`` seconds."""
        if self.running:
            self._cancel.set()
        return self.done.wait(timeout)

    def _run(self, record: RunRecord, cancel: threading.Event, slot: LatestSlot[StepEvent],
             done: threading.Event) -> None:
        cfg: RunConfig | None = None
        try:
            pack = self.packs.get(record.model, record.device)
            record.pack_name = str(getattr(pack, "name", record.model))
            self.post(PackReady(record.model, record.device, pack))
            for i, cfg in enumerate(record.configs):
                if cancel.is_set():
                    break
                trace = ProbTrace(cfg.captions)
                losses: list[float] = []
                frames = FrameTaker()
                record.traces.append(trace)
                record.losses.append(losses)
                record.frames.append(frames.recorder)

                def on_event(event: StepEvent, trace: ProbTrace = trace,
                             losses: list[float] = losses, frames: FrameTaker = frames) -> None:
                    if event.loss is not None:
                        losses.append(float(event.loss))
                    trace.add(event)
                    frames.add(event)
                    slot.put(event)

                result = self.sampler(pack, cfg, on_event=on_event, cancel=cancel)
                record.results.append(result)
                self.post(ResultReady(record.id, i, result))
            record.state = "cancelled" if cancel.is_set() else "done"
        except BaseException as exc:  # reported; the app must survive
            record.state = "failed"
            record.error = describe_error(exc, cfg)
            self.post(RunFailed(record.id, exc, cfg, traceback.format_exc()))
        finally:
            done.set()
            self.post(RunEnded(record.id, record.state))

    # ------------------------------------------------------------------ history
    def add_opened(self, record_source: Path, configs: Sequence[RunConfig], pack_name: str,
                   results: Sequence[RunResult], traces: Sequence[ProbTrace]) -> RunRecord:
        """Put a run read from its folder into the history, as if it had just finished."""
        record = self.history.new("", "", configs)
        record.pack_name = pack_name
        record.results = list(results)
        record.traces = list(traces)
        record.losses = [list(r.losses) for r in results]
        record.state = "opened"
        record.source = record_source
        return record
