"""What the batch commands share: messages, progress, stopping on signals, running one config
into a run folder, showing a grid inline. Public names only; every command imports from here.

Exit codes (README, "Exit codes"): 0 done; 2 usage or input error; 1 a failed run or a bug;
130 / 143 / 129 after SIGINT / SIGTERM / SIGHUP, with the finished samples kept and listed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from clipterm.errors import RunFailed
from clipterm.sanitize import printable

if TYPE_CHECKING:  # pragma: no cover
    from clipterm.config import RunConfig
    from clipterm.events import RunResult, StepEvent

METHOD_HELP = "uncond | spherical | contrastive | optimize"
MODEL_HELP = "Pack name, pack JSON, diffusers folder or repo id (default: cifar10 if downloaded, else digits)."
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
EVENTS_PER_SECOND = 10  # progress updates a terminal gets at most


def err(msg: str) -> None:
    _write_stderr(f"clipterm: error: {msg}\n")


def warn(msg: str) -> None:
    _write_stderr(f"clipterm: warning: {msg}\n")


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # the terminal is gone (a dropped SSH connection)
        pass


def default_model(model: str | None) -> str:
    """The pack a command uses when ``--model`` is not given."""
    if model:
        return model
    from clipterm.packs import default_pack_name

    return default_pack_name()


def given(**kw: Any) -> dict[str, Any]:
    """The options a user set (the others are None)."""
    return {k: v for k, v in kw.items() if v is not None}


def load(model: str, device: str, clip: str | None):
    from clipterm.models import load_pack

    return load_pack(model, device=device, clip=clip)


# ----------------------------------------------------------------------------- progress
class Progress:
    """Rich progress bar on a terminal, plain periodic lines otherwise (both on stderr)."""

    def __init__(self, label: str, quiet: bool = False):
        self.label = printable(label)
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._last_line = 0.0
        self._last_pct = -1

    def __enter__(self) -> Progress:
        if self.tty and not self.quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None, info="loading", rate="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            try:
                self._bar.__exit__(*exc)
            except (OSError, ValueError):
                pass

    def silence(self) -> None:
        """Stop drawing (the terminal has gone away)."""
        self.quiet = True
        if self._bar is not None:
            try:
                self._bar.stop()
            except (OSError, ValueError):
                pass
            self._bar = None

    def event(self, ev: StepEvent) -> None:
        if self.quiet:
            return
        total = ev.total * ev.n_batches
        done = ev.batch_index * ev.total + ev.step
        rate = done / ev.elapsed if ev.elapsed > 0 else 0.0
        unit = "it" if ev.phase == "optimize" else "step"
        info = f"batch {ev.batch_index + 1}/{ev.n_batches}"
        if ev.probs is not None:
            info += f"  p(target) {float(ev.probs[:, 0].mean()):.2f}"
        if ev.loss is not None:
            info += f"  loss {ev.loss:.3f}"
        if self._bar is not None:
            self._bar.update(self._task, total=total, completed=done, info=info,
                             rate=f"{rate:.1f} {unit}/s")
            return
        pct = int(100 * done / max(total, 1))
        now = time.monotonic()
        if pct >= self._last_pct + 10 or done == total or now - self._last_line > 30:
            self._last_pct, self._last_line = pct, now
            _write_stderr(f"{self.label}: {done}/{total} {unit}s ({pct}%) {info} "
                          f"{rate:.1f} {unit}/s {ev.elapsed:.1f}s\n")


# ----------------------------------------------------------------------------- signals
class StopOnSignals:
    """SIGINT (Ctrl+C), SIGTERM (``kill``, schedulers) and SIGHUP (a dropped SSH connection) ask
    the run to stop after the current step, keeping every finished sample; a second signal
    aborts at once (writes in progress still complete: see ``output.signals_held``)."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.progress = progress
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number after a signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
        return 128 + self.signum if self.signum is not None else 0

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            _forget_terminal(self.progress)
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()
        warn(f"{signal.Signals(signum).name}: stopping after this step and keeping the finished "
             "samples (send it again to stop at once)")


