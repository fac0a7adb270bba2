"""The Python API in one call: ``generate`` loads a pack, samples and writes a run folder.

``make_config`` is :func:`clipterm.config.resolve` under the name the API has always used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipterm.config import resolve

make_config = resolve


def generate(prompt: str | None = None, *, model: str = "digits", method: str = "contrastive",
             out: str | Path | None = None, device: str = "auto", **fields: Any):
    """Load a pack, sample, and (if ``out`` is given) write a run folder.

    Returns ``(RunResult, run folder or None)``.
    """
    from clipterm.models import load_pack
    from clipterm.output import write_run
    from clipterm.sampling import sample

    pack = load_pack(model, device=device)
    cfg = resolve(pack.spec, prompt=prompt, method=method, **fields)
    result = sample(pack, cfg)
    run_dir = write_run(result, out, pack.name) if out is not None else None
    return result, run_dir
