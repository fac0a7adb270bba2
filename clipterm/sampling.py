"""``sample()``: a run's batches, and the reverse loop that makes each of them.

The guided reverse step (DDPM, the poster's equation)::

    x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps + gamma beta_t grad) / sqrt(alpha_t) + sigma_t z

is the model's own step followed by the guidance shift ``gamma beta_t / sqrt(alpha_t) grad``
(:meth:`Schedule.guidance_shift`; for DDIM the shift of the guided noise prediction
``eps - sqrt(1 - abar_t) gamma grad``). The shift is added *after* the step, so the model's
clipping of the predicted x0 never cuts it; with gamma = 0 the sampler is exactly the unguided
one. ``grad`` is the gradient of the guidance objective (the contrastive log-probability of the
prompt among the distractors, or minus the spherical distance to the prompt) with respect to
x_t, through the predicted x0 by default: see :class:`clipterm.guide.Guide`.

Seeds: sample i's x_T and step noise depend only on (seed, i) (:mod:`clipterm.seeds`), so a sample
is the same whatever batch it falls in; a CUDA out-of-memory error splits the batch and goes on.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from clipterm.config import RunConfig
from clipterm.errors import RunFailed
from clipterm.events import RunResult, StepEvent
from clipterm.guide import CaptionScorer, Guide
from clipterm.images import load_image01
from clipterm.optimize import ddim_invert, optimize_xT
from clipterm.reporting import Position, Reporter, to_uint8
from clipterm.runtime import Runtime, is_out_of_memory, set_gradient_checkpointing, unet_eps
from clipterm.schedule import Schedule, make_schedule
from clipterm.seeds import StepNoise, initial_noise

BatchCallback = Callable[[list[int], np.ndarray, np.ndarray], None]


def reverse_chain(x: torch.Tensor, schedule: Schedule, eps_of: Callable[..., torch.Tensor],
                  guide: Guide | None, scale: float, noise: StepNoise,
                  report: Callable[..., None], cancelled: Callable[[], bool],
                  start: int = 0) -> torch.Tensor | None:
    """From x_t of step ``start`` (x_T by default) down to x_0 (in [-1, 1]), guided when
    ``guide`` is given; None if cancelled."""
    for k, t in enumerate(schedule.timesteps[start:], start):
        if cancelled():
            return None
        guided = guide is not None and guide.active_at(k, t)
        eps, grad, probs = guide(x, t, schedule.abar[k]) if guided else (eps_of(x, t), None, None)
        x, x0 = schedule.step(k, x, eps, noise() if schedule.stochastic else None)
        if grad is not None:  # after the model's x0 clip, as guided-diffusion's condition_mean
            x = x + schedule.guidance_shift(k, grad, scale)
        report(k + 1 - start, t, x0, probs)
    return x


def batches(indices: Sequence[int], batch: int) -> list[list[int]]:
    """The run's partition into batches: consecutive runs of ``batch`` indices."""
    idx = list(indices)
    return [idx[i : i + batch] for i in range(0, len(idx), batch)]


def sample(pack: Any, cfg: RunConfig, on_event: Callable[[StepEvent], None] | None = None,
           cancel: threading.Event | None = None, indices: Sequence[int] | None = None,
           on_batch: BatchCallback | None = None, runtime: Runtime | None = None,
           reporter: Reporter | None = None) -> RunResult:
    """Run ``cfg`` (made by :func:`clipterm.config.resolve`) on a loaded pack; blocking.

    ``on_event`` gets StepEvents at a bounded rate (or pass a configured ``reporter``);
    ``cancel`` stops the run between steps, and the result then holds the batches that
    finished. ``indices`` selects which samples to make (default 0..n-1, e.g. one rank's
    batches). ``on_batch(indices, images, probs)`` is called as each batch finishes, to write it
    at once. ``runtime`` says how to execute (default :meth:`Runtime.for_device`).
    """
    if not isinstance(cfg, RunConfig):
        raise TypeError("sample() takes a RunConfig made by clipterm.config.resolve()")
    runtime = runtime or Runtime.for_device(pack.device, cfg.method)
    runtime.prepare(pack.unet, pack.device)
    set_gradient_checkpointing(pack.unet, bool(cfg.guided and cfg.grad_checkpointing))
    reporter = reporter or Reporter(on_event)
    pending = batches(range(cfg.n) if indices is None else indices, cfg.batch)
    n_total = sum(map(len, pending))
    reporter.begin(cfg.method, cfg.captions, n_total, len(pending),
                   async_copies=runtime.async_events and pack.device.type == "cuda")
    scorer = CaptionScorer(pack, cfg.captions, runtime)
    guide = Guide(pack, cfg, scorer, runtime) if cfg.guided else None
    schedule = make_schedule(pack.scheduler, cfg.sampler, cfg.steps, pack.device, cfg.eta,
                             cfg.clip_x0)
    init = _init_image(pack, cfg, schedule, runtime)
    cancelled = (lambda: cancel.is_set()) if cancel is not None else (lambda: False)
    started, t0 = _now(), time.perf_counter()
    images, probs, done, bad, losses = [], [], [], [], []
    oom_splits, b, offset, completed = 0, 0, 0, True
    while pending:
        chunk = pending.pop(0)
        where = Position(b, offset, tuple(chunk))
        reporter.start_chain(where)
        try:
            with torch.no_grad():
                x0 = _make_batch(pack, cfg, chunk, where, scorer, guide, schedule, runtime,
                                 reporter, cancelled, init, losses if b == 0 else None)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            reporter.discard_pending()
            if pack.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(chunk) == 1:
                raise RunFailed(f"out of memory on {pack.device} with a single sample") from None
            half = len(chunk) // 2
            pending[:0] = [chunk[:half], chunk[half:]]
            reporter.n_batches += 1
            oom_splits += 1
            continue
        reporter.flush(block=True)
        if x0 is None:
            completed = False
            break
        finite = torch.isfinite(x0).flatten(1).all(dim=1)
        if not bool(finite.all()):  # e.g. a guidance scale so large that the chain overflowed
            bad.extend(i for i, ok in zip(chunk, finite.tolist(), strict=True) if not ok)
            x0 = torch.where(finite.view(-1, 1, 1, 1), x0, torch.full_like(x0, -1.0))
        images.append(to_uint8(x0))
        probs.append(scorer.probs_of(x0).float().cpu().numpy())
        done.extend(chunk)
        if on_batch is not None:
            on_batch(list(chunk), images[-1], probs[-1])
        b += 1
        offset += len(chunk)
    size, c = pack.image_size, len(cfg.captions)
    return RunResult(
        config=cfg,
        images=np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8),
        probs=np.concatenate(probs) if probs else np.zeros((0, c), np.float32),
        indices=np.asarray(done, dtype=np.int64), completed=completed,
        seconds=time.perf_counter() - t0, device=str(pack.device), started=started,
        finished=_now(), nonfinite_skipped=int(guide.nonfinite) if guide is not None else 0,
        nonfinite_samples=bad, losses=losses, prob_trace=reporter.prob_trace,
        oom_splits=oom_splits, runtime=runtime.describe(),
        partial_preview=None if completed else reporter.last_preview,
    )


