"""RunForm: the left pane. Everything that describes a run, checked as the user types.

The form keeps raw strings (what the user typed). A moment after the last edit it asks its
:class:`~clipterm.tui.form_model.FormModel` to read them (the model holds every rule; this
widget only shows the outcome): each field in error is marked, with its message under the form,
and Run is disabled until the form describes a run. Reading is debounced, so typing never waits
for it; ``read_now`` reads at once (before a run starts). Switching the model to another pack
offers that pack's captions when the prompt and distractors were the old pack's.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from clipterm.config import METHODS
from clipterm.packs import PackSpec
from clipterm.sanitize import printable
from clipterm.tui.distractors import DistractorList
from clipterm.tui.field_input import FieldInput
from clipterm.tui.form_model import (
    ANIMATION_FORMATS,
    CLIP_INPUTS,
    DEFAULT_VALUES,
    FIELDS,
    LABELS,
    METHOD_FIELDS,
    PACK_DEFAULT,
    FormModel,
    FormState,
    captions_after_switch,
    device_choices,
    pack_distractors,
    placeholders,
    valid_device,
)
from clipterm.tui.messages import FormChanged, RunRequested

READ_DELAY = 0.12  # seconds after the last edit before the form is read


class RunForm(Widget, can_focus=False):
    """The run description. Posts :class:`FormChanged` after each read."""

    def __init__(self, values: dict[str, str], model: FormModel | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._initial = {**DEFAULT_VALUES, **values}
        self.model = model or FormModel()
        self.state = FormState(values=dict(self._initial))
        self.reads = 0  # how many times the form was read (tests wait on it)
        self._timer: Timer | None = None
        self._shown: dict[str, Any] = {}
        self._placeholders_for: tuple[str, str] | None = None
        self._last_spec: PackSpec | None = None

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        v = self._initial
        with VerticalScroll(id="form-scroll"):
            yield Static("Pack", classes="section")
            yield self._row("model", FieldInput(
                v["model"], id="model", compact=True,
                suggester=SuggestFromList(self.model.pack_names(), case_sensitive=False),
                placeholder="pack name, pack JSON or model folder"))
            yield self._row("device", Select(
                [(d, d) for d in device_choices(v["device"])],
                value=v["device"] if valid_device(v["device"]) else "auto",
                allow_blank=False, compact=True, id="device"))
            yield Static("Prompt", classes="section")
            yield FieldInput(v["prompt"], id="prompt", compact=True,
                             placeholder="a caption, or weighted: a:1|b:-0.5")
            yield Label("Distractors, one per line (alt+↑/↓ reorder)", classes="hint")
            yield DistractorList(v["distractors"].splitlines(), id="distractors")
            yield Static("Method", classes="section")
            yield self._row("method", Select(
                [(m, m) for m in METHODS],
                value=v["method"] if v["method"] in METHODS else "contrastive",
                allow_blank=False, compact=True, id="method"))
            for name in ("scale", "steps", "n", "batch", "seed"):
                yield self._row(name, FieldInput(v[name], id=name, compact=True))
            yield self._row("sampler", Select(
                [("pack default", PACK_DEFAULT), ("ddpm", "ddpm"), ("ddim", "ddim")],
                value=v["sampler"] if v["sampler"] in (PACK_DEFAULT, "ddpm", "ddim")
                else PACK_DEFAULT,
                allow_blank=False, compact=True, id="sampler"))
            yield self._row("clip_input", Select(
                [("x0 (predicted clean)", "x0"), ("xt (noisy sample)", "xt")],
                value=v["clip_input"] if v["clip_input"] in CLIP_INPUTS else "x0",
                allow_blank=False, compact=True, id="clip_input"))
            yield self._row("guide_from", FieldInput(v["guide_from"], id="guide_from",
                                                     compact=True, placeholder="all steps"))
            yield self._row("guide_every", FieldInput(v["guide_every"], id="guide_every",
                                                      compact=True))
            yield self._row("image_prompt", FieldInput(v["image_prompt"], id="image_prompt",
                                                       compact=True,
                                                       placeholder="none (an image as a target)"))
            yield self._row("image_weight", FieldInput(v["image_weight"], id="image_weight",
                                                       compact=True))
            for name in ("opt_iters", "lr"):
                yield self._row(name, FieldInput(v[name], id=name, compact=True))
            yield self._row("init_image", FieldInput(v["init_image"], id="init_image",
                                                     compact=True,
                                                     placeholder="none (start from an image)"))
            yield self._row("strength", FieldInput(v["strength"], id="strength", compact=True))
            yield Static("Output", classes="section")
            yield self._row("out_dir", FieldInput(v["out_dir"], id="out_dir", compact=True))
            yield self._row("animate", Select(
                [(f"{f} (f4 writes it)", f) for f in ANIMATION_FORMATS],
                value=v["animate"] if v["animate"] in ANIMATION_FORMATS else "gif",
                allow_blank=False, compact=True, id="animate"))
            yield self._row("compare", FieldInput(v["compare"], id="compare", compact=True,
                                                  placeholder="methods for ctrl+o"))
        with Vertical(id="form-bottom"):
            yield Label("", id="form-error", markup=False)
            yield Label("", id="form-warning", markup=False)
            yield Button("Run  ctrl+r", id="run", variant="success", disabled=True,
                         compact=True)

    def _row(self, name: str, widget: Widget) -> Horizontal:
        classes = "row"
        if name in METHOD_FIELDS:
            classes += " " + " ".join(f"for-{m}" for m in METHOD_FIELDS[name]) + " by-method"
        return Horizontal(Label(LABELS[name], classes="field-label"), widget, classes=classes,
                          id=f"row-{name}")

    def on_mount(self) -> None:
        self._last_spec = self.model.try_spec(self._initial["model"])
        self.read_now()

    # ------------------------------------------------------------------ values
    def values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in FIELDS:
            widget = self.query_one(f"#{name}")
            if isinstance(widget, DistractorList):
                out[name] = "\n".join(widget.distractors)
            elif isinstance(widget, Input):
                out[name] = widget.value
            elif isinstance(widget, Select):
                out[name] = str(widget.value)
        return out

    def _put(self, name: str, value: str) -> None:
        """Write one field's widget as if typed (the form is not read)."""
        widget = self.query_one(f"#{name}")
        if isinstance(widget, DistractorList):
            widget.set_distractors(value.splitlines())
        elif isinstance(widget, (Input, Select)):
            widget.value = value

    def set_value(self, name: str, value: str) -> None:
        """Set one field as if typed; the form is read at once."""
        self._put(name, value)
        self.read_now()

    def set_values(self, values: dict[str, str]) -> FormState:
        """Set several fields at once (loaded settings), as given: the captions are not
        switched to the new pack's; the form is read once."""
        for name, value in values.items():
            self._put(name, value)
        self._last_spec = self.model.try_spec(self.values().get("model", ""))
        return self.read_now()

    def field_widget(self, name: str) -> Widget:
        return self.query_one(f"#{name}")

    # -------------------------------------------------------------- reading
    def read_now(self) -> FormState:
        """Read and check the form now; show the outcome and post :class:`FormChanged`."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        state = self.model.read(self.values())
        if state.spec is not None and self._switch_captions(state.spec, state.values):
            state = self.model.read(self.values())
        self.state = state
        self.reads += 1
        self._show(state)
        self.post_message(FormChanged(state))
        return state

    def _switch_captions(self, spec: PackSpec, values: dict[str, str]) -> bool:
        old, self._last_spec = self._last_spec, spec
        if old is None:
            return False
        offer = captions_after_switch(old, spec, values)
        if offer is None:
            return False
        self.query_one("#prompt", Input).value = offer["prompt"]
        self.query_one("#distractors", DistractorList).set_distractors(
            offer["distractors"].splitlines())
        self.notify(printable(f"prompt and distractors: the captions of {spec.name}"), timeout=4,
                    markup=False)
        return True

    def _set(self, key: str, value: Any, apply: Any) -> None:
        """Apply a visual change only when it changes (each costs a style or layout pass)."""
        if self._shown.get(key, object()) != value:
            self._shown[key] = value
            apply(value)

    def _show(self, state: FormState) -> None:
        method = state.values.get("method", "contrastive")
        for row in self.query(".by-method"):
            wanted = row.has_class(f"for-{method}")
            self._set(f"display:{row.id}", wanted, lambda v, r=row: setattr(r, "display", v))
        for name in FIELDS:
            message = state.errors.get(name)
            widget = self.query_one(f"#{name}")

            def mark(msg: str | None, w: Widget = widget) -> None:
                w.set_class(msg is not None, "-field-error")
                w.tooltip = msg

            self._set(f"error:{name}", message, mark)
        lines = state.describe_errors()
        error = ("✗ " + lines[0] + (f"  (+{len(lines) - 1} more)" if len(lines) > 1 else "")
                 if lines else "")
        self._set("#form-error", error, lambda t: self._label("#form-error", t))
        warning = "\n".join(f"! {w}" for w in state.warnings)
        self._set("#form-warning", warning, lambda t: self._label("#form-warning", t))
        self._set("run-disabled", not state.valid,
                  lambda v: setattr(self.query_one("#run", Button), "disabled", v))
        if state.spec is not None:
            key = (state.spec.source, method)
            if self._placeholders_for != key:
                self._placeholders_for = key
                for name, text in placeholders(state.spec, method).items():
                    self.query_one(f"#{name}", Input).placeholder = text

    def _label(self, selector: str, text: str) -> None:
        label = self.query_one(selector, Label)
        label.update(text)
        label.display = bool(text)

    def fill_distractors_from_pack(self) -> None:
        """Distractors = every pack caption except the prompt (the poster's setting)."""
        state = self.read_now()
        if state.spec is None:
            self.notify("the model is not a pack: no captions to take", severity="warning")
            return
        prompt = state.values.get("prompt", "")
        self.set_value("distractors", "\n".join(pack_distractors(state.spec, prompt)))

    # ------------------------------------------------------------ reactions
    @on(Input.Changed)
    @on(Select.Changed)
    @on(TextArea.Changed)
    def _changed(self, event: Any) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(READ_DELAY, self.read_now)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(RunRequested())

    @on(Button.Pressed, "#run")
    def _run_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(RunRequested())
