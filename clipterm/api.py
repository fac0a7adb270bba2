"""The edge between what a user typed and a valid SamplingConfig, plus a one-call ``generate``.

Both the CLI and the TUI build their configs here, so the rules (default distractors, presets,
warnings) live in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from clipterm.config import SamplingConfig, apply_preset
from clipterm.packs import PackSpec


def make_config(
    spec: PackSpec,
    *,
    prompt: str | None = None,
    distractors: Sequence[str] | None = None,
    method: str = "contrastive",
    preset: str | None = None,
    **fields: Any,
) -> SamplingConfig:
    """A resolved, validated config for ``spec`` (raises ConfigError with a one-line reason).

    Without explicit distractors, the pack's other captions are used: contrastive guidance
    contrasts against them, and every method reports per-caption probabilities over them.
    """
    prompt = spec.default_prompt if prompt is None else prompt
    explicit = bool(distractors)
    chosen = tuple(distractors) if explicit else spec.distractors_for(prompt)
    fields = {k: v for k, v in fields.items() if v is not None}
    cfg = SamplingConfig(method=method, prompt=prompt, distractors=chosen, **fields)
    if preset:
        cfg = apply_preset(preset, cfg, spec.captions)
    cfg = cfg.resolve(spec.defaults).validate(spec.train_steps)
    if explicit and method != "contrastive":
        cfg = replace(cfg, warnings=(
            *cfg.warnings,
            f"{method} does not use distractors for guidance; they only score the samples",
        ))
    return cfg


def generate(
    prompt: str | None = None,
    *,
    model: str = "digits",
    method: str = "contrastive",
    out: str | Path | None = None,
    device: str = "auto",
    **fields: Any,
):
    """Load a pack, sample, and (if ``out`` is given) write a run folder. Returns the RunResult."""
    from clipterm.models import load_pack
    from clipterm.output import write_run
    from clipterm.packs import get_pack_spec
    from clipterm.sampling import sample

    spec = get_pack_spec(model)
    cfg = make_config(spec, prompt=prompt, method=method, **fields)
    pack = load_pack(model, device=device)
    result = sample(pack, cfg)
    if out is not None:
        result.extra["run_dir"] = str(write_run(result, out, pack.name))
    return result