def _make_batch(pack: Any, cfg: RunConfig, chunk: list[int], where: Position,
                scorer: CaptionScorer, guide: Guide | None, schedule: Schedule, runtime: Runtime,
                reporter: Reporter, cancelled: Callable[[], bool], init: torch.Tensor | None,
                losses: list[float] | None) -> torch.Tensor | None:
    shape = (pack.channels, pack.image_size, pack.image_size)
    x_T = initial_noise(cfg.seed, chunk, shape, pack.device)
    if cfg.method == "optimize":
        if init is not None:  # from a DDIM-inverted image: every sample starts there
            x_T = init.expand(len(chunk), -1, -1, -1).contiguous()
        return optimize_xT(pack, cfg, scorer, x_T, schedule, reporter, where, cancelled, losses)
    start = 0
    if init is not None:  # SDEdit: the image noised to the start step with each sample's noise
        start = start_step(schedule, cfg.strength, cfg.train_steps)
        image = init.expand(len(chunk), -1, -1, -1)
        if start == len(schedule):  # strength 0: nothing to re-run
            reporter.report(phase="sample", step=1, total=1, timestep=0, where=where, x0=image,
                            probs=scorer.probs_of(image))
            return image.contiguous()
        if start > 0:
            abar = schedule.abar[start]
            x_T = abar.sqrt() * image + (1 - abar).sqrt() * x_T
    total = len(schedule) - start
    nonfinite = guide.nonfinite if guide is not None else 0

    def report(step: int, t: int, x0: torch.Tensor, probs: torch.Tensor | None) -> None:
        if not reporter.due(step, total):
            reporter.flush(block=False)
            return
        reporter.report(phase="sample", step=step, total=total, timestep=t, where=where, x0=x0,
                        probs=scorer.probs_of(x0) if probs is None else probs,
                        nonfinite=nonfinite)

    def eps_of(x: torch.Tensor, t: int) -> torch.Tensor:
        return unet_eps(pack.unet, x, t, runtime)

    noise = StepNoise(cfg.seed, chunk, shape, pack.device)
    guide = guide.bind(chunk) if guide is not None else None  # cutouts depend on (seed, i, t)
    return reverse_chain(x_T, schedule, eps_of, guide, cfg.scale or 0.0, noise, report, cancelled,
                         start)


def start_step(schedule: Schedule, strength: float, train_steps: int) -> int:
    """The first step an init image is re-run from: the first whose timestep lies below
    strength * train_steps (strength 1: step 0, from pure noise; 0: none is re-run)."""
    if strength >= 1.0:
        return 0
    t_start = strength * train_steps
    return next((k for k, t in enumerate(schedule.timesteps) if t < t_start), len(schedule))


def _init_image(pack: Any, cfg: RunConfig, schedule: Schedule, runtime: Runtime
                ) -> torch.Tensor | None:
    """The init image in [-1, 1] [1, C, H, W]; for optimize, its DDIM inversion (once per run)."""
    if cfg.init_image is None:
        return None
    img = load_image01(cfg.init_image, pack.image_size, pack.channels, "init image")
    x = torch.from_numpy(img * 2.0 - 1.0).unsqueeze(0).to(pack.device)
    return ddim_invert(pack, x, schedule, runtime) if cfg.method == "optimize" else x


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")
