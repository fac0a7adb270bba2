"""The run form's model, without Textual: raw strings in, a checked run (or what is wrong) out.

The form widget (:mod:`clipterm.tui.form`) keeps what the user typed, as strings; this module
turns them into a :class:`FormState`: the run config made by the core, the pack it is for, and
one message per field that is wrong. It is the TUI's one adapter to the core's configuration
(``clipterm.api.make_config``, the pack specs, their defaults and whether their weights are
here), so a change in the core is adapted here and nowhere else in the app.

Checks that touch the disk (the pack JSON, the weights, the Save-to folder) are cached per
value, so reading the form as the user types stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clipterm.api import make_config
from clipterm.config import (
    DEFAULT_STRENGTH,
    METHODS,
    OPTION_NAMES,
    VIEW_OPTIONS,
    VIEWS_OFF,
    RunConfig,
    pack_default,
    parse_prompts,
)
from clipterm.errors import ConfigError, UserError
from clipterm.packs import PackSpec, builtin_pack_names, get_pack_spec
from clipterm.rerun import Recorded
from clipterm.sanitize import printable

DEVICES = ("auto", "cpu", "cuda")
PACK_DEFAULT = "pack"  # the sampler choice meaning "leave it to the pack"
SAMPLERS = (PACK_DEFAULT, "ddpm", "ddim")
CLIP_INPUTS = ("x0", "xt")

# Fields shown only for some methods (the others are always shown).
METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    "scale": ("spherical", "contrastive"),
    "clip_input": ("spherical", "contrastive"),
    "guide_from": ("spherical", "contrastive"),
    "guide_every": ("spherical", "contrastive"),
    "image_prompt": ("spherical", "contrastive"),
    "image_weight": ("spherical", "contrastive"),
    "sampler": ("uncond", "spherical", "contrastive"),
    "opt_iters": ("optimize",),
    "lr": ("optimize",),
    "strength": ("uncond", "spherical", "contrastive"),
}
ANIMATION_FORMATS = ("gif", "apng", "mp4")
START_AT = "t="  # the Strength field's way to name a timestep instead (--start-at)

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
    "guide_every": "Guide every",
    "image_prompt": "Image prompt",
    "image_weight": "Image weight",
    "opt_iters": "Iterations",
    "lr": "Learn rate",
    "init_image": "Init image",
    "strength": "Strength",
    "out_dir": "Save to",
    "animate": "Animation",
    "compare": "Compare",
}
FIELDS = tuple(LABELS)  # the form's fields, in the order they are shown

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
    "guide_every": "",
    "image_prompt": "",
    "image_weight": "",
    "opt_iters": "",
    "lr": "",
    "init_image": "",
    "strength": "",
    "out_dir": "out",
    "animate": "gif",
    "compare": "uncond, spherical, contrastive",
}

# Config fields the form has no input for: their errors are shown at the method.
_FIELD_OF_CONFIG = {"eta": "method", "grad_norm": "method", "train_steps": "steps",
                    "weights": "prompt", "more_prompts": "prompt"}
# How the core names options where a user types them (CLI flags) -> the form's labels.
_FLAG_LABELS = {flag: LABELS.get(name, name) for name, flag in OPTION_NAMES.items()}
_FLAG_LABELS.update({"--out": LABELS["out_dir"], "--model": LABELS["model"],
                     "--device": LABELS["device"], "--steps": LABELS["steps"],
                     "--seed": LABELS["seed"], "--batch": LABELS["batch"],
                     "--start-at": LABELS["strength"]})
_FLAG_RE = re.compile("(?:" + "|".join(re.escape(f) for f in sorted(_FLAG_LABELS, key=len,
                                                                   reverse=True))
                      + r")(?![\w-])")

Availability = Callable[[PackSpec], "str | None"]  # None when the weights are here, else why not


@dataclass(frozen=True)
class FormState:
    """What the form says: the run it describes, or what is wrong with it, field by field."""

    values: dict[str, str]
    config: RunConfig | None = None
    spec: PackSpec | None = None
    errors: dict[str, str] = field(default_factory=dict)  # field -> message (no label)
    warnings: tuple[str, ...] = ()
    missing_weights: str | None = None  # why the pack cannot run here (weights not present)

    @property
    def valid(self) -> bool:
        """Whether Run can start: a config, and the pack's weights are here."""
        return self.config is not None and self.missing_weights is None

    @property
    def error_field(self) -> str | None:
        """The first field in error, in the form's order."""
        return next((f for f in FIELDS if f in self.errors), None)

    @property
    def error(self) -> str | None:
        name = self.error_field
        return None if name is None else self.errors[name]

    def describe_errors(self) -> list[str]:
        """One line per field in error, labelled: ``Scale: 'abc' is not a number``."""
        return [f"{LABELS[f]}: {self.errors[f]}" for f in FIELDS if f in self.errors]


