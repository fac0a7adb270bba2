"""SamplingConfig: one validated description of a run.

The CLI and the TUI build a config from what the user typed, call :meth:`SamplingConfig.resolve`
with the pack's defaults and :meth:`SamplingConfig.validate` once, at the edge. The core then
assumes a valid config.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from clipterm.errors import ConfigError

METHODS = ("uncond", "spherical", "contrastive", "optimize")
GUIDED_METHODS = ("spherical", "contrastive")
SAMPLERS = ("ddpm", "ddim")
CLIP_INPUTS = ("x0", "xt")
GRAD_NORMS = ("rms", "none")

# Settings a preset fixes. "poster" is the seed code's setting (../shared/seed/reference-facts.md):
# 1000 DDPM steps, batch 100, seed 236, CLIP fed the noisy sample without mapping [-1, 1] to
# [0, 1], raw (unnormalised) gradients with scale 100 (contrastive) or 1000 (spherical), and
# its eps-form update, which never clips the predicted x0.
PRESETS: dict[str, dict[str, Any]] = {
    "poster": {
        "n": 100,
        "batch": 100,
        "steps": 1000,
        "sampler": "ddpm",
        "seed": 236,
        "clip_input": "xt",
        "seed_preprocess": True,
        "clip_x0": False,
        "grad_norm": "none",
        "scale_by_method": {"contrastive": 100.0, "spherical": 1000.0},
        "distractors": "others",
    }
}


@dataclass(frozen=True)
class SamplingConfig:
    """Everything that defines a run. ``None`` fields are filled from the pack by ``resolve``."""

    method: str = "contrastive"
    prompt: str = ""
    distractors: tuple[str, ...] = ()
    n: int = 16
    batch: int | None = None
    steps: int | None = None
    sampler: str | None = None
    eta: float = 0.0
    scale: float | None = None
    seed: int = 0
    clip_input: str = "x0"
    seed_preprocess: bool = False
    # Clip the predicted x0 inside each step when the model's scheduler does (diffusers'
    # clip_sample). The seed code's eps-form update never clipped; the poster preset turns it off.
    clip_x0: bool = True
    guide_from: int | None = None
    grad_norm: str | None = None  # "rms" unless the pack's defaults say otherwise
    opt_iters: int | None = None
    lr: float | None = None
    init_image: str | None = None
    event_every: int = 1
    warnings: tuple[str, ...] = field(default=(), compare=False)

    # ----------------------------------------------------------------- derived
    @property
    def captions(self) -> tuple[str, ...]:
        """Target first, then distractors: the order of every probability vector."""
        return (self.prompt.strip(), *self.distractors)

    @property
    def uses_distractors(self) -> bool:
        return self.method == "contrastive"

    @property
    def n_batches(self) -> int:
        b = self.batch or self.n
        return math.ceil(self.n / b)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["distractors"] = list(self.distractors)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if "distractors" in kw:
            kw["distractors"] = tuple(kw["distractors"])
        if "warnings" in kw:
            kw["warnings"] = tuple(kw["warnings"])
        return cls(**kw)

    # ---------------------------------------------------------------- resolve
    def resolve(self, defaults: dict[str, Any]) -> SamplingConfig:
        """Fill unset fields from a pack's defaults (see ``packs/*.json``)."""
        method_defaults = defaults.get("methods", {}).get(self.method, {})

        def pick(name: str, current: Any) -> Any:
            if current is not None:
                return current
            if name in method_defaults:
                return method_defaults[name]
            return defaults.get(name)

        return replace(
            self,
            steps=pick("steps", self.steps),
            sampler=pick("sampler", self.sampler),
            scale=pick("scale", self.scale),
            batch=self.batch if self.batch is not None else min(self.n, defaults.get("batch", 100)),
            opt_iters=pick("opt_iters", self.opt_iters),
            lr=pick("lr", self.lr),
            grad_norm=pick("grad_norm", self.grad_norm),  # None -> "rms" in validate
        )

    # --------------------------------------------------------------- validate
    def validate(self, train_steps: int = 1000) -> SamplingConfig:
        """Check a resolved config; raise ConfigError with a one-line reason.

        Returns the config with ``warnings`` filled (e.g. distractors ignored by a method).
        """
        warnings: list[str] = list(self.warnings)
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}"
            )
        prompt = self.prompt.strip() if isinstance(self.prompt, str) else ""
        if not prompt:
            raise ConfigError("the prompt is empty: give the caption to steer toward, e.g. --prompt seven")
        seen: set[str] = {prompt.casefold()}
        for d in self.distractors:
            text = d.strip()
            if not text:
                raise ConfigError("a distractor is empty: remove it or give it some text")
            if text.casefold() == prompt.casefold():
                raise ConfigError(f"the distractor {text!r} is the same as the prompt")
            if text.casefold() in seen:
                raise ConfigError(f"the distractor {text!r} is given twice")
            seen.add(text.casefold())
        if self.method == "contrastive" and not self.distractors:
            raise ConfigError("contrastive guidance needs at least one distractor caption")
        _positive_int("n", self.n)
        _positive_int("batch", self.batch)
        _positive_int("steps", self.steps)
        _positive_int("event_every", self.event_every)
        if self.steps > train_steps:
            raise ConfigError(
                f"steps must be at most the model's {train_steps} training steps (got {self.steps})"
            )
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}: choose ddpm or ddim")
        # x_T optimisation backpropagates through a deterministic chain: always DDIM, eta 0.
        sampler, eta = ("ddim", 0.0) if self.method == "optimize" else (self.sampler, self.eta)
        if self.clip_input not in CLIP_INPUTS:
            raise ConfigError(f"unknown clip input {self.clip_input!r}: choose x0 or xt")
        grad_norm = "rms" if self.grad_norm is None else self.grad_norm
        if grad_norm not in GRAD_NORMS:
            raise ConfigError(f"unknown gradient normalisation {self.grad_norm!r}: choose rms or none")
        _finite_nonneg("scale", self.scale)
        _finite_nonneg("eta", self.eta)
        if self.eta > 1.0:
            raise ConfigError(f"eta must lie in [0, 1] (got {self.eta})")
        if self.guide_from is not None:
            if isinstance(self.guide_from, bool) or not isinstance(self.guide_from, int):
                raise ConfigError("guide-from must be a whole number of timesteps")
            if not 0 < self.guide_from <= train_steps:
                raise ConfigError(
                    f"guide-from must lie in 1..{train_steps} (got {self.guide_from})"
                )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0 (got {self.seed!r})")
        if self.method == "optimize":
            _positive_int("iterations", self.opt_iters)
            _finite_nonneg("learning rate", self.lr)
            if self.lr == 0:
                raise ConfigError("the learning rate must be > 0")
        if self.init_image is not None:
            if self.method != "optimize":
                raise ConfigError("--init-image is only used by the optimize method")
            _check_image(self.init_image)
        return replace(
            self,
            warnings=tuple(warnings),
            prompt=prompt,
            distractors=tuple(d.strip() for d in self.distractors),
            sampler=sampler,
            eta=eta,
            grad_norm=grad_norm,
        )