class _Quiet:
    """A stream that swallows writes the terminal can no longer take."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _forget_terminal(progress: Progress | None) -> None:
    """After SIGHUP: stop drawing and never fail on a write to the (probably gone) terminal."""
    if progress is not None:
        progress.silence()
    if not isinstance(sys.stdout, _Quiet):
        sys.stdout = _Quiet(sys.stdout)
    if not isinstance(sys.stderr, _Quiet):
        sys.stderr = _Quiet(sys.stderr)


def exit_on_signals() -> None:
    """Before a run starts (parsing, loading): SIGTERM and SIGHUP end the command at once with
    128 + the signal's number; nothing has been written yet. SIGINT stays KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in STOP_SIGNALS:
        if s != signal.SIGINT:
            signal.signal(s, _stop_now)


def stop_handlers() -> dict[int, Any]:
    """The handlers of SIGINT, SIGTERM and SIGHUP now (to put back with
    :func:`restore_stop_handlers`); empty outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in STOP_SIGNALS}


def restore_stop_handlers(handlers: dict[int, Any]) -> None:
    for s, handler in handlers.items():
        signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def ignore_stop_signals() -> None:
    """From here on SIGINT, SIGTERM and SIGHUP are ignored (the process is exiting)."""
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def _stop_now(signum: int, frame: Any) -> None:
    if signum == getattr(signal, "SIGHUP", None):
        _forget_terminal(None)
    raise Stopped(128 + signum, f"stopped by {signal.Signals(signum).name}")


# ----------------------------------------------------------------------------- one run
@dataclass
class RunOutcome:
    result: RunResult
    run_dir: Path
    signal_exit: int  # 0, or 128 + the signal that stopped the run


def run_to_folder(pack: Any, cfg: RunConfig, out_root: Path, *, quiet: bool,
                  label: str | None = None, header: dict[str, Any] | None = None,
                  metadata: bool = True, animate: str | None = None,
                  animate_samples: bool = False, indices: list[int] | None = None,
                  keep: set[int] | None = None, folder_label: str | None = None) -> RunOutcome:
    """Sample ``cfg`` into a new run folder under ``out_root``, written batch by batch.

    ``animate`` (gif, apng, mp4) also writes the denoising as an animation; ``indices`` makes
    only those samples, of which ``keep`` (default all) are written; ``folder_label`` ends the
    folder's name (a sweep's ``scale-0.3``). A signal stops the run after
    the step (finished samples kept, run.json ``incomplete``); a second one aborts it
    (``aborted``, exit 130); an error marks it ``failed`` and is shown as one line (exit 1)
    unless it is a bug, which still raises.
    """
    from clipterm.animation import FrameRecorder
    from clipterm.guide import check_captions
    from clipterm.output import RunWriter, write_animations
    from clipterm.reporting import Reporter
    from clipterm.sampling import sample

    for note in (*cfg.warnings, *check_captions(pack, cfg.captions)):
        warn(note)
    writer = RunWriter.create(out_root, cfg, pack.name, header, label=folder_label,
                              metadata=metadata,
                              clip=getattr(pack, "clip_name", ""),
                              pack_source=getattr(pack.spec, "source", "") or pack.name)
    frames = FrameRecorder() if animate else None
    wanted = len(keep) if keep is not None else len(indices) if indices is not None else cfg.n

    def on_batch(idx: list[int], images: Any, probs: Any) -> None:
        if keep is not None:
            rows = [r for r, i in enumerate(idx) if i in keep]
            idx, images, probs = [idx[r] for r in rows], images[rows], probs[rows]
        if idx:
            writer.add_batch(idx, images, probs)

    with Progress(label or cfg.method, quiet=quiet) as progress, \
            StopOnSignals(progress) as stop:
        try:
            result = sample(pack, cfg, cancel=stop.event, on_batch=on_batch, indices=indices,
                            reporter=Reporter(progress.event, interval=1 / EVENTS_PER_SECOND,
                                              frames=frames))
            if keep is not None:
                result = result.subset(keep)
            if frames is not None and len(result.indices):
                writer.header["animations"] = write_animations(
                    writer.dir, frames, result.indices.tolist(), animate, animate_samples,
                    finals=result.images)
            writer.finish(result)
        except KeyboardInterrupt:
            _mark(writer, "aborted", "stopped at once by a second signal")
            kept = writer.samples
            raise Stopped(130, f"aborted: {describe_kept(len(kept), wanted, writer.dir, kept)}") from None
        except RunFailed as exc:
            _mark(writer, "failed", str(exc))
            raise RunFailed(f"{exc}: {describe_kept(len(writer.samples), wanted, writer.dir)}") from None
        except OSError as exc:  # a full disk, a file size limit, a folder gone
            reason = f"could not write the run folder: {exc.strerror or exc}"
            _mark(writer, "failed", reason)
            raise RunFailed(f"{reason}; {describe_kept(len(writer.samples), wanted, writer.dir)}") from None
        except BaseException as exc:
            _mark(writer, "failed", f"{type(exc).__name__}: {printable(exc, 200)}")
            raise
    if result.nonfinite_samples:
        bad = len(result.nonfinite_samples)
        note = (f"{bad} of {len(result.indices)} samples are not finite numbers (NaN or inf): "
                "is the guidance scale too large? They are saved black and listed in run.json")
        if bad == len(result.indices):
            _mark(writer, "failed", note)
            raise RunFailed(note)
        warn(note)
    return RunOutcome(result, writer.dir, stop.exit_code)


class Stopped(Exception):
    """The run ended on a signal: the message is shown and the command exits with ``code``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _mark(writer: Any, status: str, error: str) -> None:
    try:
        writer.mark(status, error)
    except OSError:  # the disk is full: run.json keeps its last good version
        pass


