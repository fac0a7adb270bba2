"""The ``parameters`` PNG text chunk: a run's settings in the form the popular Stable Diffusion
web UIs and image browsers read and write, so a clipterm sample shows its settings there::

    seven
    Negative prompt: zero, one, two
    Steps: 50, Sampler: DDIM, Guidance scale: 0.1, Method: contrastive, Seed: 0, Sample: 3, Size: 32x32, Model: digits, CLIP: ViT-B-32:openai

Line one is the prompt (``a:1|b:-0.5`` when weighted), then the distractors as the negative
prompt, then ``key: value`` pairs; a value holding a comma, a colon or a quote is written as a
JSON string. :func:`parse_parameters` reads such text back. The exact settings clipterm re-runs
from (``generate --from``) are the JSON ``clipterm`` chunk; this one is for other tools.
"""

from __future__ import annotations

import json
import re
from typing import Any

from clipterm.config import RunConfig

SOFTWARE_KEY = "Software"
PARAMETERS_KEY = "parameters"
_PAIR = re.compile(r'\s*([\w ./()-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _value(v: Any) -> str:
    text = f"{v:g}" if isinstance(v, float) else str(v)
    if any(c in text for c in ',:"\n') or text != text.strip():
        return json.dumps(text)
    return text


def _line(text: str) -> str:
    return " ".join(text.splitlines())


def format_parameters(cfg: RunConfig, *, index: int, size: tuple[int, int], model: str,
                      clip: str = "") -> str:
    """The ``parameters`` text of sample ``index`` of a run."""
    pairs: list[tuple[str, Any]] = [("Steps", cfg.steps), ("Sampler", cfg.sampler.upper())]
    if cfg.sampler == "ddim" and cfg.eta:
        pairs.append(("Eta", cfg.eta))
    if cfg.scale is not None:
        pairs.append(("Guidance scale", cfg.scale))
    pairs += [("Method", cfg.method), ("Seed", cfg.seed), ("Sample", index),
              ("Size", f"{size[0]}x{size[1]}"), ("Model", model)]
    if clip:
        pairs.append(("CLIP", clip))
    optional = [("Clip input", cfg.clip_input), ("Grad norm", cfg.grad_norm),
                ("Guide from", cfg.guide_from if cfg.guide_from != cfg.train_steps else None),
                ("Guide every", cfg.guide_every if cfg.guide_every not in (None, 1) else None),
                ("Iterations", cfg.opt_iters), ("Learning rate", cfg.lr),
                ("Init image", cfg.init_image), ("Strength", cfg.strength),
                ("Image prompt", cfg.image_prompt), ("Image weight", cfg.image_weight)]
    pairs += [(k, v) for k, v in optional if v is not None]
    lines = [_line(cfg.prompt_text)]
    if cfg.distractors:
        lines.append("Negative prompt: " + _line(", ".join(cfg.distractors)))
    lines.append(", ".join(f"{k}: {_value(v)}" for k, v in pairs))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, str]:
    """``parameters`` text back as a dict: ``Prompt``, ``Negative prompt`` and every pair."""
    lines = text.strip().split("\n")
    out: dict[str, str] = {}
    settings = ""
    if lines and len(_PAIR.findall(lines[-1])) >= 3:
        settings = lines.pop()
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    out["Prompt"] = "\n".join(prompt).strip()
    out["Negative prompt"] = "\n".join(negative).strip()
    for key, value in _PAIR.findall(settings):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key.strip()] = value
    return out