def apply_preset(name: str, cfg: SamplingConfig, all_captions: tuple[str, ...]) -> SamplingConfig:
    """Return ``cfg`` with a preset's settings (see PRESETS)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    p = dict(PRESETS[name])
    scale = p.pop("scale_by_method").get(cfg.method)
    distractors = p.pop("distractors")
    changes: dict[str, Any] = dict(p)
    if scale is not None:
        changes["scale"] = scale
    if distractors == "others" and cfg.method == "contrastive" and not cfg.distractors:
        target = cfg.prompt.strip().casefold()
        changes["distractors"] = tuple(c for c in all_captions if c.casefold() != target)
    return replace(cfg, **changes)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number (got {value!r})")
    if value <= 0:
        raise ConfigError(f"{name} must be > 0 (got {value})")


def _finite_nonneg(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number (got {value!r})")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite (got {value})")
    if value < 0:
        raise ConfigError(f"{name} must be >= 0 (got {value})")


def _check_image(path_str: str) -> None:
    from PIL import Image, UnidentifiedImageError

    path = Path(path_str).expanduser()
    if not path.exists():
        raise ConfigError(f"init image not found: {path}")
    if not path.is_file():
        raise ConfigError(f"init image is not a file: {path}")
    try:
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        raise ConfigError(f"init image is not an image PIL can read: {path}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"init image is corrupt: {path} ({exc})") from None
