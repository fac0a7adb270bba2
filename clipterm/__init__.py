"""clipterm: text-guided image generation with diffusion models and CLIP, from the terminal.

The Python API (imported lazily, so ``import clipterm`` stays cheap)::

    import clipterm
    pack = clipterm.load_pack("digits", device="auto")
    cfg = clipterm.SamplingConfig(method="contrastive", prompt="seven",
                                  distractors=pack.spec.distractors_for("seven"), n=16)
    cfg = cfg.resolve(pack.defaults).validate(pack.train_steps)
    result = clipterm.sample(pack, cfg)
    clipterm.write_run(result, "out", pack.name)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "SamplingConfig": "clipterm.config",
    "ConfigError": "clipterm.errors",
    "UserError": "clipterm.errors",
    "StepEvent": "clipterm.events",
    "RunResult": "clipterm.events",
    "load_pack": "clipterm.models",
    "LoadedPack": "clipterm.models",
    "sample": "clipterm.sampling",
    "write_run": "clipterm.output",
    "make_config": "clipterm.api",
    "generate": "clipterm.api",
}

__all__ = [
    "ConfigError", "LoadedPack", "RunResult", "SamplingConfig", "StepEvent", "UserError",
    "generate", "load_pack", "make_config", "sample", "write_run",
]

if TYPE_CHECKING:  # pragma: no cover
    from clipterm.api import generate, make_config
    from clipterm.config import SamplingConfig
    from clipterm.errors import ConfigError, UserError
    from clipterm.events import RunResult, StepEvent
    from clipterm.models import LoadedPack, load_pack
    from clipterm.output import write_run
    from clipterm.sampling import sample


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clipterm' has no attribute {name!r}")
