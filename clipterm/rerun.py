"""Re-running a recorded run: the settings a run folder's run.json or a sample PNG holds.

``clipterm generate --from RUN_DIR|SAMPLE.png`` takes them, lets options typed beside it
override them, and makes the same samples again (a sample PNG: that sample, from its batch, so
the same index and seed give the same image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipterm.config import RunConfig
from clipterm.errors import ConfigError, UserError
from clipterm.sanitize import printable


@dataclass(frozen=True)
class Recorded:
    """What a run recorded: its pack (as it was named), its config, and a sample index when the
    settings came from one sample's PNG."""

    pack: str
    config: RunConfig
    index: int | None = None

    def resolve_args(self) -> dict[str, Any]:
        """The recorded config as ``resolve()`` arguments (what a user would have typed)."""
        c = self.config
        args: dict[str, Any] = dict(
            method=c.method, targets=list(zip(c.targets, c.target_weights, strict=True)),
            distractors=list(c.distractors), n=c.n, batch=c.batch, steps=c.steps, seed=c.seed,
            seed_preprocess=c.seed_preprocess, clip_x0=c.clip_x0,
        )
        optional = dict(sampler=c.sampler if c.method != "optimize" else None,
                        eta=c.eta if c.sampler == "ddim" and c.method != "optimize" else None,
                        scale=c.scale, grad_norm=c.grad_norm, clip_input=c.clip_input,
                        guide_from=c.guide_from, guide_every=c.guide_every,
                        opt_iters=c.opt_iters, lr=c.lr, init_image=c.init_image,
                        strength=c.strength, image_prompt=c.image_prompt,
                        image_weight=c.image_weight)
        args.update({k: v for k, v in optional.items() if v is not None})
        return args


def read_recorded(source: str | Path) -> Recorded:
    """The settings of a run folder (run.json) or a sample PNG clipterm wrote."""
    from clipterm.output import read_png_params, read_run

    path = Path(source).expanduser()
    if path.is_dir():
        info = read_run(path)
        config, pack, index = info.get("config"), info.get("pack_source") or info.get("pack"), None
    elif path.is_file():
        info = read_png_params(path)
        config, pack, index = info, info.get("pack_source") or info.get("pack"), info.get("index")
    else:
        raise UserError(f"--from {printable(path)}: no such run folder or sample PNG")
    if not isinstance(pack, str) or not pack.strip():
        raise UserError(f"--from {printable(path)}: the record does not name its pack; pass --model")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise UserError(f"--from {printable(path)}: the recorded sample index is not valid")
    try:
        cfg = RunConfig.from_dict(config)
    except ConfigError as exc:
        raise UserError(f"--from {printable(path)}: the recorded settings are not valid: "
                        f"{exc}") from None
    return Recorded(pack=pack, config=cfg, index=index)