class FieldError(Exception):
    """A value that is wrong, and the form field it belongs to."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


# ----------------------------------------------------------------------------- parsing
def readable(message: str) -> str:
    """A core message with CLI flags named as the form's labels (``--iters`` -> Iterations)."""
    return _FLAG_RE.sub(lambda m: _FLAG_LABELS[m.group(0)], message)


def valid_device(device: str) -> bool:
    """auto, cpu, cuda or cuda:N (whether it exists is the loader's business)."""
    if device in DEVICES:
        return True
    head, _, index = device.partition(":")
    return head == "cuda" and index.isdigit()


def device_choices(current: str) -> tuple[str, ...]:
    return DEVICES if current in DEVICES or not valid_device(current) else (*DEVICES, current)


def parse_whole(values: Mapping[str, str], name: str) -> int | None:
    raw = values.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise FieldError(name, f"{printable(raw, 24)!r} is not a whole number") from None


def parse_number(values: Mapping[str, str], name: str) -> float | None:
    raw = values.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise FieldError(name, f"{printable(raw, 24)!r} is not a number") from None


def distractor_lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def compare_methods(values: Mapping[str, str]) -> list[str]:
    raw = [m.strip() for m in values.get("compare", "").replace(",", " ").split()]
    if not raw:
        raise FieldError("compare", "name the methods to compare, e.g. uncond, spherical, contrastive")
    for m in raw:
        if m not in METHODS:
            raise FieldError("compare", f"unknown method {printable(m, 24)!r}: choose from "
                             f"{', '.join(METHODS)}")
    return list(dict.fromkeys(raw))


def parse_strength(values: Mapping[str, str], spec: PackSpec) -> float | None:
    """The Strength field: a fraction of the chain (0..1), or ``t=T`` to start at timestep T
    (the CLI's --start-at, turned into a strength the same way)."""
    raw = values.get("strength", "").strip()
    if not raw.lower().startswith(START_AT):
        return parse_number(values, "strength")
    at = parse_whole({"strength": raw[len(START_AT):]}, "strength")
    if at is None or not 0 <= at <= spec.train_steps:
        raise FieldError("strength", readable(f"--start-at must be a timestep in 0..{spec.train_steps}"))
    return at / spec.train_steps


def check_image_field(values: Mapping[str, str], name: str) -> str | None:
    """An image path field: None when blank, else the path once the core can read the image."""
    raw = values.get(name, "").strip()
    if not raw:
        return None
    from clipterm.images import check_image

    try:
        check_image(raw, LABELS[name].lower())
    except UserError as exc:
        raise FieldError(name, printable(str(exc))) from None
    return raw


def config_from_values(values: Mapping[str, str], spec: PackSpec) -> RunConfig:
    """The core's config for the form's values (the one call into the core's config); raises
    :class:`FieldError` at the field in error (the core's :class:`ConfigError` names it)."""
    method = values.get("method", "contrastive")
    if method not in METHODS:
        raise FieldError("method", f"unknown method {printable(method, 24)!r}")
    uses = {name: method in methods for name, methods in METHOD_FIELDS.items()}
    sampler = values.get("sampler", PACK_DEFAULT)
    given: dict[str, Any] = dict(
        n=parse_whole(values, "n"),
        batch=parse_whole(values, "batch"),
        steps=parse_whole(values, "steps"),
        seed=parse_whole(values, "seed"),
        sampler=None if sampler == PACK_DEFAULT or not uses["sampler"] else sampler,
        scale=parse_number(values, "scale") if uses["scale"] else None,
        clip_input=values.get("clip_input", "x0") if uses["clip_input"] else None,
        guide_from=parse_whole(values, "guide_from") if uses["guide_from"] else None,
        guide_every=parse_whole(values, "guide_every") if uses["guide_every"] else None,
        image_prompt=check_image_field(values, "image_prompt") if uses["image_prompt"] else None,
        image_weight=parse_number(values, "image_weight") if uses["image_weight"] else None,
        opt_iters=parse_whole(values, "opt_iters") if uses["opt_iters"] else None,
        lr=parse_number(values, "lr") if uses["lr"] else None,
        init_image=check_image_field(values, "init_image"),
        strength=parse_strength(values, spec) if uses["strength"] else None,
    )
    try:
        return make_config(spec, method=method, prompt=values.get("prompt", ""),
                           distractors=distractor_lines(values.get("distractors", "")) or None,
                           **given)
    except ConfigError as exc:
        name = exc.field or "method"
        raise FieldError(_FIELD_OF_CONFIG.get(name, name if name in LABELS else "method"),
                         readable(str(exc))) from None


