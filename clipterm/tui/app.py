"""ClipTermApp: the interactive front door opened by bare ``clipterm``.

Left, the run form; right, the selected sample, the CLIP probability bars, the preview grid and
a log; a status line and the key bindings at the bottom.

Threads: the sampler runs in a Textual thread worker. Its ``on_event`` callback only stores the
newest event in a :class:`~clipterm.tui.latest.LatestSlot`; a timer pulls from the slot at
``REFRESH_HZ`` and updates the widgets inside ``batch_update()``, so a fast sampler cannot flood
the UI and the newest state always shows. The worker talks back with thread-safe
``post_message`` only (never a blocking call into the UI), so quitting cannot deadlock: quit
sets the cancel event and waits for the worker to return before the app exits.

Everything slow or external is injected, so tests drive the app with fakes: ``loader`` (model
pack loading), ``runner`` (the sampler), ``saver`` (run folders), ``config_dir`` (remembered
values) and ``theme_dirs``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header

from clipterm.config import METHODS, RunConfig
from clipterm.errors import UserError
from clipterm.events import RunResult, StepEvent
from clipterm.packs import get_pack_spec
from clipterm.tui.bars import ProbabilityBars
from clipterm.tui.form import DEFAULT_VALUES, FieldError, FormState, RunForm, compare_configs
from clipterm.tui.help_screen import HelpScreen
from clipterm.tui.latest import LatestSlot
from clipterm.tui.log_panel import LogPanel
from clipterm.tui.pack_cache import PackCache
from clipterm.tui.prefs import (
    default_config_dir,
    forget_last_values,
    load_last_values,
    save_last_values,
)
from clipterm.tui.preview_grid import PreviewGrid, PreviewRow
from clipterm.tui.sample_view import SampleView
from clipterm.tui.status_line import StatusLine, describe_event
from clipterm.tui.themes import load_themes, repo_themes_dir

Loader = Callable[[str, str], Any]
Runner = Callable[..., RunResult]
Saver = Callable[[RunResult, Path, str], Path]

REFRESH_HZ = 12.0
DEFAULT_THEME = "clipterm-night"


# ---------------------------------------------------------------- defaults (lazy core imports)
def default_loader(model: str, device: str) -> Any:
    from clipterm.models import load_pack

    return load_pack(model, device=device)


def default_runner(
    pack: Any,
    cfg: RunConfig,
    on_event: Callable[[StepEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    from clipterm.sampling import sample

    return sample(pack, cfg, on_event=on_event, cancel=cancel)


def default_saver(result: RunResult, out_root: Path, pack_name: str) -> Path:
    from clipterm.output import write_run

    return write_run(result, out_root, pack_name)


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


def initial_form_values(prefill: dict[str, Any], remembered: dict[str, str]) -> dict[str, str]:
    """Form values at start: built-in defaults < remembered values < command-line options."""
    values = dict(DEFAULT_VALUES)
    model = prefill.get("model")
    same_model = model is None or model == remembered.get("model", DEFAULT_VALUES["model"])
    for key, value in remembered.items():
        if key in values and (same_model or key not in ("prompt", "distractors")):
            values[key] = value
    for key, value in prefill.items():
        if value is None or key == "distractors":
            continue
        values[key] = str(value)
    try:
        spec = get_pack_spec(values["model"])
    except UserError:
        spec = None
    if not values["prompt"].strip() and spec is not None:
        values["prompt"] = spec.default_prompt
    if prefill.get("distractors") is not None:
        values["distractors"] = "\n".join(prefill["distractors"])
    else:
        prompt = values["prompt"].strip().casefold()
        kept = [d for d in values["distractors"].splitlines() if d.strip().casefold() != prompt]
        if not any(d.strip() for d in kept) and spec is not None:
            kept = list(spec.distractors_for(values["prompt"]))
        values["distractors"] = "\n".join(kept)
    return values


class ClipTermApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "clipterm"
    SUB_TITLE = "CLIP-guided diffusion"

    BINDINGS = [
        Binding("ctrl+r", "run", "Run", tooltip="Start a run with the form's settings"),
        Binding(
            "escape", "cancel", "Cancel", tooltip="Stop the run between steps, keep what is done"
        ),
        Binding("ctrl+s", "save", "Save", tooltip="Write the run folder (PNGs, grid, run.json)"),
        Binding(
            "ctrl+o", "compare", "Compare", tooltip="Run the Compare methods from the same seed"
        ),
        Binding("ctrl+b", "select_sample(-1)", "Prev"),
        Binding("ctrl+n", "select_sample(1)", "Next"),
        Binding("ctrl+t", "next_theme", "Theme"),
        Binding("ctrl+l", "toggle_log", "Log", show=False),
        Binding("f2", "view_sample", "View", show=False),
        Binding("f1", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    # ------------------------------------------------------------ messages from the worker
    class PackReady(Message):
        def __init__(self, model: str, device: str, pack: Any) -> None:
            super().__init__()
            self.model, self.device, self.pack = model, device, pack

    class PackFailed(Message):
        def __init__(self, model: str, device: str, error: BaseException) -> None:
            super().__init__()
            self.model, self.device, self.error = model, device, error

    class ResultReady(Message):
        def __init__(self, result: RunResult, pack_name: str) -> None:
            super().__init__()
            self.result, self.pack_name = result, pack_name

    class RunFailed(Message):
        def __init__(self, error: BaseException, cfg: RunConfig | None, trace: str) -> None:
            super().__init__()
            self.error, self.cfg, self.trace = error, cfg, trace

    class RunEnded(Message):
        pass

    def __init__(
        self,
        *,
        model: str | None = None,
        prompt: str | None = None,
        distractors: Sequence[str] | None = None,
        method: str | None = None,
        device: str | None = None,
        steps: int | None = None,
        scale: float | None = None,
        n: int | None = None,
        seed: int | None = None,
        out_dir: str | Path | None = None,
        reset: bool = False,
        loader: Loader | None = None,
        runner: Runner | None = None,
        saver: Saver | None = None,
        config_dir: Path | None = None,
        theme_dirs: Iterable[Path] | None = None,
        preload: bool = True,
    ) -> None:
        super().__init__()
        self.config_dir = Path(config_dir) if config_dir is not None else default_config_dir()
        if reset:
            forget_last_values(self.config_dir)
        remembered = load_last_values(self.config_dir)
        prefill = {
            "model": model,
            "prompt": prompt,
            "distractors": distractors,
            "method": method,
            "device": device,
            "steps": steps,
            "scale": scale,
            "n": n,
            "seed": seed,
            "out_dir": None if out_dir is None else str(out_dir),
        }
        self._initial_values = initial_form_values(prefill, remembered)
        self._remembered_theme = remembered.get("theme")
        self._packs = PackCache(loader or default_loader)
        self._runner: Runner = runner or default_runner
        self._saver: Saver = saver or default_saver
        self._preload = preload
        if theme_dirs is None:
            theme_dirs = [repo_themes_dir(), self.config_dir / "themes"]
        report = load_themes(theme_dirs)
        self.theme_errors = report.errors
        self.custom_theme_names = [t.name for t in report.themes]
        for theme in report.themes:
            self.register_theme(theme)
        wanted = self._remembered_theme or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        # run state (UI thread only, except the slot, the cancel event and _losses)
        self._slot: LatestSlot[StepEvent] = LatestSlot()
        self._cancel = threading.Event()
        self._run_done = threading.Event()
        self._run_done.set()
        self._losses: list[float] = []
        self.running = False
        self.results: list[tuple[RunResult, str]] = []  # (result, pack name) of the last run(s)
        self._done_rows: list[PreviewRow] = []
        self._live_row: PreviewRow | None = None
        self._live_label = ""
        self._device_label = ""
        self.last_event: StepEvent | None = None
        self.events_shown = 0
        self.saved_paths: list[Path] = []
        self._preload_timer: Any = None
        self._form_valid: bool | None = None
        self.runs_ended = 0  # how many runs have ended (tests and scripts wait on it)
        # perf_counter stamps for latency measurements (tests/tui/measure_latency.py)
        self.run_pressed_at = 0.0
        self.first_preview_at = 0.0
        self.selection_changed_at = 0.0

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield RunForm(self._initial_values, id="form")
            with Vertical(id="right"):
                with Horizontal(id="top"):
                    yield SampleView(id="sample")
                    yield ProbabilityBars(id="bars")
                yield PreviewGrid(id="grid")
                yield LogPanel(id="log")
        yield StatusLine("ready: ctrl+r runs, ctrl+o compares methods, f1 for help", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self._tick = self.set_interval(1 / REFRESH_HZ, self.pull_events, pause=True)
        for message in self.theme_errors:  # each broken file reported once
            self.notify(message, severity="warning", timeout=8)
            self.log_panel.warn(message)
        self.log_panel.info("ready")
        self.query_one("#prompt").focus()
        self._schedule_preload(0.0)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        theme = self.current_theme
        return {
            "target-bar": theme.success or "#4EBF71",
            "other-bar": theme.secondary or theme.primary,
            "selected-sample": theme.accent or theme.primary,
        }

    # ---------------------------------------------------------------- accessors
    @property
    def form(self) -> RunForm:
        return self.query_one(RunForm)

    @property
    def log_panel(self) -> LogPanel:
        return self.query_one(LogPanel)

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def grid(self) -> PreviewGrid:
        return self.query_one(PreviewGrid)

    @property
    def bars(self) -> ProbabilityBars:
        return self.query_one(ProbabilityBars)

    @property
    def sample_view(self) -> SampleView:
        return self.query_one(SampleView)

    # ------------------------------------------------------------ bindings state
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("run", "compare"):
            if self.running:
                return None
            return True if self.form.state.valid else None
        if action == "cancel":
            return True if self.running else False
        if action == "save":
            return True if self.results and not self.running else None
        if action in ("select_sample", "view_sample"):
            return True if self.grid.count else None
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Run", "Start a run with the form's settings (ctrl+r)", self.action_run)
        yield SystemCommand("Cancel run", "Stop the run between steps (escape)", self.action_cancel)
        yield SystemCommand("Save run", "Write PNGs, grid and run.json (ctrl+s)", self.action_save)
        yield SystemCommand(
            "Compare methods", "Run the Compare methods from one seed (ctrl+o)", self.action_compare
        )
        yield SystemCommand(
            "Next sample", "Select the next sample (ctrl+n)", lambda: self.action_select_sample(1)
        )
        yield SystemCommand(
            "Previous sample",
            "Select the previous sample (ctrl+b)",
            lambda: self.action_select_sample(-1),
        )
        yield SystemCommand(
            "View sample full size",
            "Terminal graphics via term-image (f2)",
            self.action_view_sample,
        )
        yield SystemCommand(
            "Next theme", "Cycle the colour themes (ctrl+t)", self.action_next_theme
        )
        yield SystemCommand(
            "Toggle log", "Show or hide the log panel (ctrl+l)", self.action_toggle_log
        )
        yield SystemCommand(
            "Distractors from pack",
            "Every pack caption except the prompt",
            self.form.fill_distractors_from_pack,
        )
        yield SystemCommand("Help", "Keys and methods (f1)", self.action_help)

    # ------------------------------------------------------------ form reactions
    @on(RunForm.Changed)
    def _form_changed(self, event: RunForm.Changed) -> None:
        if event.state.valid != self._form_valid:  # the footer recomposes: only on change
            self._form_valid = event.state.valid
            self.refresh_bindings()
        if self.is_mounted:
            self._schedule_preload(0.8)

    @on(RunForm.RunPressed)
    def _form_run(self) -> None:
        self.action_run()

    # ---------------------------------------------------------------- preload
    def _schedule_preload(self, delay: float) -> None:
        """Load the form's pack in the background (debounced while the user types)."""
        if not self._preload:
            return
        if self._preload_timer is not None:
            self._preload_timer.stop()
        self._preload_timer = self.set_timer(delay, self._start_preload) if delay else None
        if not delay:
            self._start_preload()

    def _alive(self) -> bool:
        """False while the app is shutting down (widgets may be gone; late messages are dropped)."""
        return self.is_running and bool(self.screen_stack) and bool(self.query(RunForm))

    def _start_preload(self) -> None:
        if not self._alive():
            return
        values = self.form.state.values
        model, device = values.get("model", "").strip(), values.get("device", "auto")
        if not model or self.form.state.error_field == "model":
            return
        if self._packs.peek(model, device) is None:
            self._preload_pack(model, device)

    @work(thread=True, group="preload", exit_on_error=False)
    def _preload_pack(self, model: str, device: str) -> None:
        try:
            pack = self._packs.get(model, device)
        except Exception as exc:
            self.post_message(self.PackFailed(model, device, exc))
            return
        self.post_message(self.PackReady(model, device, pack))

    @on(PackReady)
    def _pack_ready(self, message: PackReady) -> None:
        if not self._alive():
            return
        pack = message.pack
        train_steps = getattr(pack, "train_steps", None)
        if isinstance(train_steps, int) and self.form.train_steps.get(message.model) != train_steps:
            self.form.train_steps[message.model] = train_steps
            self.form.revalidate()
        self._device_label = str(getattr(pack, "device", message.device))
        self.sub_title = f"{getattr(pack, 'name', message.model)} on {self._device_label}"

    @on(PackFailed)
    def _pack_failed(self, message: PackFailed) -> None:
        if not self._alive():
            return
        text = f"model {message.model} ({message.device}): {describe_error(message.error)}"
        self.log_panel.error(text)
        self.notify(text, severity="error", timeout=8)

    # ------------------------------------------------------------------ running
    def action_run(self) -> None:
        if self.running:
            return
        state = self.form.revalidate()
        if not state.valid or state.config is None:
            self.notify(state.error or "the form is not valid", severity="error")
            return
        self._start([state.config], state)

    def action_compare(self) -> None:
        if self.running:
            return
        state = self.form.revalidate()
        if not state.valid or state.spec is None:
            self.notify(state.error or "the form is not valid", severity="error")
            return
        model = state.values["model"].strip()
        train_steps = self.form.train_steps.get(model, 1000)
        try:
            configs = compare_configs(state.values, state.spec, train_steps)
        except FieldError as exc:
            self.notify(exc.message, title="Compare", severity="error")
            self.log_panel.error(f"compare: {exc.message}")
            self.form.query_one("#compare").add_class("-invalid")
            return
        self.form.query_one("#compare").remove_class("-invalid")
        self._start(configs, state)

    def _start(self, configs: list[RunConfig], state: FormState) -> None:
        model, device = state.values["model"].strip(), state.values["device"]
        self.save_form_values()
        self._cancel = threading.Event()
        self._run_done = threading.Event()
        self._slot = LatestSlot()
        self._losses = []
        self.results = []
        self._done_rows = []
        self._live_row = None
        self.last_event = None
        self.events_shown = 0
        self.grid.set_rows([], selected=0)
        self.run_pressed_at = time.perf_counter()
        self.first_preview_at = 0.0
        self.running = True
        self.add_class("-running")
        self.refresh_bindings()
        names = ", ".join(c.method for c in configs)
        self.log_panel.info(
            f"run {names}: prompt {configs[0].prompt!r}, n={configs[0].n}, seed={configs[0].seed}"
        )
        self.status.show_text(
            f"loading {model} on {device}…"
            if self._packs.peek(model, device) is None
            else "starting…"
        )
        self._tick.resume()
        self._run_worker(model, device, configs, self._cancel, self._slot, self._run_done)

    @work(thread=True, group="run", exit_on_error=False)
    def _run_worker(
        self,
        model: str,
        device: str,
        configs: list[RunConfig],
        cancel: threading.Event,
        slot: LatestSlot[StepEvent],
        done: threading.Event,
    ) -> None:
        """The sampler thread: loads the pack, runs each config, reports by message only."""
        cfg: RunConfig | None = None
        losses = self._losses

        def on_event(event: StepEvent) -> None:
            if event.loss is not None:
                losses.append(event.loss)
            slot.put(event)

        try:
            pack = self._packs.get(model, device)
            self.post_message(self.PackReady(model, device, pack))
            for cfg in configs:
                if cancel.is_set():
                    break
                losses.clear()
                result = self._runner(pack, cfg, on_event=on_event, cancel=cancel)
                self.post_message(self.ResultReady(result, getattr(pack, "name", model)))
        except BaseException as exc:  # report everything; the app must survive
            self.post_message(self.RunFailed(exc, cfg, traceback.format_exc()))
        finally:
            done.set()
            self.post_message(self.RunEnded())

    def action_cancel(self) -> None:
        if self.running and not self._cancel.is_set():
            self._cancel.set()
            self.status.show_text("cancelling: stops after the current step…")
            self.log_panel.info("cancel requested")

    def pull_events(self) -> None:
        """Timer callback: show the newest event, if any (coalesced, bounded rate)."""
        if not self._alive():
            return
        event = self._slot.take()
        if event is None:
            return
        self.last_event = event
        self.events_shown += 1
        memory = self._cuda_memory()
        with self.batch_update():
            self.status.show_text(
                describe_event(event, self._device_label or "?", memory, self._losses)
            )
            if event.preview is not None:
                label = f"{event.method} · batch {event.batch_index + 1}/{event.n_batches} · step {event.step}/{event.total}"
                self._live_row = PreviewRow(
                    label, event.preview, event.probs, event.sample_offset, event.captions
                )
                had_samples = bool(self.grid.count)
                self.grid.set_rows([*self._done_rows, self._live_row])
                if not had_samples:
                    self.refresh_bindings()  # next / previous sample become available
                    if not self.first_preview_at:
                        self.first_preview_at = time.perf_counter()
            self._show_selection(event.captions, event.mean_probs)

    def _cuda_memory(self) -> str | None:
        if not self._device_label.startswith("cuda"):
            return None
        try:
            import torch

            return f"{torch.cuda.memory_allocated() / 2**20:.0f} MiB"
        except Exception:
            return None

    def _show_selection(
        self, captions: Sequence[str] | None = None, mean: np.ndarray | None = None
    ) -> None:
        located = self.grid.locate(self.grid.selected)
        if located is None:
            self.sample_view.show(None, "no sample yet: ctrl+r runs")
            return
        row, i = located
        captions = captions or row.captions
        probs = row.probs[i] if row.probs is not None and i < len(row.probs) else None
        index = row.first_index + i
        if mean is None and row.probs is not None and len(row.probs):
            mean = row.probs.mean(axis=0)
        target = f" · {captions[0]} {probs[0] * 100:.0f}%" if probs is not None and captions else ""
        self.sample_view.show(row.images[i], f"#{index} {row.label.split(' · ')[0]}{target}")
        self.bars.set_probs(captions, mean, probs, index)

    @on(ResultReady)
    def _result_ready(self, message: ResultReady) -> None:
        if not self._alive():
            return
        self.pull_events()  # the newest step first, then the result replaces it
        result = message.result
        self.results.append((result, message.pack_name))
        cfg = result.config
        state = "done" if result.completed else "cancelled"
        label = (
            f"{cfg.method} · {state} · {len(result.images)}/{cfg.n} samples · {result.seconds:.1f}s"
        )
        if len(result.images):
            first = int(result.indices[0]) if len(result.indices) else 0
            row = PreviewRow(label, result.images, result.probs, first, result.captions)
        elif self._live_row is not None:  # nothing finished: keep the last preview
            row = replace(self._live_row, label=label)
        else:
            row = None
        if row is not None:
            self._done_rows.append(row)
        self._live_row = None
        with self.batch_update():
            self.grid.set_rows(list(self._done_rows))
            self._show_selection()
        mean = f", mean p(target) {result.mean_target_prob:.3f}" if len(result.images) else ""
        self.log_panel.info(
            f"{cfg.method} {state} in {result.seconds:.1f}s: {len(result.images)} samples{mean}"
        )
        if result.nonfinite_skipped:
            self.log_panel.warn(
                f"{result.nonfinite_skipped} non-finite guidance gradients were skipped"
            )

    @on(RunFailed)
    def _run_failed(self, message: RunFailed) -> None:
        if not self._alive():
            return
        text = describe_error(message.error, message.cfg)
        self.notify(text, title="Run failed", severity="error", timeout=10)
        self.log_panel.error(f"run failed: {text}")
        if not isinstance(message.error, UserError) and not is_out_of_memory(message.error):
            for line in message.trace.rstrip().splitlines()[-6:]:
                self.log_panel.error("  " + line)

    @on(RunEnded)
    def _run_ended(self) -> None:
        if not self._alive():
            self.running = False
            return
        self.pull_events()
        self._tick.pause()
        self.running = False
        self.runs_ended += 1
        self.remove_class("-running")
        self.refresh_bindings()
        if self.results:
            total = sum(len(r.images) for r, _ in self.results)
            what = "cancelled" if self._cancel.is_set() else "finished"
            self.status.show_text(
                f"{what}: {total} samples · ctrl+s saves · ctrl+n/ctrl+b select · f2 views"
            )
        elif self._cancel.is_set():
            self.status.show_text("cancelled before any sample finished")
        else:
            self.status.show_text("run failed: see the log (ctrl+l)")

    async def wait_for_run(self, timeout: float = 30.0) -> bool:
        """Wait (without blocking the UI) until the sampler thread has returned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._run_done.is_set():
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # ------------------------------------------------------------------ saving
    def action_save(self) -> None:
        if not self.results or self.running:
            return
        out_root = Path(self.form.state.values.get("out_dir", "out").strip() or "out").expanduser()
        self.saved_paths = []
        for result, pack_name in self.results:
            if not len(result.images):
                self.log_panel.warn(f"{result.config.method}: no finished samples to save")
                continue
            try:
                path = self._saver(result, out_root, pack_name)
            except Exception as exc:
                text = f"could not save: {describe_error(exc)}"
                self.notify(text, severity="error")
                self.log_panel.error(text)
                return
            self.saved_paths.append(Path(path))
            self.log_panel.info(f"saved {path}")
        if self.saved_paths:
            where = ", ".join(str(p) for p in self.saved_paths)
            self.notify(f"saved {where}", title="Saved")

    # --------------------------------------------------------------- selection
    def action_select_sample(self, delta: int) -> None:
        if not self.grid.count:
            return
        self.grid.select(self.grid.selected + delta)
        self.selection_changed_at = time.perf_counter()
        mean = self.last_event.mean_probs if self.running and self.last_event is not None else None
        self._show_selection(None, mean)

    def action_view_sample(self) -> None:
        located = self.grid.locate(self.grid.selected)
        if located is None:
            return
        row, i = located
        from textual.app import SuspendNotSupported

        from clipterm.tui.graphics import draw_fullsize

        try:
            with self.suspend():
                style = draw_fullsize(row.images[i], f"sample #{row.first_index + i} ({row.label})")
                input(f"[{style}] press Enter to return to clipterm ")
        except SuspendNotSupported:
            self.notify("this terminal cannot suspend the app to show graphics", severity="warning")
        except Exception as exc:
            self.notify(f"could not draw the sample: {exc}", severity="warning")

    # ------------------------------------------------------------------- misc
    def theme_cycle(self) -> list[str]:
        names = [n for n in self.custom_theme_names if n in self.available_themes]
        return names + [n for n in ("textual-dark", "textual-light") if n not in names]

    def action_next_theme(self) -> None:
        cycle = self.theme_cycle()
        i = cycle.index(self.theme) if self.theme in cycle else -1
        self.theme = cycle[(i + 1) % len(cycle)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_toggle_log(self) -> None:
        self.log_panel.display = not self.log_panel.display

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        keys = [
            (b.key, b.tooltip or b.description) for b in self.BINDINGS if isinstance(b, Binding)
        ]
        keys += [
            ("ctrl+p", "command palette: every action by name"),
            ("tab / shift+tab", "move between fields"),
            ("alt+up / alt+down", "move a distractor line (in the list)"),
            ("enter", "run, from any text field"),
        ]
        self.push_screen(HelpScreen(keys))

    def save_form_values(self) -> None:
        try:
            save_last_values(self.config_dir, {**self.form.values(), "theme": self.theme})
        except OSError as exc:
            self.log_panel.warn(f"could not remember the form values: {exc}")

    async def action_quit(self) -> None:
        """Quit; a running sampler is cancelled and waited for, so no thread is left behind."""
        if self.running:
            self._cancel.set()
            self.status.show_text("cancelling the run before quitting…")
            await self.wait_for_run()
        self.save_form_values()
        self.exit()

    def on_unmount(self) -> None:
        self._cancel.set()  # any other way out still stops the sampler


def run_app(
    *,
    model: str | None = None,
    prompt: str | None = None,
    distractors: Sequence[str] | None = None,
    method: str | None = None,
    device: str | None = None,
    steps: int | None = None,
    scale: float | None = None,
    n: int | None = None,
    seed: int | None = None,
    out_dir: str | Path | None = None,
    reset: bool = False,
) -> None:
    """Open the TUI with the form prefilled from the given options (None = remembered/default)."""
    if method is not None and method not in METHODS:
        raise UserError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    app = ClipTermApp(
        model=model,
        prompt=prompt,
        distractors=distractors,
        method=method,
        device=device,
        steps=steps,
        scale=scale,
        n=n,
        seed=seed,
        out_dir=out_dir,
        reset=reset,
    )
    app.run()
