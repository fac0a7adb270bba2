"""x_T optimisation (the poster's third method): Adam on the starting noise, so that the image a
deterministic DDIM chain makes from it minimises CLIP's cosine distance to the prompt; and DDIM
inversion, to start from an image instead of noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from clipterm import guidance
from clipterm.config import RunConfig
from clipterm.guide import CaptionScorer, encode_images, to_unit_range
from clipterm.reporting import Position, Reporter
from clipterm.runtime import DEFAULT_CPU_RUNTIME, Runtime, unet_eps
from clipterm.schedule import Schedule, ddim_step, split_model_output


def ddim_chain(pack: Any, x_T: torch.Tensor, schedule: Schedule, use_checkpoint: bool = True,
               runtime: Runtime = DEFAULT_CPU_RUNTIME) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from x_T to x0, differentiable; per-step checkpointing keeps
    only each step's input alive, so memory grows with the number of steps by one image each."""

    def one_step(x: torch.Tensor, k: int) -> torch.Tensor:
        eps = unet_eps(pack.unet, x, schedule.timesteps[k], runtime)
        x_prev, _ = ddim_step(x, eps, schedule.abar[k], schedule.abar_prev[k], 0.0, None,
                              schedule.clip_sample)
        return x_prev

    x = x_T
    for k in range(len(schedule)):
        if use_checkpoint and x.requires_grad:
            x = checkpoint(one_step, x, k, use_reentrant=False)
        else:
            x = one_step(x, k)
    return x


@torch.no_grad()
def ddim_invert(pack: Any, image: torch.Tensor, schedule: Schedule,
                runtime: Runtime = DEFAULT_CPU_RUNTIME) -> torch.Tensor:
    """Run the deterministic DDIM chain backwards from a clean image [-1, 1] to x_T."""
    x = image
    abar_cur = torch.ones((), device=x.device)
    for k in reversed(range(len(schedule))):
        abar_next = schedule.abar[k]
        eps, _ = split_model_output(unet_eps(pack.unet, x, schedule.timesteps[k], runtime), x)
        x0 = (x - (1 - abar_cur).sqrt() * eps) / abar_cur.sqrt()
        x = abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * eps
        abar_cur = abar_next
    return x


def optimize_iteration(pack: Any, scorer: CaptionScorer, param: torch.Tensor, schedule: Schedule,
                       use_checkpoint: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and backward pass of x_T optimisation: fills ``param.grad``.

    Returns (x0 of the chain, its CLIP embedding, the per-sample cosine loss), detached.
    """
    with torch.enable_grad():
        x0 = ddim_chain(pack, param, schedule, use_checkpoint, scorer.runtime)
        emb = encode_images(pack, to_unit_range(x0), scorer.runtime)
        loss = guidance.cosine_distance(emb, scorer.text_emb[0])
        loss.sum().backward()  # summed: each sample's gradient is its own
    return x0.detach(), emb.detach(), loss.detach()


def optimize_xT(pack: Any, cfg: RunConfig, scorer: CaptionScorer, x_T: torch.Tensor,
                schedule: Schedule, reporter: Reporter, where: Position,
                cancelled: Callable[[], bool], losses: list[float] | None = None,
                use_checkpoint: bool = True) -> torch.Tensor | None:
    """Adam on x_T; returns the final chain's x0, or None if cancelled. Appends the mean loss of
    every iteration to ``losses``."""
    param = x_T.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=cfg.lr)
    nonfinite = torch.zeros((), dtype=torch.long, device=x_T.device)
    for it in range(cfg.opt_iters):
        if cancelled():
            reporter.flush(block=True)
            return None
        opt.zero_grad(set_to_none=True)
        x0, emb, loss = optimize_iteration(pack, scorer, param, schedule, use_checkpoint)
        param.grad, bad = guidance.drop_nonfinite(param.grad)
        nonfinite += bad
        opt.step()
        mean_loss = float(loss.mean())
        if losses is not None:
            losses.append(mean_loss)
        if reporter.due(it + 1, cfg.opt_iters):
            reporter.report(phase="optimize", step=it + 1, total=cfg.opt_iters, timestep=0,
                            where=where, x0=x0, probs=scorer.probs(emb), nonfinite=nonfinite,
                            loss=mean_loss)
    reporter.flush(block=True)
    with torch.no_grad():
        return ddim_chain(pack, param.detach(), schedule, use_checkpoint=False,
                          runtime=scorer.runtime)