def pack_distractors(spec: PackSpec, prompt: str) -> list[str]:
    """The pack's captions that are not among the prompt's targets (``a:1|b:-0.5`` has two)."""
    try:
        targets = [t for t, _ in parse_prompts(prompt)[0]]
    except ConfigError:
        targets = [prompt]
    keys = {t.strip().casefold() for t in targets}
    return [c for c in spec.distractors_for(targets[0] if targets else "")
            if c.casefold() not in keys]


def placeholders(spec: PackSpec, method: str) -> dict[str, str]:
    """What a blank numeric field means for this pack and method (shown in grey)."""
    out = {}
    for name in ("steps", "scale", "opt_iters", "lr"):
        value = pack_default(spec, method, name)
        if value is not None:
            out[name] = f"{value} (pack)"
    out["guide_every"] = "1 (every step)"
    out["image_weight"] = "1"
    out["strength"] = f"{DEFAULT_STRENGTH} (or t=300: start at t=300)"
    out["batch"] = f"up to {pack_default(spec, method, 'batch') or 100} (pack)"
    return out


def default_availability(spec: PackSpec) -> str | None:
    """None when the pack's weights are on this machine, else a one-line reason."""
    if spec.embedded:
        return None
    from clipterm.packs.availability import pack_availability

    if pack_availability(spec)["available"]:
        return None
    return (f"the weights of {printable(spec.name)} are not on this machine: "
            f"download them (palette: Download weights, or clipterm models --download "
            f"{printable(spec.name)})")


def hub_offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------- the model
class FormModel:
    """Reads form values into a :class:`FormState`, caching what touches the disk."""

    def __init__(self, availability: Availability | None = None) -> None:
        self._availability = availability or default_availability
        self._specs: dict[str, PackSpec | UserError] = {}
        self._missing: dict[str, str | None] = {}
        self._out_dirs: dict[str, str | None] = {}
        self._formats: dict[str, str | None] = {}

    @staticmethod
    def pack_names() -> list[str]:
        return builtin_pack_names()

    def spec_for(self, model: str) -> PackSpec:
        cached = self._specs.get(model)
        if cached is None:
            try:
                cached = get_pack_spec(model)
            except UserError as exc:
                cached = exc
            self._specs[model] = cached
        if isinstance(cached, UserError):
            raise FieldError("model", printable(str(cached)))
        return cached

    def try_spec(self, model: str) -> PackSpec | None:
        try:
            return self.spec_for(model.strip())
        except FieldError:
            return None

    def missing_weights(self, spec: PackSpec) -> str | None:
        if spec.source not in self._missing:
            self._missing[spec.source] = self._availability(spec)
        return self._missing[spec.source]

    def forget_availability(self) -> None:
        """Check the weights again next time (after a download)."""
        self._missing.clear()

    def check_out_dir(self, raw: str) -> str | None:
        """None when run folders can be written under ``raw``, else why not."""
        path = raw.strip() or "out"
        if path not in self._out_dirs:
            from clipterm.output import check_out_dir

            try:
                check_out_dir(path)
                self._out_dirs[path] = None
            except UserError as exc:
                self._out_dirs[path] = readable(str(exc)).removeprefix("Save to ")
        return self._out_dirs[path]

    def check_animation(self, fmt: str) -> str | None:
        """None when f4 can write this animation format here (MP4 needs its extra)."""
        if fmt not in self._formats:
            from clipterm.animation import check_format

            try:
                check_format(fmt)
                self._formats[fmt] = None
            except UserError as exc:
                self._formats[fmt] = printable(str(exc)).replace("--animate ", "")
        return self._formats[fmt]

    def forget_out_dir(self, raw: str) -> None:
        self._out_dirs.pop(raw.strip() or "out", None)

    def read(self, values: Mapping[str, str]) -> FormState:
        values = dict(values)
        errors: dict[str, str] = {}
        spec: PackSpec | None = None
        config: RunConfig | None = None
        missing: str | None = None
        try:
            if not valid_device(values.get("device", "auto")):
                raise FieldError("device", f"unknown device {printable(values['device'], 24)!r}")
            spec = self.spec_for(values.get("model", "").strip())
            config = config_from_values(values, spec)
        except FieldError as exc:
            errors[exc.field] = exc.message
        if spec is not None:
            missing = self.missing_weights(spec)
            if missing is not None and "model" not in errors:
                errors["model"] = missing
        try:
            compare_methods(values)
        except FieldError as exc:
            errors.setdefault("compare", exc.message)
        if spec is not None and config is not None and "compare" not in errors:
            try:
                self.compare_configs(values, spec)
            except FieldError as exc:
                errors["compare"] = exc.message
        out_error = self.check_out_dir(values.get("out_dir", ""))
        if out_error:
            errors["out_dir"] = out_error
        animate_error = self.check_animation(values.get("animate", "gif"))
        if animate_error:
            errors["animate"] = animate_error
        warnings = tuple(readable(w) for w in config.warnings) if config is not None else ()
        return FormState(values=values, config=config, spec=spec, errors=errors,
                         warnings=warnings, missing_weights=missing)

    def compare_configs(self, values: Mapping[str, str], spec: PackSpec) -> list[RunConfig]:
        """One config per compared method, all from the same seed.

        The form's scale (and optimize settings) belong to the form's method; the other methods
        use the pack's defaults for them, since scales are not comparable across objectives.
        """
        configs = []
        for m in compare_methods(values):
            vals = dict(values, method=m)
            if m != values.get("method"):
                vals.update(scale="")
            try:
                configs.append(config_from_values(vals, spec))
            except FieldError as exc:
                raise FieldError("compare", f"{m}: {LABELS[exc.field]}: {exc.message}") from None
        return configs


