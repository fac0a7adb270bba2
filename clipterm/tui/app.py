"""ClipTermApp: the interactive front door opened by bare ``clipterm``.

The form on the left (or, on a small terminal, one pane at a time: ctrl+f switches); on the
right the selected sample, the CLIP probability bars, the live probability trace and the
preview grid; a status line and the keys at the bottom. Where things go for each terminal size
is :mod:`clipterm.tui.layout`.

Running is the :class:`~clipterm.tui.runner.RunController`'s business (threads, the newest
event, this sitting's runs); the app draws. A timer pulls the newest step event at
``REFRESH_HZ`` and updates the widgets inside ``batch_update()``, so a fast sampler never floods
the UI. Every key answers: what it did, or why it did nothing. Finished runs are kept in the
sitting's history until saved or the app quits (and quitting asks about unsaved ones). Quitting
is prompt: the sampler is asked to stop and given a moment, never waited for.

Everything slow or external is injected, so tests drive the app with fakes: ``loader`` (model
pack loading), ``runner`` (the sampler), ``saver`` (run folders), ``availability`` (whether a
pack's weights are here), ``config_dir`` (remembered values) and ``theme_dirs``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Static

from clipterm.animation import check_format as check_animation_format
from clipterm.errors import UserError
from clipterm.events import RunResult, StepEvent
from clipterm.rerun import Recorded
from clipterm.sanitize import printable
from clipterm.tui import layout
from clipterm.tui.bars import ProbabilityBars
from clipterm.tui.form import RunForm
from clipterm.tui.form_model import (
    LABELS,
    Availability,
    FieldError,
    FormModel,
    FormState,
    hub_offline,
    initial_values,
    values_from_recorded,
)
from clipterm.tui.help_screen import HelpScreen
from clipterm.tui.log_panel import LogPanel
from clipterm.tui.messages import (
    DownloadEnded,
    FormChanged,
    PackFailed,
    PackReady,
    ResultReady,
    RunEnded,
    RunFailed,
    RunRequested,
    SampleClicked,
)
from clipterm.tui.open_screen import LOAD_SETTINGS, OpenRunScreen
from clipterm.tui.past_run import PastRun, load_past_run
from clipterm.tui.prefs import (
    default_config_dir,
    forget_last_values,
    load_last_values,
    save_last_values,
)
from clipterm.tui.preview_grid import PreviewGrid, PreviewRow
from clipterm.tui.quit_screen import QuitScreen
from clipterm.tui.runner import RunController, RunRecord, describe_error, is_out_of_memory
from clipterm.tui.runs_screen import RunsScreen
from clipterm.tui.sample_view import SampleView
from clipterm.tui.status_line import StatusLine, describe_event
from clipterm.tui.themes import builtin_themes_dir, load_themes
from clipterm.tui.trace_view import TraceView

Loader = Callable[[str, str], Any]
Runner = Callable[..., RunResult]
Saver = Callable[..., Path]  # (result, out_root, pack_name, pack_source=...) -> the folder

REFRESH_HZ = 12.0
PRELOAD_DELAY = 0.8  # seconds after the form settles before the pack is loaded ahead of a run
QUIT_GRACE = 0.0  # quitting never waits for the sampler: it is told to stop, and the process
# ends without it (run_app)
DEFAULT_THEME = "clipterm-night"


def default_saver(result: RunResult, out_root: Path, pack_name: str,
                  pack_source: str = "") -> Path:
    """A new run folder for ``result``; ``pack_source`` is what loads the pack again (the Model
    field as typed), so ``clipterm generate --from`` and the app's Load settings re-run it."""
    from clipterm.output import RunWriter

    writer = RunWriter.create(out_root, result.config, pack_name, pack_source=pack_source)
    writer.add_batch(result.indices.tolist(), result.images, result.probs)
    return writer.finish(result)


def result_row(result: RunResult, index: int) -> PreviewRow | None:
    """The grid row of a finished (or stopped) config of a run."""
    cfg = result.config
    state = "done" if result.completed else "cancelled"
    label = f"{cfg.method} · {state} · {len(result.images)}/{cfg.n} samples · {result.seconds:.1f}s"
    if len(result.images):
        indices = tuple(int(i) for i in result.indices)
        return PreviewRow(label, result.images, result.probs, indices[0] if indices else 0,
                          result.captions, indices=indices, config_index=index)
    if result.partial_preview is not None:
        return PreviewRow(f"{label} · the unfinished batch as it was", result.partial_preview,
                          None, 0, result.captions, config_index=index)
    return None


class ClipTermApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "clipterm"
    SUB_TITLE = "CLIP-guided diffusion"

    BINDINGS = [
        Binding("ctrl+r", "run", "Run", tooltip="Start a run with the form's settings"),
        Binding("escape", "cancel", "Cancel", tooltip="Stop the run between steps, keep what is done"),
        Binding("ctrl+s", "save", "Save", tooltip="Write the shown run's folder (PNGs, grid, run.json)"),
        Binding("ctrl+f", "toggle_form", "Form", tooltip="Show or hide the form"),
        Binding("ctrl+n", "select_sample(1)", "Next", tooltip="Select the next sample"),
        Binding("ctrl+b", "select_sample(-1)", "Prev", show=False, tooltip="Select the previous sample"),
        Binding("ctrl+g", "runs", "Runs", tooltip="This sitting's runs: show one again, save it"),
        Binding("ctrl+o", "compare", "Compare", show=False, tooltip="Run the Compare methods from the same seed"),
        Binding("f3", "toggle_trace", "Trace", show=False, tooltip="Trace of the batch mean / the selected sample"),
        Binding("f2", "view_sample", "View", show=False, tooltip="The selected sample full size (term-image)"),
        Binding("f4", "animate", "Animate", show=False, tooltip="Write the shown run's denoising animation into its folder (saves it first)"),
        Binding("f5", "load_settings", "Load", show=False, tooltip="Load a run folder's or sample PNG's settings into the form"),
        Binding("ctrl+t", "next_theme", "Theme", show=False, tooltip="Next colour theme"),
        Binding("ctrl+l", "toggle_log", "Log", show=False, tooltip="Show or hide the log"),
        Binding("f1", "help", "Help", tooltip="Keys and methods"),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Quit (asks about unsaved runs)"),
    ]

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
        availability: Availability | None = None,
        config_dir: Path | None = None,
        theme_dirs: Iterable[Path] | None = None,
        preload: bool = True,
        open_run: PastRun | None = None,
        settings: Recorded | None = None,
    ) -> None:
        super().__init__()
        self.config_dir = Path(config_dir) if config_dir is not None else default_config_dir()
        if reset:
            forget_last_values(self.config_dir)
        remembered = load_last_values(self.config_dir)
        prefill = {
            "model": model, "prompt": prompt, "distractors": distractors, "method": method,
            "device": device, "steps": steps, "scale": scale, "n": n, "seed": seed,
            "out_dir": None if out_dir is None else str(out_dir),
        }
        self.settings_notes: list[str] = []
        if settings is not None:  # clipterm --from PATH: the recorded run, then the options
            recorded, self.settings_notes = values_from_recorded(settings)
            prefill = {**recorded, "distractors": recorded["distractors"].splitlines(),
                       **{k: v for k, v in prefill.items() if v is not None}}
        from clipterm.packs import default_pack_name

        self._initial_values = initial_values(prefill, remembered, default_pack_name())
        self.form_model = FormModel(availability)
        self.controller = RunController(self.post_message, loader=loader, sampler=runner)
        self._saver: Saver = saver or default_saver
        self._preload = preload
        self._opening = open_run
        if theme_dirs is None:
            theme_dirs = [builtin_themes_dir(), self.config_dir / "themes"]
        report = load_themes(theme_dirs)
        self.theme_errors = report.errors
        self.custom_theme_names = [t.name for t in report.themes]
        for theme in report.themes:
            self.register_theme(theme)
        wanted = remembered.get("theme") or DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        # what is shown (UI thread only)
        self.shown: RunRecord | None = None
        self.last_event: StepEvent | None = None  # the newest event of the current run
        self.events_shown = 0
        self.runs_ended = 0  # how many runs have ended (tests and scripts wait on it)
        self.saved_paths: list[Path] = []
        self.form_open = open_run is None
        self.plan: layout.Layout | None = None
        self._applied: tuple[layout.Layout, bool] | None = None
        self._image_px = 32
        self._device_label = ""
        self._preload_timer: Timer | None = None
        self._reported_load_errors: set[str] = set()
        self._quitting = False
        # perf_counter stamps for the benchmark (scripts/tui_bench.py)
        self.run_pressed_at = 0.0
        self.first_preview_at = 0.0
        self.selection_changed_at = 0.0

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header(id="header")
        yield Static("", id="too-small", markup=False)
        with Horizontal(id="main"):
            yield RunForm(self._initial_values, model=self.form_model, id="form")
            with Vertical(id="right"):
                with Horizontal(id="top"):
                    yield SampleView(id="sample")
                    with Vertical(id="info"):
                        yield ProbabilityBars(id="bars")
                        yield TraceView(id="trace")
                yield PreviewGrid(id="grid")
                yield LogPanel(id="log")
        yield StatusLine("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self._tick = self.set_interval(1 / REFRESH_HZ, self.pull_events, pause=True)
        for message in self.theme_errors:  # each broken file reported once
            self.notify(printable(message), severity="warning", timeout=8, markup=False)
            self.log_panel.warn(message)
        self.log_panel.info("ready")
        self.apply_layout()
        if self._opening is not None:
            self.show_past_run(self._opening)
            self._opening = None
        else:
            self.show_idle_status()
            self.query_one("#prompt").focus()
        for note in self.settings_notes:
            self.say(note, "warning", timeout=8)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        theme = self.current_theme
        return {
            "target-bar": theme.success or "#4EBF71",
            "other-bar": theme.secondary or theme.primary,
            "selected-sample": theme.accent or theme.primary,
        }

    def on_resize(self, event: events.Resize) -> None:
        if self.plan is not None:  # after on_mount has laid it out once
            self.apply_layout(event.size.width, event.size.height)

    def apply_layout(self, width: int | None = None, height: int | None = None) -> None:
        """Arrange the panes for the terminal's size (see :mod:`clipterm.tui.layout`)."""
        if not self.query(RunForm):  # not composed yet, or already torn down
            return
        if width is None or height is None:
            width, height = (self.plan.width, self.plan.height) if self.plan else self.size
        captions = self._shown_captions()
        plan = layout.plan(width, height, len(captions) or 10, self._image_px, self.form_open)
        if (plan, self.form_open) == self._applied:
            return  # nothing moves: no style or layout pass
        self._applied = (plan, self.form_open)
        self.plan = plan
        for mode in ("too-small", "narrow", "wide"):
            self.set_class(plan.mode == mode, f"-{mode}")
        self.set_class(self.form_open, "-form-open")
        self.set_class(not self.form_open, "-form-closed")
        if plan.too_small:
            self.query_one("#too-small", Static).update(
                f"clipterm needs a terminal of at least {layout.MIN_SIZE[0]}x{layout.MIN_SIZE[1]};"
                f" this one is {width}x{height}.\nMake the window larger (ctrl+q quits).")
            return
        with self.batch_update():
            self.query_one("#top").styles.height = plan.top_rows
            self.sample_view.styles.width = plan.sample_width
            self.bars.styles.height = plan.bars_rows
            self.trace.display = plan.trace_rows > 0
            if plan.form_width:
                self.form.styles.width = plan.form_width
            elif plan.mode == "narrow":
                self.form.styles.width = "1fr"

    def _shown_captions(self) -> tuple[str, ...]:
        if self.shown is not None and self.shown.configs:
            return self.shown.configs[0].captions
        state = self.form.state if self.is_mounted else None
        if state is not None and state.config is not None:
            return state.config.captions
        return ()

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
    def trace(self) -> TraceView:
        return self.query_one(TraceView)

    @property
    def sample_view(self) -> SampleView:
        return self.query_one(SampleView)

    @property
    def running(self) -> bool:
        return self.controller.running

    @property
    def results(self) -> list[tuple[RunResult, str]]:
        """The shown run's results, with the pack's name: what ctrl+s saves."""
        if self.shown is None:
            return []
        return [(r, self.shown.pack_name) for r in self.shown.results]

    def say(self, message: str, severity: str = "information", timeout: float = 4) -> None:
        """Answer a key: a short notification (and the log, for warnings and errors)."""
        self.notify(printable(message), severity=severity, timeout=timeout,  # type: ignore[arg-type]
                    markup=False)
        if severity == "warning":
            self.log_panel.warn(message)
        elif severity == "error":
            self.log_panel.error(message)

    def show_idle_status(self) -> None:
        if self.form_open and self.plan is not None and self.plan.mode == "narrow":
            text = "ready: ctrl+r runs · ctrl+f shows the results · f1 help"
        else:
            text = "ready: ctrl+r runs · ctrl+o compares methods · f1 help"
        self.status.show_text(text)

    # ------------------------------------------------------------ palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Run", "Start a run with the form's settings (ctrl+r)", self.action_run)
        yield SystemCommand("Cancel run", "Stop the run between steps (escape)", self.action_cancel)
        yield SystemCommand("Save run", "Write the shown run's folder (ctrl+s)", self.action_save)
        yield SystemCommand("Compare methods", "Run the Compare methods from one seed (ctrl+o)",
                            self.action_compare)
        yield SystemCommand("Runs of this sitting", "Show a run again, or save it (ctrl+g)",
                            self.action_runs)
        yield SystemCommand("Open run folder", "Show a past run's samples, bars and trace",
                            self.action_open_run)
        yield SystemCommand("Load settings", "From a run folder or a sample PNG into the form (f5)",
                            self.action_load_settings)
        yield SystemCommand("Write animation", "The shown run's denoising, into its folder (f4)",
                            self.action_animate)
        yield SystemCommand("Show or hide the form", "ctrl+f", self.action_toggle_form)
        yield SystemCommand("Next sample", "Select the next sample (ctrl+n)",
                            lambda: self.action_select_sample(1))
        yield SystemCommand("Previous sample", "Select the previous sample (ctrl+b)",
                            lambda: self.action_select_sample(-1))
        yield SystemCommand("View sample full size", "Terminal graphics via term-image (f2)",
                            self.action_view_sample)
        yield SystemCommand("Trace: batch mean or selected sample", "f3", self.action_toggle_trace)
        yield SystemCommand("Next theme", "Cycle the colour themes (ctrl+t)", self.action_next_theme)
        yield SystemCommand("Toggle log", "Show or hide the log panel (ctrl+l)",
                            self.action_toggle_log)
        yield SystemCommand("Distractors from pack", "Every pack caption except the prompt",
                            self.form.fill_distractors_from_pack)
        yield SystemCommand("Download weights", "Fetch the model's weights (needs the internet)",
                            self.action_download)
        yield SystemCommand("Help", "Keys and methods (f1)", self.action_help)

    # ------------------------------------------------------------ form reactions
    @on(FormChanged)
    def _form_changed(self, message: FormChanged) -> None:
        state: FormState = message.state
        if self.shown is None and self.plan is not None:
            self.apply_layout()  # the captions decide the bars' height
        if state.valid and self._preload and not self._quitting:
            if self._preload_timer is not None:
                self._preload_timer.stop()
            self._preload_timer = self.set_timer(PRELOAD_DELAY, self._preload_now)

    def _preload_now(self) -> None:
        forms = self.query(RunForm)  # none once the app is closing (the timer may still fire)
        if not forms:
            return
        state = forms.first().state
        if not state.valid or self.running or self._quitting:
            return
        self.controller.preload(state.values["model"].strip(), state.values["device"])

    @on(RunRequested)
    def _form_run(self) -> None:
        self.action_run()

    @on(PackReady)
    def _pack_ready(self, message: PackReady) -> None:
        device = getattr(message.pack, "device", message.device)
        self._device_label = str(device)
        self._image_px = int(getattr(message.pack, "image_size", self._image_px) or 32)
        name = printable(getattr(message.pack, "name", message.model), 40)
        self.sub_title = f"{name} on {self._device_label}"

    @on(PackFailed)
    def _pack_failed(self, message: PackFailed) -> None:
        error = describe_error(message.error)
        text = f"model {printable(message.model, 60)} ({message.device}): {error}"
        self.log_panel.error(text)
        if error not in self._reported_load_errors:  # each failure is notified once
            self._reported_load_errors.add(error)
            self.notify(printable(text), severity="error", timeout=8, markup=False)

    # ------------------------------------------------------------------ running
    def _refuse_while_running(self, what: str) -> bool:
        if not self.running:
            return False
        event = self.last_event
        where = f" (step {event.step}/{event.total})" if event is not None else ""
        self.say(f"a run is going{where}: esc cancels it, then {what}", "warning")
        return True

    def _checked_form(self) -> FormState | None:
        state = self.form.read_now()
        if state.valid and state.config is not None:
            return state
        lines = state.describe_errors() or ["the form is not complete"]
        self.say("cannot run: " + "; ".join(lines), "error", timeout=6)
        if state.error_field is not None:
            self.form_open = True
            self.apply_layout()
            self.form.field_widget(state.error_field).focus()
        return None

    def action_run(self) -> None:
        if self._refuse_while_running("ctrl+r starts a new one"):
            return
        state = self._checked_form()
        if state is not None and state.config is not None:
            self._start([state.config], state)

    def action_compare(self) -> None:
        if self._refuse_while_running("ctrl+o compares"):
            return
        state = self._checked_form()
        if state is None or state.spec is None:
            return
        try:
            configs = self.form_model.compare_configs(state.values, state.spec)
        except FieldError as exc:
            self.say(f"{LABELS['compare']}: {exc.message}", "error")
            self.form_open = True
            self.apply_layout()
            self.form.field_widget("compare").focus()
            return
        self._start(configs, state)

    def _start(self, configs: list[Any], state: FormState) -> None:
        model, device = state.values["model"].strip(), state.values["device"]
        self.save_form_values()
        if self._preload_timer is not None:
            self._preload_timer.stop()
        loading = self.controller.packs.peek(model, device) is None
        record = self.controller.start(model, device, configs)
        self.shown = record
        self.last_event = None
        self.events_shown = 0
        self.run_pressed_at = time.perf_counter()
        self.first_preview_at = 0.0
        self.grid.set_rows([], selected=0)
        self.bars.clear()
        self.trace.clear()
        self.sample_view.show(None, "waiting for the first step…")
        if self.plan is not None and self.plan.mode == "narrow":
            self.form_open = False
        self.apply_layout()
        self.add_class("-running")
        names = ", ".join(c.method for c in configs)
        self.log_panel.info(f"run #{record.id} {names}: prompt {configs[0].prompt!r}, "
                            f"n={configs[0].n}, seed={configs[0].seed}")
        self.status.show_text(f"loading {printable(model, 40)} on {device}…" if loading
                              else "starting…")
        self._tick.resume()

    def action_cancel(self) -> None:
        if self.controller.cancel():
            self.status.show_text("cancelling: stops after the current step…")
            self.log_panel.info("cancel requested")
        elif self.running:
            self.say("already cancelling: the run stops after the current step")
        else:
            self.say("no run to cancel")

    def pull_events(self) -> None:
        """Timer callback: show the newest event, if any (coalesced, bounded rate)."""
        event = self.controller.take_event()
        if event is None:
            return
        self.last_event = event
        self.events_shown += 1
        record = self.controller.current
        losses = record.losses[-1] if record is not None and record.losses else []
        with self.batch_update():
            self.status.show_text(describe_event(event, self._device_label or "?",
                                                 self._cuda_memory(), losses))
            if self.shown is not record:  # another run is shown: only the status line moves
                return
            had_samples = bool(self.grid.count)
            self.render_shown()
            if not had_samples and self.grid.count and not self.first_preview_at:
                self.first_preview_at = time.perf_counter()

    def _cuda_memory(self) -> str | None:
        if not self._device_label.startswith("cuda"):
            return None
        try:
            import torch

            return f"{torch.cuda.memory_allocated() / 2**20:.0f} MiB"
        except Exception:
            return None

    # ------------------------------------------------------------------ drawing
    def rows_for(self, record: RunRecord) -> list[PreviewRow]:
        rows = [row for i, r in enumerate(record.results) if (row := result_row(r, i))]
        event = self.last_event
        k = len(record.results)
        if (record.running and event is not None and event.preview is not None
                and record is self.controller.current and k < len(record.configs)
                and event.method == record.configs[k].method):
            label = (f"{event.method} · batch {event.batch_index + 1}/{event.n_batches}"
                     f" · step {event.step}/{event.total}")
            rows.append(PreviewRow(label, event.preview, event.probs, event.sample_offset,
                                   event.captions, config_index=k))
        return rows

    def render_shown(self) -> None:
        """Draw the shown run: its rows, the selected sample, its bars and trace."""
        if self.shown is None:
            return
        self.grid.set_rows(self.rows_for(self.shown))
        self._show_selection()

    def _show_selection(self) -> None:
        located = self.grid.locate(self.grid.selected)
        record = self.shown
        if located is None or record is None:
            self.sample_view.show(None, "no sample yet: ctrl+r runs")
            return
        row, i = located
        index = row.index_of(i)
        live = record.running and row.config_index == len(record.results)
        captions = row.captions
        probs = row.probs[i] if row.probs is not None and i < len(row.probs) else None
        if live and self.last_event is not None:
            mean = self.last_event.mean_probs
        else:
            mean = np.nanmean(row.probs, axis=0) if row.probs is not None and len(row.probs) else None
        target = (f" · {captions[0]} {probs[0] * 100:.0f}%"
                  if probs is not None and captions and np.isfinite(probs[0]) else "")
        method = record.configs[row.config_index].method if row.config_index < len(
            record.configs) else ""
        self.sample_view.show(row.images[i], f"#{index} {method}{target}")
        self.bars.set_probs(captions, mean, probs, index)
        self._image_px = int(row.images.shape[2])
        if row.config_index < len(record.traces):
            tr = record.traces[row.config_index]
            batch = tr.batch_of(index)
            n_batches = record.configs[row.config_index].n_batches
            label = "batch mean" + (f" (batch {batch + 1})" if n_batches > 1 and batch is not None
                                    else "")
            optimize = record.configs[row.config_index].method == "optimize"
            self.trace.set_trace(captions, tr.mean(batch), tr.sample(index), mean_label=label,
                                 sample_label=f"sample #{index}",
                                 xlabel="iteration" if optimize else "sampling step")
        else:
            self.trace.clear()

    @on(ResultReady)
    def _result_ready(self, message: ResultReady) -> None:
        self.pull_events()  # the newest step first, then the result replaces it
        result = message.result
        cfg = result.config
        state = "done" if result.completed else "cancelled"
        if self.shown is not None and self.shown.id == message.record_id:
            with self.batch_update():
                self.render_shown()
        mean = f", mean p(target) {result.mean_target_prob:.3f}" if len(result.images) else ""
        self.log_panel.info(f"{cfg.method} {state} in {result.seconds:.1f}s: "
                            f"{len(result.images)} samples{mean}")
        if result.nonfinite_skipped:
            self.log_panel.warn(f"{result.nonfinite_skipped} non-finite guidance gradients "
                                "were skipped")

    @on(RunFailed)
    def _run_failed(self, message: RunFailed) -> None:
        text = describe_error(message.error, message.config)
        if text in self._reported_load_errors:  # already said when the pack was loaded ahead
            self.log_panel.error(f"run failed: {text}")
        else:
            self._reported_load_errors.add(text)
            self.say(f"run failed: {text}", "error", timeout=10)
        if not isinstance(message.error, UserError) and not is_out_of_memory(message.error):
            for line in message.trace.rstrip().splitlines()[-6:]:
                self.log_panel.error("  " + line)

    @on(RunEnded)
    def _run_ended(self, message: RunEnded) -> None:
        if self._quitting:
            return
        self.pull_events()
        self._tick.pause()
        self.runs_ended += 1
        self.remove_class("-running")
        record = self.controller.history.get(message.record_id)
        if record is None:
            return
        if record is self.shown:
            with self.batch_update():
                self.render_shown()
        if record.n_images:
            what = "cancelled" if record.state == "cancelled" else "finished"
            self.status.show_text(f"{what}: {record.n_images} samples · ctrl+s saves · "
                                  "f4 animates · f2 views · ctrl+g runs")
        elif record.state == "cancelled":
            kept = " (the unfinished batch is shown: ctrl+s saves it)" if record.savable else ""
            self.status.show_text(f"cancelled before any sample finished{kept}")
        else:
            where = "in the log" if self.log_panel.display else "the log (ctrl+l)"
            self.status.show_text(f"run failed: see {where}")
        if self.controller.history.dropped_unsaved:
            self.log_panel.warn(f"{self.controller.history.dropped_unsaved} old unsaved runs "
                                "dropped from this sitting's history")
            self.controller.history.dropped_unsaved = 0

    # ------------------------------------------------------------------ saving
    def action_save(self) -> None:
        record = self.shown
        if record is None:
            self.say("nothing to save yet: ctrl+r runs")
            return
        if record.running:
            self._refuse_while_running("ctrl+s saves what is done")
            return
        if record.source is not None:
            self.say(f"this run is already in {record.source}")
            return
        if record.saved:
            self.say(f"already saved: {', '.join(str(p) for p in record.saved)}")
            return
        if not record.savable:
            self.say("nothing to save: no sample of this run finished", "warning")
            return
        self.save_record(record)

    def save_record(self, record: RunRecord) -> bool:
        state = self.form.read_now()
        if "out_dir" in state.errors:
            self.say(f"cannot save: {LABELS['out_dir']}: {state.errors['out_dir']}", "error")
            return False
        raw = state.values.get("out_dir", "out").strip() or "out"
        out_root = Path(raw).expanduser()
        self.form_model.forget_out_dir(raw)  # checked again next time (the disk may change)
        saved: list[Path] = []
        folders: dict[int, Path] = {}
        for i, result in enumerate(record.results):
            if not len(result.images) and result.partial_preview is None:
                continue
            try:
                folders[i] = Path(self._saver(result, out_root, record.pack_name,
                                              pack_source=record.model))
            except Exception as exc:
                self.say(f"could not save: {describe_error(exc)}", "error")
                return False
            saved.append(folders[i])
        record.saved = saved
        record.folders = folders
        self.saved_paths = list(saved)
        for path in saved:
            self.log_panel.info(f"saved {path}")
        self.notify(printable("saved " + ", ".join(str(p) for p in saved)), title="Saved",
                    markup=False)
        return True

    # ---------------------------------------------------------------- animation
    def action_animate(self) -> None:
        """Write the shown run's denoising animation into its run folder, saving it first."""
        from clipterm.tui.animation_files import write_run_animation

        record = self.shown
        if record is None:
            self.say("nothing to animate yet: ctrl+r runs")
            return
        if record.running:
            self._refuse_while_running("f4 writes its animation")
            return
        if record.source is not None:
            self.say("a run opened from its folder kept no frames: clipterm generate --from "
                     f"{record.source} --animate gif makes it again with one", "warning", 8)
            return
        finished = [i for i, r in enumerate(record.results) if len(r.indices)]
        if not finished or not record.frames:
            self.say("nothing to animate: no sample of this run finished", "warning")
            return
        fmt = self.form.read_now().values.get("animate", "gif")
        try:
            check_animation_format(fmt)
        except UserError as exc:
            self.say(f"{LABELS['animate']}: {exc}", "error", timeout=8)
            return
        if record.animations:
            self.say(f"already written: {', '.join(str(p) for p in record.animations)}")
            return
        if not record.saved and not self.save_record(record):
            return
        written: list[Path] = []
        for i in finished:
            folder = record.folders.get(i)
            if folder is None or i >= len(record.frames):
                continue
            try:
                written += write_run_animation(folder, record.frames[i], record.results[i], fmt)
            except UserError as exc:
                self.say(f"could not write the animation: {exc}", "error", timeout=8)
                return
        record.animations = written
        for path in written:
            self.log_panel.info(f"animation {path}")
        self.notify(printable("wrote " + ", ".join(str(p) for p in written)),
                    title="Animation", markup=False)

    # ----------------------------------------------------------------- settings
    def action_load_settings(self) -> None:
        self.push_screen(OpenRunScreen(purpose=LOAD_SETTINGS), self._settings_chosen)

    def _settings_chosen(self, path: str | None) -> None:
        if path:
            self.load_settings(path)

    def load_settings(self, path: str | Path) -> bool:
        """Fill the form with a run folder's or a sample PNG's settings (one line if not)."""
        from clipterm.rerun import read_recorded

        try:
            recorded = read_recorded(path)
        except UserError as exc:
            self.say("cannot load settings: " + str(exc).removeprefix("--from "), "error", 8)
            return False
        values, notes = values_from_recorded(recorded)
        self.form.set_values(values)
        self.form_open = True
        self.apply_layout()
        where = f"sample #{recorded.index} of " if recorded.index is not None else ""
        self.say(f"settings of {where}{path} loaded: ctrl+r runs them")
        for note in notes:
            self.say(note, "warning", timeout=8)
        return True

    # --------------------------------------------------------------- selection
    @on(SampleClicked)
    def _sample_clicked(self, message: SampleClicked) -> None:
        self.grid.select(message.index)
        self.selection_changed_at = time.perf_counter()
        self._show_selection()

    def action_select_sample(self, delta: int) -> None:
        if not self.grid.count:
            self.say("no samples yet: ctrl+r runs")
            return
        self.grid.select(self.grid.selected + delta)
        self.selection_changed_at = time.perf_counter()
        self._show_selection()

    def action_toggle_trace(self) -> None:
        if not self.trace.display:
            self.say("no room for the trace at this size")
            return
        which = self.trace.toggle()
        self.say(f"trace: {which or 'batch mean'}", timeout=2)

    def action_view_sample(self) -> None:
        located = self.grid.locate(self.grid.selected)
        if located is None:
            self.say("no sample to view yet: ctrl+r runs")
            return
        row, i = located
        from textual.app import SuspendNotSupported

        from clipterm.tui.graphics import draw_fullsize, wait_for_any_key

        try:
            with self.suspend():
                try:
                    caption = printable(f"sample #{row.index_of(i)} ({row.label})")
                    style = draw_fullsize(row.images[i], caption)
                    wait_for_any_key(f"[{style}] any key returns to clipterm ")
                except KeyboardInterrupt:  # Ctrl+C while drawing: back to the app
                    pass
        except SuspendNotSupported:
            self.say("this terminal cannot suspend the app to show graphics", "warning")
        except Exception as exc:
            self.say(f"could not draw the sample: {exc}", "warning")

    # --------------------------------------------------------------- history
    def action_runs(self) -> None:
        records = self.controller.history.records
        if not records:
            self.say("no runs yet in this sitting: ctrl+r runs")
            return
        runs = [(r.id, r.describe()) for r in records]
        self.push_screen(RunsScreen(runs, self.shown.id if self.shown else None), self._runs_chosen)

    def _runs_chosen(self, choice: tuple[str, int] | None) -> None:
        if choice is None:
            return
        what, record_id = choice
        record = self.controller.history.get(record_id)
        if record is None:
            return
        self.show_record(record)
        if what == "save":
            self.action_save()

    def show_record(self, record: RunRecord) -> None:
        self.shown = record
        self.grid.set_rows([], selected=0)
        if self.plan is not None and self.plan.mode == "narrow":
            self.form_open = False
        self.apply_layout()
        with self.batch_update():
            self.render_shown()
        self.status.show_text(f"showing {record.describe()}")

    def action_open_run(self) -> None:
        self.push_screen(OpenRunScreen(), self._open_chosen)

    def _open_chosen(self, path: str | None) -> None:
        if not path:
            return
        try:
            past = load_past_run(path)
        except UserError as exc:
            self.say(str(exc), "error", timeout=8)
            return
        self.show_past_run(past)

    def show_past_run(self, past: PastRun) -> None:
        record = self.controller.add_opened(past.folder, [past.result.config], past.pack_name,
                                            [past.result], [past.trace])
        self.show_record(record)
        self.log_panel.info(f"opened {past.folder} ({past.status}, {len(past.result.images)} "
                            "samples)")
        if past.skipped:
            self.log_panel.warn(f"{past.skipped} more samples are in the folder than shown")

    # ------------------------------------------------------------------- misc
    def action_toggle_form(self) -> None:
        self.form_open = not self.form_open
        self.apply_layout()
        if self.form_open:
            self.query_one("#prompt").focus()
        if self.shown is None:
            self.show_idle_status()

    def theme_cycle(self) -> list[str]:
        names = [n for n in self.custom_theme_names if n in self.available_themes]
        return names + [n for n in ("textual-dark", "textual-light") if n not in names]

    def action_next_theme(self) -> None:
        cycle = self.theme_cycle()
        i = cycle.index(self.theme) if self.theme in cycle else -1
        self.theme = cycle[(i + 1) % len(cycle)]
        self.notify(printable(f"theme: {self.theme}"), timeout=2, markup=False)

    def action_toggle_log(self) -> None:
        self.log_panel.display = not self.log_panel.display

    def action_download(self) -> None:
        state = self.form.read_now()
        if state.spec is None:
            self.say("name a pack in the Model field first", "warning")
            return
        if state.missing_weights is None:
            self.say(f"the weights of {state.spec.name} are here already")
            return
        if hub_offline():
            self.say("HF_HUB_OFFLINE is set: downloads are off. Unset it, or run "
                     f"clipterm models --download {state.spec.name} on a machine with internet",
                     "warning", timeout=8)
            return
        model = state.values["model"].strip()
        self.say(f"downloading the weights of {state.spec.name}…")
        import threading

        threading.Thread(target=self._download, args=(model,), daemon=True).start()

    def _download(self, model: str) -> None:
        try:
            from clipterm.models import download_pack

            download_pack(model)
            self.post_message(DownloadEnded(model, None))
        except Exception as exc:
            self.post_message(DownloadEnded(model, describe_error(exc)))

    @on(DownloadEnded)
    def _download_ended(self, message: DownloadEnded) -> None:
        if message.error:
            self.say(f"download failed: {message.error}", "error", timeout=8)
        else:
            self.say(f"downloaded the weights of {message.model}")
        self.form_model.forget_availability()
        self.form.read_now()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        keys = [(b.key, b.tooltip or b.description) for b in self.BINDINGS
                if isinstance(b, Binding)]
        keys += [
            ("ctrl+p", "command palette: every action by name (open a run folder, download)"),
            ("tab / shift+tab", "move between fields"),
            ("alt+up / alt+down", "move a distractor line (in the list)"),
            ("enter", "run, from any text field"),
            ("mouse", "click a thumbnail to select it; the wheel scrolls the thumbnails"),
        ]
        self.push_screen(HelpScreen(keys))

    def save_form_values(self) -> None:
        try:
            save_last_values(self.config_dir, {**self.form.values(), "theme": self.theme})
        except OSError as exc:
            self.log_panel.warn(f"could not remember the form values: {exc}")

    def unsaved_records(self) -> list[RunRecord]:
        out = self.controller.history.unsaved()
        current = self.controller.current
        if current is not None and current.running and current.savable:
            out.append(current)
        return out

    async def action_quit(self) -> None:
        """Quit at once, or ask first when runs of this sitting are not saved."""
        if isinstance(self.screen, QuitScreen):  # ctrl+q again: quit without saving
            self.screen.dismiss("quit")
            return
        unsaved = self.unsaved_records()
        if not unsaved:
            self.quit_now()
            return
        self.push_screen(QuitScreen([r.describe() for r in unsaved], self.running),
                         self._quit_chosen)

    def _quit_chosen(self, choice: str | None) -> None:
        if choice == "save":
            self.run_worker(self._save_and_quit(), exclusive=True, group="quit")
        elif choice == "quit":
            self.quit_now()

    async def _save_and_quit(self) -> None:
        """Save every unsaved run, then quit; a running one is stopped first (between steps),
        so what it finished is saved too."""
        if self.running:
            self.controller.cancel()
            self.status.show_text("stopping the run to save what it has done…")
            while self.running:
                await asyncio.sleep(0.05)
            self.pull_events()
        for record in self.unsaved_records():
            if not self.save_record(record):
                return  # the reason is shown; stay
        self.quit_now()

    def quit_now(self) -> None:
        """Stop the run (a moment's grace, never a wait), remember the form, exit."""
        self._quitting = True
        if self.running:
            self.status.show_text("stopping the run…")
            self.controller.shutdown(QUIT_GRACE)
        self.save_form_values()
        self.exit()

    def on_unmount(self) -> None:
        self.controller.shutdown(0)  # any other way out still stops the sampler


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
    open_run: PastRun | None = None,
    settings: Recorded | None = None,
) -> NoReturn:
    """Open the TUI with the form prefilled from the given options (None = remembered/default).

    Never returns: once the app has restored the terminal the process ends with the app's exit
    code, without waiting for a sampler or pack loader still busy in its thread, nor for
    Python's teardown of torch.
    """
    from clipterm.config import METHODS

    if method is not None and method not in METHODS:
        raise UserError(f"unknown method {printable(method)!r}: choose one of {', '.join(METHODS)}")
    app = ClipTermApp(model=model, prompt=prompt, distractors=distractors, method=method,
                      device=device, steps=steps, scale=scale, n=n, seed=seed, out_dir=out_dir,
                      reset=reset, open_run=open_run, settings=settings)
    app.run()
    code = app.return_code or 0
    # The terminal is restored, the form remembered, every save the user asked for finished.
    # What is left is Python's own shutdown: it waits for a sampler or pack loader still inside
    # torch (which stops between steps, seconds later) or aborts in C++ under it, and even when
    # idle it tears down torch and the pack (1.7 s measured for the digits pack on 2 cores).
    # None of it is the user's work: end the process now.
    import logging
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)