def describe_kept(n_kept: int, n: int, run_dir: Path, samples: list[dict[str, Any]] | None = None) -> str:
    """``"3 of 16 samples kept in DIR (sample-00000.png ... sample-00002.png)"``."""
    where = printable(run_dir)
    if not n_kept:
        return f"no sample finished (of {n}); the record is in {where}/run.json"
    text = f"{n_kept} of {n} samples kept in {where}"
    if samples:
        names = [s["file"] for s in samples]
        text += f" ({', '.join(names)})" if len(names) <= 4 else f" ({names[0]} ... {names[-1]})"
    return text


def finish_stopped(outcome: RunOutcome) -> None:
    """After a run a signal stopped: say what was kept and exit 128 + the signal."""
    if outcome.signal_exit:
        r = outcome.result
        name = signal.Signals(outcome.signal_exit - 128).name
        samples = [{"file": f"sample-{int(i):05d}.png"} for i in r.indices]
        warn(f"stopped by {name}: "
             + describe_kept(len(r.indices), r.config.n, outcome.run_dir, samples))
        raise typer.Exit(outcome.signal_exit)


def show_inline(path: Path) -> None:
    """Show an image in the terminal with term-image (kitty/iTerm2 graphics or unicode blocks)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*not running within a terminal.*")
    try:
        from PIL import Image
        from term_image.image import AutoImage, BlockImage

        with Image.open(path) as im:
            im = im.convert("RGB")
            cols = min(os.get_terminal_size().columns - 2, max(im.width // 2, 32))
            try:
                image = AutoImage(im, width=cols)
            except Exception:  # noqa: BLE001 - graphics detection failed: use unicode blocks
                image = BlockImage(im, width=cols)
            print(image)
    except Exception as exc:  # noqa: BLE001 - a preview must never fail a finished run
        warn(f"could not show the grid inline ({printable(exc, 200)})")

