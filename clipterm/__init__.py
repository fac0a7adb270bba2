"""clipterm: text-guided image generation with diffusion models and CLIP, from the terminal.

The Python API (imported lazily, so ``import clipterm`` stays cheap)::

    import clipterm
    pack = clipterm.load_pack("digits", device="auto")
    cfg = clipterm.resolve(pack.spec, prompt="seven", method="contrastive", n=16)
    result = clipterm.sample(pack, cfg, on_event=lambda ev: print(ev.step, ev.total))
    clipterm.write_run(result, "out", pack.name)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "RunConfig": "clipterm.config",
    "resolve": "clipterm.config",
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
    "ConfigError", "LoadedPack", "RunConfig", "RunResult", "StepEvent", "UserError",
    "generate", "load_pack", "make_config", "resolve", "sample", "write_run",
]

if TYPE_CHECKING:  # pragma: no cover
    from clipterm.api import generate, make_config
    from clipterm.config import RunConfig, resolve
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