def captions_after_switch(old: PackSpec, new: PackSpec, values: Mapping[str, str]
                          ) -> dict[str, str] | None:
    """The prompt and distractors to offer when the model changes from ``old`` to ``new``.

    Only when they are the old pack's own captions (the user kept the pack's vocabulary): then
    the new pack's default prompt (or the same prompt, if the new pack has that caption) and
    its other captions. Captions the user wrote are kept (None).
    """
    if old.source == new.source or tuple(old.captions) == tuple(new.captions):
        return None
    known = {c.casefold() for c in old.captions}
    prompt = values.get("prompt", "").strip()
    distractors = distractor_lines(values.get("distractors", ""))
    if (prompt and prompt.casefold() not in known) or any(d.casefold() not in known
                                                          for d in distractors):
        return None
    new_known = {c.casefold(): c for c in new.captions}
    new_prompt = new_known.get(prompt.casefold(), new.default_prompt)
    return {"prompt": new_prompt, "distractors": "\n".join(new.distractors_for(new_prompt))}


def values_from_recorded(recorded: Recorded) -> tuple[dict[str, str], list[str]]:
    """The form's values for a recorded run (``clipterm.rerun.read_recorded``), and a note for
    each recorded setting the form has no field for (``clipterm generate --from`` keeps them)."""
    c = recorded.config

    def text(value: Any) -> str:
        return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    values = {
        "model": recorded.pack, "prompt": c.prompt_text,
        "distractors": "\n".join(printable(d) for d in c.distractors),
        "method": c.method, "n": text(c.n), "batch": text(c.batch), "steps": text(c.steps),
        "seed": text(c.seed), "sampler": c.sampler if c.method != "optimize" else PACK_DEFAULT,
        "scale": text(c.scale), "clip_input": c.clip_input or "x0",
        "guide_from": "" if c.guide_from in (None, c.train_steps) else text(c.guide_from),
        "guide_every": "" if c.guide_every in (None, 1) else text(c.guide_every),
        "image_prompt": text(c.image_prompt), "image_weight": text(c.image_weight),
        "opt_iters": text(c.opt_iters), "lr": text(c.lr), "init_image": text(c.init_image),
        "strength": text(c.strength),
    }
    unshown = []
    if c.eta:
        unshown.append(f"eta {c.eta:g}")
    if c.grad_norm not in (None, "rms"):
        unshown.append(f"grad norm {c.grad_norm}")
    if c.seed_preprocess or not c.clip_x0:
        unshown.append("the poster preset's quirks")
    try:  # CLIP's views: the form runs the pack's (cutouts and the like have no field)
        spec: PackSpec | None = get_pack_spec(recorded.pack)
    except UserError:
        spec = None
    for name in VIEW_OPTIONS:
        value = getattr(c, name, None)
        default = pack_default(spec, c.method, name) if spec is not None else None
        if value is not None and value != (VIEWS_OFF[name] if default is None else default):
            unshown.append(f"{OPTION_NAMES[name].removeprefix('--')} {value}")
    notes = [f"the form has no field for {', '.join(unshown)}: a run from the form leaves "
             "them out (clipterm generate --from keeps them)"] if unshown else []
    # text from a file reaches the widgets escaped (control characters shown, not run)
    return {k: v if k == "distractors" else printable(v) for k, v in values.items()}, notes


def initial_values(prefill: Mapping[str, Any], remembered: Mapping[str, str],
                   default_model: str = "digits") -> dict[str, str]:
    """Form values at start: built-in defaults < remembered values < command-line options."""
    values = dict(DEFAULT_VALUES, model=default_model)
    model = prefill.get("model")
    same_model = model is None or model == remembered.get("model", values["model"])
    for key, value in remembered.items():
        if key in values and isinstance(value, str) and (
                same_model or key not in ("prompt", "distractors")):
            values[key] = value
    for key, value in prefill.items():
        if value is None or key == "distractors" or key not in values:
            continue
        values[key] = str(value)
    try:
        spec: PackSpec | None = get_pack_spec(values["model"])
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
