"""RunForm: the left pane. Everything that describes a run, validated as the user types.

The form keeps raw strings (what the user typed); :meth:`RunForm.read` turns them into a
``RunConfig`` with the core's own ``resolve`` / ``validate``, and maps a ``ConfigError`` back
to the field it is about. Blank numeric fields mean "the pack's default" (shown as placeholder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from clipterm.config import METHODS, RunConfig, pack_default, resolve
from clipterm.errors import UserError
from clipterm.packs import PackSpec, builtin_pack_names, get_pack_spec
from clipterm.tui.distractors import DistractorList

DEVICES = ("auto", "cpu", "cuda")
PACK_DEFAULT = "pack"  # Select value meaning "leave it to the pack"

# Fields shown only for some methods (the rest are always shown).
METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    "scale": ("spherical", "contrastive"),
    "clip_input": ("spherical", "contrastive"),
    "guide_from": ("spherical", "contrastive"),
    "sampler": ("uncond", "spherical", "contrastive"),
    "opt_iters": ("optimize",),
    "lr": ("optimize",),
    "init_image": ("optimize",),
}

LABELS = {
    "model": "Model",
    "device": "Device",
    "prompt": "Prompt",
    "distractors": "Distractors",
    "method": "Method",
    "scale": "Scale",
    "steps": "Steps",
    "n": "Samples",
    "batch": "Batch",
    "seed": "Seed",
    "sampler": "Sampler",
    "clip_input": "CLIP input",
    "guide_from": "Guide from",
    "opt_iters": "Iterations",
    "lr": "Learn rate",
    "init_image": "Init image",
    "out_dir": "Save to",
    "compare": "Compare",
}

# How a ConfigError message names its field (first match wins).
_MESSAGE_FIELDS = (
    ("distractor", "distractors"),
    ("prompt", "prompt"),
    ("guide-from", "guide_from"),
    ("init-image", "init_image"),
    ("init image", "init_image"),
    ("iterations", "opt_iters"),
    ("learning rate", "lr"),
    ("steps", "steps"),
    ("n must", "n"),
    ("batch", "batch"),
    ("scale", "scale"),
    ("seed", "seed"),
    ("sampler", "sampler"),
    ("clip input", "clip_input"),
    ("method", "method"),
)

DEFAULT_VALUES: dict[str, str] = {
    "model": "digits",
    "device": "auto",
    "prompt": "",
    "distractors": "",
    "method": "contrastive",
    "scale": "",
    "steps": "",
    "n": "16",
    "batch": "",
    "seed": "0",
    "sampler": PACK_DEFAULT,
    "clip_input": "x0",
    "guide_from": "",
    "opt_iters": "",
    "lr": "",
    "init_image": "",
    "out_dir": "out",
    "compare": "uncond, spherical, contrastive",
}


@dataclass(frozen=True)
class FormState:
    """The outcome of reading the form: a valid config, or the field at fault and why."""

    values: dict[str, str]
    config: RunConfig | None = None
    spec: PackSpec | None = None
    error_field: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return self.config is not None


class FieldError(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def valid_device(device: str) -> bool:
    """auto, cpu, cuda or cuda:N (whether it exists is the loader's business)."""
    if device in DEVICES:
        return True
    head, _, index = device.partition(":")
    return head == "cuda" and index.isdigit()


def device_choices(current: str) -> tuple[str, ...]:
    return DEVICES if current in DEVICES or not valid_device(current) else (*DEVICES, current)


def field_for_message(message: str) -> str | None:
    low = message.casefold()
    for needle, name in _MESSAGE_FIELDS:
        if needle in low:
            return name
    return None


def _int(values: dict[str, str], name: str, blank: int | None) -> int | None:
    raw = values.get(name, "").strip()
    if not raw:
        return blank
    try:
        return int(raw)
    except ValueError:
        raise FieldError(name, f"{LABELS[name]}: {raw!r} is not a whole number") from None


def _float(values: dict[str, str], name: str) -> float | None:
    raw = values.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise FieldError(name, f"{LABELS[name]}: {raw!r} is not a number") from None


def config_from_values(
    values: dict[str, str], spec: PackSpec, train_steps: int
) -> tuple[RunConfig, RunConfig]:
    """(config as typed, config resolved against the pack and validated); raises FieldError."""
    method = values.get("method", "contrastive")
    sampler = values.get("sampler", PACK_DEFAULT)
    distractors = tuple(
        line.strip() for line in values.get("distractors", "").splitlines() if line.strip()
    )
    given = dict(
        n=_int(values, "n", None),
        batch=_int(values, "batch", None),
        steps=_int(values, "steps", None),
        sampler=None if sampler == PACK_DEFAULT or method == "optimize" else sampler,
        scale=_float(values, "scale") if method in METHOD_FIELDS["scale"] else None,
        seed=_int(values, "seed", None),
        clip_input=values.get("clip_input", "x0") if method in METHOD_FIELDS["clip_input"] else None,
        guide_from=_int(values, "guide_from", None) if method in METHOD_FIELDS["guide_from"] else None,
        opt_iters=_int(values, "opt_iters", None) if method == "optimize" else None,
        lr=_float(values, "lr") if method == "optimize" else None,
        init_image=(values.get("init_image", "").strip() or None) if method == "optimize" else None,
    )
    try:
        checked = resolve(spec, method=method, prompt=values.get("prompt", ""),
                          distractors=distractors or None, **given)
    except UserError as exc:
        message = str(exc)
        name = getattr(exc, "field", None)
        raise FieldError(name if name in LABELS else field_for_message(message) or "method",
                         message) from None
    return checked, checked


def compare_methods(values: dict[str, str]) -> list[str]:
    raw = [m.strip() for m in values.get("compare", "").replace(",", " ").split()]
    if not raw:
        raise FieldError(
            "compare", "name the methods to compare, e.g. uncond, spherical, contrastive"
        )
    for m in raw:
        if m not in METHODS:
            raise FieldError("compare", f"unknown method {m!r}: choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(raw))


def compare_configs(
    values: dict[str, str], spec: PackSpec, train_steps: int
) -> list[RunConfig]:
    """One validated config per compared method, all from the same seed.

    The form's scale (and optimize settings) belong to the form's method; the other methods use
    the pack's defaults for them, since scales are not comparable across objectives.
    """
    configs = []
    for m in compare_methods(values):
        vals = dict(values, method=m)
        if m != values.get("method"):
            vals.update(scale="")
        try:
            configs.append(config_from_values(vals, spec, train_steps)[1])
        except FieldError as exc:
            raise FieldError("compare", f"{m}: {exc.message}") from None
    return configs


class RunForm(Widget, can_focus=False):
    """The run description. Posts :class:`RunForm.Changed` after every edit."""

    class Changed(Message):
        def __init__(self, state: FormState) -> None:
            super().__init__()
            self.state = state

    class RunPressed(Message):
        pass

    def __init__(self, values: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._initial = {**DEFAULT_VALUES, **values}
        self._specs: dict[str, PackSpec | UserError] = {}
        self.train_steps: dict[str, int] = {}  # model -> the loaded pack's training steps
        self.state = FormState(values=dict(self._initial))
        self._label_text: dict[str, str] = {}
        self._placeholders_for: tuple[str, str] | None = None

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        v = self._initial
        with VerticalScroll(id="form-scroll"):
            yield Static("Pack", classes="section")
            yield self._row(
                "model",
                Input(
                    v["model"],
                    id="model",
                    compact=True,
                    suggester=SuggestFromList(builtin_pack_names(), case_sensitive=False),
                    placeholder="pack name, pack JSON or model folder",
                ),
            )
            yield self._row(
                "device",
                Select(
                    [(d, d) for d in device_choices(v["device"])],
                    value=v["device"] if valid_device(v["device"]) else "auto",
                    allow_blank=False,
                    compact=True,
                    id="device",
                ),
            )
            yield Static("Prompt", classes="section")
            yield Input(
                v["prompt"], id="prompt", compact=True, placeholder="the caption to steer toward"
            )
            yield Label("Distractors, one per line (alt+↑/↓ reorder)", classes="hint")
            yield DistractorList(v["distractors"].splitlines(), id="distractors")
            yield Static("Method", classes="section")
            yield self._row(
                "method",
                Select(
                    [(m, m) for m in METHODS],
                    value=v["method"] if v["method"] in METHODS else "contrastive",
                    allow_blank=False,
                    compact=True,
                    id="method",
                ),
            )
            for name in ("scale", "steps", "n", "batch", "seed"):
                yield self._row(name, Input(v[name], id=name, compact=True))
            yield self._row(
                "sampler",
                Select(
                    [("pack default", PACK_DEFAULT), ("ddpm", "ddpm"), ("ddim", "ddim")],
                    value=v["sampler"]
                    if v["sampler"] in (PACK_DEFAULT, "ddpm", "ddim")
                    else PACK_DEFAULT,
                    allow_blank=False,
                    compact=True,
                    id="sampler",
                ),
            )
            yield self._row(
                "clip_input",
                Select(
                    [("x0 (predicted clean)", "x0"), ("xt (noisy sample)", "xt")],
                    value=v["clip_input"] if v["clip_input"] in ("x0", "xt") else "x0",
                    allow_blank=False,
                    compact=True,
                    id="clip_input",
                ),
            )
            yield self._row(
                "guide_from",
                Input(v["guide_from"], id="guide_from", compact=True, placeholder="all steps"),
            )
            for name in ("opt_iters", "lr"):
                yield self._row(name, Input(v[name], id=name, compact=True))
            yield self._row(
                "init_image",
                Input(
                    v["init_image"],
                    id="init_image",
                    compact=True,
                    placeholder="none (optional path)",
                ),
            )
            yield self._row("out_dir", Input(v["out_dir"], id="out_dir", compact=True))
            yield self._row(
                "compare",
                Input(v["compare"], id="compare", compact=True, placeholder="methods for ctrl+o"),
            )
            yield Label("", id="form-error")
            yield Label("", id="form-warning")
            yield Button("Run  ctrl+r", id="run", variant="success", disabled=True)

    def _row(self, name: str, widget: Widget) -> Horizontal:
        classes = "row"
        if name in METHOD_FIELDS:
            classes += " " + " ".join(f"for-{m}" for m in METHOD_FIELDS[name]) + " by-method"
        return Horizontal(
            Label(LABELS[name], classes="field-label"), widget, classes=classes, id=f"row-{name}"
        )

    def on_mount(self) -> None:
        self.revalidate()

    # ------------------------------------------------------------------ values
    def values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in DEFAULT_VALUES:
            if name == "distractors":
                out[name] = "\n".join(self.query_one("#distractors", DistractorList).distractors)
                continue
            widget = self.query_one(f"#{name}")
            if isinstance(widget, Input):
                out[name] = widget.value
            elif isinstance(widget, Select):
                out[name] = str(widget.value)
        return out

    def set_value(self, name: str, value: str) -> None:
        widget = self.query_one(f"#{name}")
        if isinstance(widget, DistractorList):
            widget.set_distractors(value.splitlines())
        elif isinstance(widget, Input):
            widget.value = value
        elif isinstance(widget, Select):
            widget.value = value
        self.revalidate()

    def spec_for(self, model: str) -> PackSpec:
        cached = self._specs.get(model)
        if cached is None:
            try:
                cached = get_pack_spec(model)
            except UserError as exc:
                cached = exc
            self._specs[model] = cached
        if isinstance(cached, UserError):
            raise FieldError("model", str(cached))
        return cached

    def read(self) -> FormState:
        values = self.values()
        spec: PackSpec | None = None
        try:
            if not valid_device(values["device"]):
                raise FieldError("device", f"unknown device {values['device']!r}")
            spec = self.spec_for(values["model"].strip())
            train_steps = self.train_steps.get(
                values["model"].strip(), int(spec.defaults.get("train_steps", 1000))
            )
            _, checked = config_from_values(values, spec, train_steps)
        except FieldError as exc:
            return FormState(values=values, spec=spec, error_field=exc.field, error=exc.message)
        return FormState(values=values, config=checked, spec=spec, warnings=checked.warnings)

    # -------------------------------------------------------------- reactions
    def revalidate(self) -> FormState:
        """Read and check the form; show the outcome. Only what changed is touched (each
        class, display or text change costs a style or layout pass: keep typing snappy)."""
        state = self.read()
        self.state = state
        method = state.values.get("method", "contrastive")
        for row in self.query(".by-method"):
            wanted = row.has_class(f"for-{method}")
            if row.display != wanted:
                row.display = wanted
        for widget in self.query("Input, Select, DistractorList"):
            invalid = widget.id == state.error_field
            if widget.has_class("-invalid") != invalid:
                widget.set_class(invalid, "-invalid")
        error = f"✗ {LABELS.get(state.error_field or '', '')}: {state.error}" if state.error else ""
        self._set_label("#form-error", error)
        self._set_label("#form-warning", "\n".join(f"! {w}" for w in state.warnings))
        run = self.query_one("#run", Button)
        if run.disabled == state.valid:
            run.disabled = not state.valid
        if state.spec is not None:
            self._update_placeholders(state.spec, method)
        self.post_message(self.Changed(state))
        return state

    def _set_label(self, selector: str, text: str) -> None:
        label = self.query_one(selector, Label)
        if self._label_text.get(selector) != text:
            self._label_text[selector] = text
            label.update(text)
            label.display = bool(text)

    def _update_placeholders(self, spec: PackSpec, method: str) -> None:
        key = (spec.source, method)
        if self._placeholders_for == key:
            return
        self._placeholders_for = key
        defaults = {
            "steps": pack_default(spec, method, "steps"),
            "scale": pack_default(spec, method, "scale"),
            "batch": f"up to {pack_default(spec, method, 'batch') or 100}",
            "opt_iters": pack_default(spec, method, "opt_iters"),
            "lr": pack_default(spec, method, "lr"),
        }
        for name, value in defaults.items():
            if value is not None:
                self.query_one(f"#{name}", Input).placeholder = f"{value} (pack)"

    def fill_distractors_from_pack(self) -> None:
        """Distractors = every pack caption except the prompt (the poster's setting)."""
        state = self.state
        if state.spec is None:
            return
        prompt = state.values.get("prompt", "")
        self.set_value("distractors", "\n".join(state.spec.distractors_for(prompt)))

    @on(Input.Changed)
    @on(Select.Changed)
    @on(TextArea.Changed)
    def _changed(self, event: Message) -> None:
        event.stop()
        self.revalidate()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.state.valid:
            self.post_message(self.RunPressed())

    @on(Button.Pressed, "#run")
    def _run_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.RunPressed())
