"""RunConfig: everything that defines a run, complete and valid by construction.

:func:`resolve` is the one way a front end makes a config: it takes what the user gave (``None``
or absent = not given), applies a preset, fills the rest from the pack's defaults, drops (with a
warning) the options the chosen method does not use, and builds a :class:`RunConfig`, whose
constructor checks every field. A bad value raises :class:`~clipterm.errors.ConfigError` naming
the field. The core then assumes a valid config.

Fields a method does not use are ``None`` (``scale`` for ``uncond``, ``lr`` for ``contrastive``),
so run.json records only what a run used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from clipterm.errors import ConfigError
from clipterm.sanitize import is_invisible, printable, quoted

METHODS = ("uncond", "spherical", "contrastive", "optimize")
GUIDED_METHODS = ("spherical", "contrastive")
SAMPLERS = ("ddpm", "ddim")
CLIP_INPUTS = ("x0", "xt")
GRAD_NORMS = ("rms", "none")
MAX_SAMPLES = 1_000_000
MAX_ITERATIONS = 100_000
MAX_SEED = 2**63 - 1
MAX_CUTOUTS = 256
MAX_CUT_POW = 10.0

DEFAULT_STRENGTH = 0.6  # an init image without --strength: re-run the last 60% of the chain

# The options each method reads; the others are dropped by resolve() with a warning.
SAMPLER_OPTIONS = ("sampler", "eta", "init_image", "strength")
GUIDANCE_OPTIONS = ("scale", "grad_norm", "clip_input", "guide_from", "guide_every")
IMAGE_PROMPT_OPTIONS = ("image_prompt", "image_weight")
OPTIMIZE_OPTIONS = ("opt_iters", "lr", "init_image")
# CLIP's views of a guided sample and the memory of its gradient (cutouts.py, guide.py)
VIEW_OPTIONS = ("cutouts", "cut_pow", "augment", "grad_checkpointing")
VIEWS_OFF = {"cutouts": 0, "cut_pow": 1.0, "augment": False, "grad_checkpointing": False}
USED_BY: dict[str, frozenset[str]] = {
    "uncond": frozenset(SAMPLER_OPTIONS),
    "spherical": frozenset(SAMPLER_OPTIONS + GUIDANCE_OPTIONS + IMAGE_PROMPT_OPTIONS
                           + VIEW_OPTIONS),
    "contrastive": frozenset(SAMPLER_OPTIONS + GUIDANCE_OPTIONS + IMAGE_PROMPT_OPTIONS
                             + VIEW_OPTIONS),
    "optimize": frozenset(OPTIMIZE_OPTIONS),  # always a deterministic DDIM chain (eta 0)
}
# How the options are called where a user types them (CLI flags; the app's labels match).
OPTION_NAMES = {
    "sampler": "--sampler", "eta": "--eta", "scale": "--scale", "grad_norm": "--grad-norm",
    "clip_input": "--clip-input", "guide_from": "--guide-from", "guide_every": "--guide-every",
    "opt_iters": "--iters", "lr": "--lr", "init_image": "--init-image", "strength": "--strength",
    "image_prompt": "--image-prompt", "image_weight": "--image-weight",
    "cutouts": "--cutouts", "cut_pow": "--cut-pow", "augment": "--augment",
    "grad_checkpointing": "--grad-checkpointing",
}
# "seven:1|one:-0.5": a trailing ":number" is a weight; a colon followed by anything else is
# part of the caption ("a photo: dusk").
_WEIGHT = re.compile(r"^(?P<text>.*):\s*(?P<weight>[-+]?(?:\d|\.\d|nan|inf)\S*)\s*$",
                     re.IGNORECASE | re.DOTALL)

# Settings a preset fixes. "poster" is the seed code's setting (../shared/seed/reference-facts.md):
# 1000 DDPM steps, batch 100, seed 236, CLIP fed the noisy sample without mapping [-1, 1] to
# [0, 1], raw (unnormalised) gradients with scale 100 (contrastive) or 1000 (spherical), and
# its eps-form update, which never clips the predicted x0.
PRESETS: dict[str, dict[str, Any]] = {
    "poster": {
        "n": 100, "batch": 100, "steps": 1000, "sampler": "ddpm", "seed": 236,
        "clip_input": "xt", "seed_preprocess": True, "clip_x0": False, "grad_norm": "none",
        "scale": {"contrastive": 100.0, "spherical": 1000.0}, "cutouts": 0,
    }
}


@dataclass(frozen=True)
class RunConfig:
    """A complete, valid run. Build it with :func:`resolve`; constructing it checks it."""

    method: str
    prompt: str
    distractors: tuple[str, ...]
    n: int
    batch: int
    steps: int
    seed: int
    sampler: str = "ddpm"
    eta: float = 0.0
    # weighted prompts: more targets after ``prompt``, and the weights of (prompt, *more);
    # () = the single prompt with weight 1
    more_prompts: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    # SDEdit: start from ``init_image`` noised to timestep strength * train_steps (not optimize)
    strength: float | None = None
    # guided methods (spherical, contrastive); None otherwise
    scale: float | None = None
    grad_norm: str | None = None
    clip_input: str | None = None
    guide_from: int | None = None  # guide at timesteps t < guide_from
    guide_every: int | None = None  # guide at every k-th step of the chain
    image_prompt: str | None = None  # an image whose CLIP embedding is one more target
    image_weight: float | None = None
    # x_T optimisation; None otherwise
    opt_iters: int | None = None
    lr: float | None = None
    init_image: str | None = None
    # the seed code's quirks (--preset poster): CLIP fed x_t unmapped; no x0 clip in the step
    seed_preprocess: bool = False
    clip_x0: bool = True
    train_steps: int = 1000  # the model's: bounds steps and guide_from
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # guided methods, None otherwise: what CLIP sees (the whole image, plus `cutouts` random
    # crops of side drawn with exponent `cut_pow`, optionally augmented; 0 = one resize) and
    # whether the UNet recomputes its activations in the backward pass (less memory)
    cutouts: int | None = None
    cut_pow: float | None = None
    augment: bool | None = None
    grad_checkpointing: bool | None = None

    def __post_init__(self) -> None:
        _check(self)

    # ----------------------------------------------------------------- derived
    @property
    def targets(self) -> tuple[str, ...]:
        """The captions guidance steers toward (or, with a negative weight, away from)."""
        return (self.prompt, *self.more_prompts)

    @property
    def target_weights(self) -> tuple[float, ...]:
        return self.weights or (1.0,) * len(self.targets)

    @property
    def weighted(self) -> bool:
        """Several targets, a weight other than 1, or an image prompt."""
        return bool(self.more_prompts or self.weights or self.image_prompt)

    @property
    def prompt_text(self) -> str:
        """The prompt as a user writes it: ``seven`` or ``seven:1|one:-0.5``."""
        if not (self.more_prompts or self.weights):
            return self.prompt
        return "|".join(f"{t}:{w:g}" for t, w in zip(self.targets, self.target_weights,
                                                       strict=True))

    @property
    def captions(self) -> tuple[str, ...]:
        """Targets first (the prompt at 0), then distractors: the order of every probability
        vector."""
        return (*self.targets, *self.distractors)

    @property
    def guided(self) -> bool:
        """Whether a guidance gradient enters the reverse steps."""
        return self.method in GUIDED_METHODS and bool(self.scale)

    @property
    def n_batches(self) -> int:
        return math.ceil(self.n / self.batch)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["distractors"] = list(self.distractors)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """A config from run.json (untrusted): unknown keys are ignored, every value checked."""
        if not isinstance(data, Mapping):
            raise ConfigError("the recorded config is not a JSON object")
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names and k != "warnings"}
        missing = [f.name for f in fields(cls) if f.name not in kw
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ConfigError(f"the recorded config lacks {', '.join(missing)}", field=missing[0])
        if kw.get("method") in GUIDED_METHODS:  # recorded before these options existed
            kw = {**VIEWS_OFF, **kw}
        for name in ("distractors", "more_prompts", "weights"):
            if name in kw:
                if not isinstance(kw[name], (list, tuple)):
                    raise ConfigError(f"the recorded {name} are not a list", field=name)
                kw[name] = tuple(kw[name])
        return cls(**kw)


# ----------------------------------------------------------------------------- resolve
def resolve(spec: Any, *, method: str = "contrastive",
            prompt: str | Sequence[str] | None = None,
            distractors: Sequence[str] | None = None, preset: str | None = None,
            targets: Sequence[tuple[str, float]] | None = None, **given: Any) -> RunConfig:
    """The run a user asked for on ``spec`` (a PackSpec): the one way to make a RunConfig.

    ``prompt`` is a caption, or several weighted ones as users of CLIP-guided tools write them
    (``"a red car:1|a blue car:-0.5"``, or one string each); ``targets`` gives them parsed,
    as (caption, weight) pairs. ``given`` holds the other options the user set (None = not
    set): n, batch, steps, sampler, eta, scale, grad_norm, clip_input, guide_from,
    guide_every, opt_iters, lr, init_image, strength, image_prompt, image_weight, seed.
    Without explicit distractors, the pack's other captions are used: contrastive guidance
    contrasts against them, and every method reports per-caption probabilities over them.
    """
    allowed = {"n", "batch", "steps", "seed", "seed_preprocess", "clip_x0", *OPTION_NAMES}
    unknown = set(given) - allowed
    if unknown:
        raise TypeError(f"resolve() got unknown options: {', '.join(sorted(unknown))}")
    if method not in METHODS:
        raise ConfigError(f"unknown method {quoted(method)}: choose one of "
                          f"{', '.join(METHODS)}", field="method")
    user = {k: v for k, v in given.items() if v is not None}
    values = dict(user)
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {quoted(preset)}: choose one of "
                              f"{', '.join(PRESETS)}", field="preset")
        for key, value in PRESETS[preset].items():
            value = value.get(method) if isinstance(value, dict) else value
            if value is not None and key not in user:
                values[key] = value
    notes: list[str] = []
    ignored = [k for k in OPTION_NAMES if k in user and k not in USED_BY[method]]
    if ignored:
        names = ", ".join(OPTION_NAMES[k] for k in ignored)
        notes.append(f"{method} does not use {names}: ignored (not recorded)")
    for key in OPTION_NAMES:
        if key not in USED_BY[method]:
            values.pop(key, None)

    if targets is None:
        targets, dropped = parse_prompts(spec.default_prompt if prompt is None else prompt)
        if dropped:
            notes.append("a prompt of weight 0 is left out: " + ", ".join(map(quoted, dropped)))
    target_texts = [t for t, _ in targets]
    keys = {t.strip().casefold() for t in target_texts}
    pack_choice = tuple(c for c in spec.distractors_for(target_texts[0] if target_texts else "")
                        if c.casefold() not in keys)
    chosen = tuple(distractors) if distractors else pack_choice
    if distractors and method != "contrastive" and chosen != pack_choice:
        notes.append(f"{method} does not guide with distractors; they only score the samples")
    weights = tuple(float(w) for _, w in targets)

    def pick(name: str) -> Any:
        if name in values:
            return values[name]
        return pack_default(spec, method, name)

    n = values.get("n", 16)
    batch = pick("batch")
    if isinstance(batch, int) and isinstance(n, int) and not isinstance(batch, bool):
        batch = min(batch, n) if n > 0 else batch
    kw: dict[str, Any] = dict(
        method=method, prompt=target_texts[0].strip() if target_texts else "",
        more_prompts=tuple(t.strip() for t in target_texts[1:]),
        weights=() if weights in ((), (1.0,)) else weights,
        distractors=tuple(d.strip() if isinstance(d, str) else d for d in chosen),
        n=n, batch=batch, steps=pick("steps"), seed=values.get("seed", 0),
        seed_preprocess=bool(values.get("seed_preprocess", False)),
        clip_x0=bool(values.get("clip_x0", True)), train_steps=spec.train_steps,
    )
    if method == "optimize":
        kw.update(sampler="ddim", eta=0.0, opt_iters=pick("opt_iters"), lr=pick("lr"),
                  init_image=values.get("init_image"))
    else:
        sampler = pick("sampler")
        eta = values.get("eta", 0.0)
        if sampler == "ddpm" and "eta" in user and user["eta"] != 0:
            notes.append("the ddpm sampler does not use --eta: ignored (not recorded)")
            eta = 0.0
        kw.update(sampler=sampler, eta=eta)
        if "init_image" in values:
            kw.update(init_image=values["init_image"],
                      strength=values.get("strength", DEFAULT_STRENGTH))
        elif "strength" in values:
            notes.append("--strength needs an --init-image: ignored (not recorded)")
    if method in GUIDED_METHODS:
        kw.update(scale=pick("scale"), grad_norm=pick("grad_norm") or "rms",
                  clip_input=values.get("clip_input", "x0"),
                  guide_from=values.get("guide_from", spec.train_steps),
                  guide_every=values.get("guide_every", 1))
        views = {k: VIEWS_OFF[k] if pick(k) is None else pick(k) for k in VIEW_OPTIONS}
        if views["cutouts"] == 0 and any(k in user for k in ("cut_pow", "augment")):
            notes.append("--cut-pow and --augment shape cutouts, and --cutouts is 0: "
                         "they have no effect")
        kw.update(views)
        if "image_prompt" in values and values.get("image_weight", 1.0) == 0:
            notes.append("an image prompt of weight 0 is left out (not recorded)")
        elif "image_prompt" in values:
            kw.update(image_prompt=values["image_prompt"],
                      image_weight=values.get("image_weight", 1.0))
        elif "image_weight" in values:
            notes.append("--image-weight needs an --image-prompt: ignored (not recorded)")
    cfg = RunConfig(**kw, warnings=tuple(notes))
    if hasattr(spec, "check_vocabulary"):  # a closed-vocabulary pack reads only its captions
        for text in cfg.more_prompts:
            spec.check_vocabulary(text)
        spec.check_vocabulary(cfg.prompt, cfg.distractors)
    from clipterm.images import check_image

    if cfg.init_image is not None:
        check_image(cfg.init_image, "init image")
    if cfg.image_prompt is not None:
        check_image(cfg.image_prompt, "image prompt")
    return cfg


def parse_prompts(prompt: str | Sequence[str]) -> tuple[list[tuple[str, float]], list[str]]:
    """Weighted prompts from what a user typed: ``"a:1|b:-0.5"`` or ``["a:1", "b:-0.5"]``.

    Returns ((caption, weight) pairs without the zero-weight ones, the zero-weight captions).
    A caption without a weight has weight 1. Raises ConfigError for a weight that is not a
    finite number, a caption given twice, and weights that are all 0.
    """
    parts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not parts or any(not isinstance(p, str) for p in parts):
        raise ConfigError("the prompt is empty: give the caption to steer toward", field="prompt")
    pairs: list[tuple[str, float]] = []
    for piece in (q for p in parts for q in (p.split("|") if "|" in p else [p])):
        match = _WEIGHT.match(piece)
        text, weight = piece, 1.0
        if match and match["text"].strip():
            raw = match["weight"]
            try:
                weight = float(raw)
            except ValueError:
                raise ConfigError(f"the weight {quoted(raw)} of {quoted(match['text'].strip())} "
                                  "is not a number", field="prompt") from None
            if not math.isfinite(weight):
                raise ConfigError(f"the weight of {quoted(match['text'].strip())} must be a "
                                  f"finite number (got {raw})", field="prompt")
            text = match["text"]
        pairs.append((text.strip(), weight))
    if len(pairs) > 1 or pairs[0][1] != 1.0:
        seen: set[str] = set()
        for text, _ in pairs:
            if not text or is_invisible(text):
                raise ConfigError("one of the weighted prompts is empty", field="prompt")
            if text.casefold() in seen:
                raise ConfigError(f"the prompt {quoted(text)} is given twice", field="prompt")
            seen.add(text.casefold())
        if all(w == 0 for _, w in pairs):
            raise ConfigError("every prompt weight is 0: give at least one a weight that "
                              "counts", field="prompt")
    kept = [(t, w) for t, w in pairs if w != 0]
    return kept, [t for t, w in pairs if w == 0]


def pack_default(spec: Any, method: str, name: str) -> Any:
    """A pack's default for one option: the method's own default, else the pack-wide one."""
    defaults = spec.defaults or {}
    per_method = (defaults.get("methods") or {}).get(method) or {}
    if name in per_method:
        return per_method[name]
    return defaults.get(name)


# ----------------------------------------------------------------------------- checks
def _check(c: RunConfig) -> None:
    if c.method not in METHODS:
        raise ConfigError(f"unknown method {quoted(c.method)}: choose one of "
                          f"{', '.join(METHODS)}", field="method")
    _check_captions(c)
    _whole("n", c.n, "the number of samples", 1, MAX_SAMPLES)
    _whole("batch", c.batch, "the batch size", 1, MAX_SAMPLES)
    _whole("train_steps", c.train_steps, "the model's training steps", 1, 100_000)
    _whole("steps", c.steps, "the number of steps", 1, c.train_steps,
           hint=f"at most the model's {c.train_steps} training steps")
    _whole("seed", c.seed, "the seed", 0, MAX_SEED)
    _choice("sampler", c.sampler, SAMPLERS)
    _number("eta", c.eta, "eta", 0.0, 1.0)
    if c.sampler == "ddpm" and c.eta != 0:
        raise ConfigError("the ddpm sampler has no eta: use --sampler ddim", field="eta")
    guided = c.method in GUIDED_METHODS
    for name in ("scale", "grad_norm", "clip_input", "guide_from", "guide_every"):
        _present_iff(c, name, guided)
    if (c.image_prompt is None) != (c.image_weight is None):
        raise ConfigError("an image prompt needs its weight", field="image_weight")
    if c.image_prompt is not None:
        if not guided:
            raise ConfigError(f"{c.method} does not use --image-prompt", field="image_prompt")
        if not isinstance(c.image_prompt, str) or not c.image_prompt.strip():
            raise ConfigError("the image prompt path is empty", field="image_prompt")
        _number("image_weight", c.image_weight, "the image prompt's weight", -1e6, 1e6)
    for name in ("opt_iters", "lr"):
        _present_iff(c, name, c.method == "optimize")
    if guided:
        _number("scale", c.scale, "the guidance scale", 0.0, None)
        _choice("grad_norm", c.grad_norm, GRAD_NORMS)
        _choice("clip_input", c.clip_input, CLIP_INPUTS)
        _whole("guide_from", c.guide_from, "guide-from", 1, c.train_steps,
               hint=f"a timestep in 1..{c.train_steps}")
        _whole("guide_every", c.guide_every, "guide-every", 1, c.train_steps)
    for name in VIEW_OPTIONS:
        _present_iff(c, name, guided)
    if guided:
        _whole("cutouts", c.cutouts, "the number of cutouts", 0, MAX_CUTOUTS)
        _number("cut_pow", c.cut_pow, "the cutout size exponent (--cut-pow)", 0.0, MAX_CUT_POW)
        if c.cut_pow == 0:
            raise ConfigError("the cutout size exponent (--cut-pow) must be > 0", field="cut_pow")
        for name in ("augment", "grad_checkpointing"):
            if not isinstance(getattr(c, name), bool):
                raise ConfigError(f"{OPTION_NAMES[name]} must be true or false", field=name)
    if c.method == "optimize":
        _whole("opt_iters", c.opt_iters, "the number of iterations", 1, MAX_ITERATIONS)
        _number("lr", c.lr, "the learning rate", 0.0, None)
        if c.lr == 0:
            raise ConfigError("the learning rate must be > 0", field="lr")
        if (c.sampler, c.eta) != ("ddim", 0.0):
            raise ConfigError("optimize runs a deterministic DDIM chain (sampler ddim, eta 0)",
                              field="sampler")
    if c.init_image is not None:
        if not isinstance(c.init_image, str) or not c.init_image.strip():
            raise ConfigError("the init image path is empty", field="init_image")
    if c.method == "optimize" or c.init_image is None:
        if c.strength is not None:
            raise ConfigError("--strength goes with an --init-image (not with optimize, which "
                              "DDIM-inverts it)", field="strength")
    else:
        _number("strength", c.strength, "the strength", 0.0, 1.0)
    for name in ("seed_preprocess", "clip_x0"):
        if not isinstance(getattr(c, name), bool):
            raise ConfigError(f"{name} must be true or false", field=name)


def _check_captions(c: RunConfig) -> None:
    if not isinstance(c.prompt, str) or is_invisible(c.prompt):
        raise ConfigError("the prompt is empty: give the caption to steer toward", field="prompt")
    if c.prompt != c.prompt.strip():
        raise ConfigError("the prompt has leading or trailing spaces", field="prompt")
    for name in ("distractors", "more_prompts", "weights"):
        if not isinstance(getattr(c, name), tuple):
            raise ConfigError(f"the {name.replace('_', ' ')} must be a list", field=name)
    seen = {c.prompt.casefold()}
    for t in c.more_prompts:
        if not isinstance(t, str) or is_invisible(t) or t != t.strip():
            raise ConfigError("one of the weighted prompts is empty", field="prompt")
        if t.casefold() in seen:
            raise ConfigError(f"the prompt {quoted(t)} is given twice", field="prompt")
        seen.add(t.casefold())
    if c.weights:
        if len(c.weights) != len(c.targets):
            raise ConfigError("there must be one weight per prompt", field="weights")
        for w in c.weights:
            _number("weights", w, "a prompt weight", -1e6, 1e6)
            if w == 0:
                raise ConfigError("a prompt weight is 0: leave that prompt out", field="weights")
    for d in c.distractors:
        if not isinstance(d, str) or is_invisible(d):
            raise ConfigError("a distractor is empty: remove it or give it some text",
                              field="distractors")
        if d.casefold() in {t.casefold() for t in c.targets}:
            raise ConfigError(f"the distractor {quoted(d)} is the same as the prompt",
                              field="distractors")
        if d.casefold() in seen:
            raise ConfigError(f"the distractor {quoted(d)} is given twice",
                              field="distractors")
        seen.add(d.casefold())
    if c.method == "contrastive" and not c.distractors:
        raise ConfigError("contrastive guidance needs at least one distractor caption",
                          field="distractors")


def _whole(name: str, value: Any, label: str, low: int, high: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{label} must be a whole number (got {printable(repr(value), 40)})",
                          field=name)
    if value < low:
        raise ConfigError(f"{label} must be >= {low} (got {value})", field=name)
    if value > high:
        raise ConfigError(f"{label} must be {hint or f'<= {high}'} (got {value})", field=name)


def _number(name: str, value: Any, label: str, low: float, high: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{label} must be a number (got {printable(repr(value), 40)})",
                          field=name)
    if not math.isfinite(value):
        raise ConfigError(f"{label} must be finite (got {value})", field=name)
    if value < low or (high is not None and value > high):
        span = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ConfigError(f"{label} must be {span} (got {value:g})", field=name)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        label = name.replace("_", " ")
        shown = quoted(value, 40) if isinstance(value, str) else printable(repr(value), 40)
        raise ConfigError(f"unknown {label} {shown}: choose "
                          f"{' or '.join(choices)}", field=name)


def _present_iff(c: RunConfig, name: str, used: bool) -> None:
    value = getattr(c, name)
    if used and value is None:
        raise ConfigError(f"{c.method} needs {OPTION_NAMES.get(name, name)}", field=name)
    if not used and value is not None:
        raise ConfigError(f"{c.method} does not use {OPTION_NAMES.get(name, name)}", field=name)

