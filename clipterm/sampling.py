"""Reverse loops (DDPM, DDIM), the CLIP-guided step, and x_T optimisation.

The guided DDPM step is the poster's equation::

    x_{t-1} = 1/sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - abar_t) * eps + gamma * beta_t * grad) + sigma_t z

with grad = d/dx_t of the guidance objective (contrastive log-probability or minus the spherical
distance). We apply it as the equivalent guided noise prediction

    eps_hat = eps - sqrt(1 - abar_t) * gamma * grad

and then take the scheduler's ordinary step with eps_hat: the two are the same update (expand the
DDPM posterior mean), it carries over unchanged to respaced DDPM and to DDIM (guidance through the
score), and with gamma = 0 it is exactly the unguided sampler. Our step functions follow diffusers'
``DDPMScheduler.step`` / ``DDIMScheduler.step`` formula for formula (tests check it) but keep the
schedule on the device and take per-sample noise.

Seeds: sample i's starting noise x_T and its per-step noise depend only on (seed, i), so a sample
is the same whatever the batch size, the batch it falls in, the method (x_T) or the process that
makes it.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from clipterm import guidance
from clipterm.config import SamplingConfig
from clipterm.errors import UserError
from clipterm.events import RunResult, StepEvent
from clipterm.models import LoadedPack

EventCallback = Callable[[StepEvent], None]
SUPPORTED_VARIANCES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log")

# Streams of the per-sample seed sequence.
_STREAM_XT = 0
_STREAM_STEP_NOISE = 1


# ----------------------------------------------------------------------------- seeds
def sample_seed(seed: int, index: int, stream: int = _STREAM_XT) -> int:
    """A 63-bit seed that depends only on (seed, sample index, stream)."""
    state = np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF)


def initial_noise(
    seed: int, indices: Sequence[int], shape: tuple[int, int, int], device: torch.device
) -> torch.Tensor:
    """x_T for the given sample indices, drawn on the CPU so it is the same on every device."""
    out = torch.empty((len(indices), *shape))
    for row, i in enumerate(indices):
        g = torch.Generator().manual_seed(sample_seed(seed, i, _STREAM_XT))
        out[row] = torch.randn(shape, generator=g)
    return out.to(device)


class StepNoise:
    """Per-sample generators for the noise added at each DDPM/DDIM step."""

    def __init__(self, seed: int, indices: Sequence[int], shape: tuple[int, int, int], device: torch.device):
        self.shape = (1, *shape)
        self.device = device
        self.generators = [
            torch.Generator(device=device).manual_seed(sample_seed(seed, i, _STREAM_STEP_NOISE))
            for i in indices
        ]

    def __call__(self) -> torch.Tensor:
        return torch.cat(
            [torch.randn(self.shape, generator=g, device=self.device) for g in self.generators]
        )


# ----------------------------------------------------------------------------- schedules
@dataclass(frozen=True)
class Schedule:
    """The strided chain over the model's training schedule: step k goes from t[k] to t_prev[k]."""

    kind: str  # "ddpm" | "ddim"
    timesteps: tuple[int, ...]
    prev_timesteps: tuple[int, ...]  # -1 for the last step
    abar: torch.Tensor  # [K] alpha-bar at timesteps (device, float32)
    abar_prev: torch.Tensor  # [K] alpha-bar at prev_timesteps (1.0 for the last step)
    variance_type: str
    clip_sample: float | None  # clip range for the predicted x0, or None

    def __len__(self) -> int:
        return len(self.timesteps)


def make_schedule(scheduler, kind: str, steps: int, device: torch.device) -> Schedule:
    """Timesteps as diffusers spaces them (``set_timesteps``), over the model's own alpha-bars.

    A fresh scheduler object is made from the config so the pack's scheduler is never mutated
    (runs may happen in several threads).
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    cfg = scheduler.config
    if cfg.get("prediction_type", "epsilon") != "epsilon":
        raise UserError(
            f"this diffusion model predicts {cfg.get('prediction_type')!r}; clipterm needs an "
            "epsilon-prediction DDPM"
        )
    variance_type = cfg.get("variance_type", "fixed_small")
    if variance_type not in SUPPORTED_VARIANCES:
        raise UserError(f"unsupported variance type {variance_type!r} in the model's scheduler")
    sched = (DDIMScheduler if kind == "ddim" else DDPMScheduler).from_config(cfg)
    sched.set_timesteps(steps)
    ts = [int(t) for t in sched.timesteps]
    prev = ts[1:] + [-1]
    abar_all = scheduler.alphas_cumprod.to(torch.float64)
    abar = torch.stack([abar_all[t] for t in ts])
    abar_prev = torch.stack([abar_all[p] if p >= 0 else torch.tensor(1.0, dtype=torch.float64) for p in prev])
    clip = float(cfg.get("clip_sample_range", 1.0)) if cfg.get("clip_sample", False) else None
    return Schedule(
        kind=kind,
        timesteps=tuple(ts),
        prev_timesteps=tuple(prev),
        abar=abar.to(device=device, dtype=torch.float32),
        abar_prev=abar_prev.to(device=device, dtype=torch.float32),
        variance_type=variance_type,
        clip_sample=clip,
    )


# ----------------------------------------------------------------------------- runtime
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Runtime:
    """How a run executes on its device: what it computes is the config's.

    ``precision="bf16"`` runs the UNet and CLIP under bf16 autocast, while the CLIP logits, the
    softmax, the guidance objective and gradient math and the sampler update stay in fp32 (the
    networks' outputs are upcast before any of them). ``channels_last`` stores the UNet's weights
    and inputs NHWC. ``compile`` wraps the UNet forward and the guided step's forward (UNet,
    x0, CLIP, objective; autograd compiles its backward) in ``torch.compile`` with
    ``compile_mode``. ``async_events`` copies previews and probabilities to the CPU without
    blocking the device (delivered one event late at most, in order).

    :meth:`for_device` is the default: unchanged fp32 eager on the CPU; bf16 autocast and
    non-blocking events on CUDA. Compile stays opt-in until a GPU measurement shows its warm-up
    paid back (see docs/PERFORMANCE.md).
    """

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "reduce-overhead"
    async_events: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @classmethod
    def for_device(cls, device: torch.device, method: str | None = None) -> Runtime:
        """The default runtime. ``optimize`` stays fp32 even on CUDA: Adam turns bf16 sign flips
        of near-zero x_T gradients into full-size steps, so bf16 and fp32 runs diverge."""
        if device.type == "cuda":
            return cls(precision="fp32" if method == "optimize" else "bf16", async_events=True)
        return cls()

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    @property
    def is_reference(self) -> bool:
        """The plain fp32 eager path (bit-identical to clipterm before the fast path)."""
        return self.precision == "fp32" and not (self.channels_last or self.compile)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def describe(self) -> str:
        parts = [self.precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append(f"compile:{self.compile_mode}")
        return "+".join(parts)


REFERENCE_RUNTIME = Runtime()
# Compiled callables per UNet module (weak: a pack that is dropped frees its compiled graphs).
_COMPILED: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Callable[..., Any]]] = (
    weakref.WeakKeyDictionary()
)


def _compiled(pack: LoadedPack, key: tuple[Any, ...], make: Callable[[], Callable[..., Any]],
              mode: str) -> Callable[..., Any]:
    per_unet = _COMPILED.setdefault(pack.unet, {})
    if key not in per_unet:
        per_unet[key] = torch.compile(make(), mode=mode, dynamic=False)
    return per_unet[key]


def _prepare(pack: LoadedPack, runtime: Runtime) -> None:
    """Put the pack's networks in the runtime's memory format (idempotent)."""
    if runtime.channels_last and pack.device.type == "cuda":
        pack.unet.to(memory_format=torch.channels_last)


def unet_eps(pack: LoadedPack, x: torch.Tensor, t: int, runtime: Runtime = REFERENCE_RUNTIME) -> torch.Tensor:
    """The UNet's noise prediction at integer timestep ``t``, in fp32, under ``runtime``."""
    if runtime.is_reference:
        return _unet(pack, x, t)
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if runtime.compile:
        fn = _compiled(pack, ("unet", runtime), lambda: _unet_forward(pack, runtime), runtime.compile_mode)
        return fn(x, tt)
    return _unet_forward(pack, runtime)(x, tt)


def _unet_forward(pack: LoadedPack, runtime: Runtime) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        with runtime.autocast(x.device):
            eps = pack.unet(x, tt).sample
        return eps.float().contiguous()

    return forward


def encode_for_guidance(pack: LoadedPack, x_clip: torch.Tensor, runtime: Runtime = REFERENCE_RUNTIME) -> torch.Tensor:
    """Unit-norm CLIP embeddings (fp32) of images in CLIP's input range, under ``runtime``."""
    with runtime.autocast(x_clip.device):
        return pack.encode_clip_input(x_clip, already_normalised=False).float()


def _drop_nonfinite_lazy(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the gradient of samples holding a NaN or inf; the count stays on the device, so the
    step does not wait on the host (values are those of ``guidance.drop_nonfinite``)."""
    dims = tuple(range(1, grad.ndim))
    bad = ~torch.isfinite(grad).all(dim=dims)
    grad = torch.where(bad.view(-1, *([1] * (grad.ndim - 1))), torch.zeros_like(grad), grad)
    return grad, bad.sum()


# ----------------------------------------------------------------------------- steps
def predict_x0(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    return (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()


def guided_eps(eps: torch.Tensor, grad: torch.Tensor, abar_t: torch.Tensor, scale: float) -> torch.Tensor:
    """The guided noise prediction eps_hat = eps - sqrt(1 - abar_t) * gamma * grad (a score correction)."""
    return eps - (1 - abar_t).sqrt() * scale * grad


def guidance_shift(kind: str, grad: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
                   scale: float, eta: float = 0.0) -> torch.Tensor:
    """How far guidance moves x_{t-1}: step(eps_hat) - step(eps) for the scheduler's step without
    clipping x0, eps_hat = ``guided_eps(eps, grad, abar_t, scale)``. Linear in ``grad``.

    For DDPM this is gamma * beta_t / sqrt(alpha_t) * grad: exactly the poster's guided mean. It is
    added *after* the model's own (x0-clipping) step. Feeding eps_hat through a clipping step
    instead would be wrong: where x0_hat is saturated (most pixels early in the chain) the clip
    removes the x0 part of the correction and the direction term alone moves x_{t-1} *against*
    the gradient, so guidance lowered the target's probability on clip_sample models.
    """
    d_eps = -(1 - abar_t).sqrt() * scale * grad
    dx0_deps = -(1 - abar_t).sqrt() / abar_t.sqrt()
    if kind == "ddpm":
        return _ddpm_coefs(abar_t, abar_prev)[2] * dx0_deps * d_eps
    _, direction = _ddim_coefs(abar_t, abar_prev, eta)
    return (abar_prev.sqrt() * dx0_deps + direction) * d_eps


def _ddpm_coefs(abar_t: torch.Tensor, abar_prev: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha_t, beta_t, coefficient of x0, coefficient of x_t) of the DDPM posterior mean."""
    alpha_t = abar_t / abar_prev
    beta_t = 1 - alpha_t
    coef_x0 = abar_prev.sqrt() * beta_t / (1 - abar_t)
    coef_xt = alpha_t.sqrt() * (1 - abar_prev) / (1 - abar_t)
    return alpha_t, beta_t, coef_x0, coef_xt


def _ddim_coefs(abar_t: torch.Tensor, abar_prev: torch.Tensor, eta: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_t, coefficient of eps in the direction term) of a DDIM step."""
    var = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
    sigma = eta * var.sqrt()
    return sigma, (1 - abar_prev - sigma**2).clamp(min=0).sqrt()


def ddpm_step(
    x: torch.Tensor,
    eps: torch.Tensor,
    abar_t: torch.Tensor,
    abar_prev: torch.Tensor,
    t: int,
    noise: torch.Tensor | None,
    variance_type: str,
    clip_sample: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step (diffusers' DDPMScheduler.step). Returns (x_prev, x0_hat)."""
    _, beta_t, coef_x0, coef_xt = _ddpm_coefs(abar_t, abar_prev)
    x0 = predict_x0(x, eps, abar_t)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    mean = coef_x0 * x0 + coef_xt * x
    if t > 0 and noise is not None:
        if variance_type.startswith("fixed_large"):
            var = beta_t
        else:
            var = ((1 - abar_prev) / (1 - abar_t) * beta_t).clamp(min=1e-20)
        mean = mean + var.sqrt() * noise
    return mean, x0


def ddim_step(
    x: torch.Tensor,
    eps: torch.Tensor,
    abar_t: torch.Tensor,
    abar_prev: torch.Tensor,
    eta: float,
    noise: torch.Tensor | None,
    clip_sample: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (diffusers' DDIMScheduler.step). Returns (x_prev, x0_hat)."""
    x0 = predict_x0(x, eps, abar_t)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    sigma, direction = _ddim_coefs(abar_t, abar_prev, eta)
    x_prev = abar_prev.sqrt() * x0 + direction * eps
    if eta > 0 and noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def ddim_invert(pack: LoadedPack, image: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """Run the deterministic DDIM chain backwards from a clean image [-1, 1] to x_T."""
    x = image
    abar_cur = torch.ones((), device=x.device)
    for k in reversed(range(len(schedule))):
        t = schedule.timesteps[k]
        abar_next = schedule.abar[k]
        with torch.no_grad():
            eps = _unet(pack, x, t)
        x0 = (x - (1 - abar_cur).sqrt() * eps) / abar_cur.sqrt()
        x = abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * eps
        abar_cur = abar_next
    return x


# ----------------------------------------------------------------------------- CLIP views
def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map [-1, 1] to [0, 1] (CLIP's input range), without clamping.

    No clamp on purpose: a clamp would zero the gradient of every saturated pixel (most of a
    digit's black background early in the chain), so guidance could not draw there. CLIP sees
    the predicted image slightly out of range instead, and the gradient is the true one.
    """
    return (x + 1) / 2


def clip_view(cfg: SamplingConfig, x_t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The image CLIP sees, in CLIP's input range before normalisation ([0, 1] unless seed mode)."""
    if cfg.clip_input == "x0":
        return to_unit_range(x0)
    if cfg.seed_preprocess:
        return x_t  # the seed code fed x_t in [-1, 1] as if it were [0, 1]
    return to_unit_range(x_t)


def objective(cfg: SamplingConfig, emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    if cfg.method == "contrastive":
        return guidance.contrastive_log_prob(emb, text_emb, logit_scale)
    return guidance.spherical_objective(emb, text_emb[0])


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] images [B, C, H, W] -> uint8 [B, H, W, 3] on the CPU."""
    img = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if img.shape[1] == 1:
        img = img.expand(-1, 3, -1, -1)
    return img.permute(0, 2, 3, 1).cpu().numpy()


def _unet(pack: LoadedPack, x: torch.Tensor, t: int) -> torch.Tensor:
    """The reference (fp32 eager) UNet call."""
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    return pack.unet(x, tt).sample


# ----------------------------------------------------------------------------- the run
class _Run:
    """State shared by the batches of one run."""

    def __init__(self, pack: LoadedPack, cfg: SamplingConfig, on_event: EventCallback | None,
                 cancel: threading.Event | None, n_total: int,
                 runtime: Runtime = REFERENCE_RUNTIME):
        self.pack = pack
        self.cfg = cfg
        self.runtime = runtime
        self.on_event = on_event
        self.cancel = cancel
        self.n_total = n_total
        self.start = time.perf_counter()
        self.text_emb = pack.encode_text(cfg.captions)
        self.logit_scale = pack.logit_scale
        self._nonfinite = torch.zeros((), dtype=torch.long, device=pack.device)
        self.losses: list[float] = []
        self.prob_trace: list[tuple[int, int, list[float]]] = []
        self.n_batches = 1
        self.last_preview: np.ndarray | None = None
        self.oom_splits = 0
        self._pending: list[tuple[Any, dict[str, Any]]] = []
        self.use_async = runtime.async_events and pack.device.type == "cuda"

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    @property
    def nonfinite(self) -> int:
        return int(self._nonfinite)

    def count_nonfinite(self, bad: torch.Tensor) -> None:
        self._nonfinite += bad

    def probs(self, emb: torch.Tensor) -> torch.Tensor:
        return guidance.caption_probs(emb, self.text_emb, self.logit_scale)

    def probs_of(self, x0: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.probs(encode_for_guidance(self.pack, to_unit_range(x0), self.runtime)
                              if not self.runtime.is_reference
                              else self.pack.encode_image(to_unit_range(x0)))

    def emit(self, *, phase: str, step: int, total: int, timestep: int, batch_index: int,
             offset: int, x0: torch.Tensor, probs: torch.Tensor | None, loss: float | None = None) -> None:
        meta = dict(phase=phase, step=step, total=total, timestep=timestep,
                    batch_index=batch_index, offset=offset, loss=loss,
                    elapsed=time.perf_counter() - self.start)
        if not self.use_async:
            meta["nonfinite"] = self.nonfinite
            self._deliver(meta, None if probs is None else probs.detach().float().cpu().numpy(),
                          to_uint8(x0) if self.on_event is not None else None)
            return
        # Start the copies now and hand the event over once they have landed: the device
        # never waits for the host here.
        with torch.no_grad():
            host: dict[str, torch.Tensor] = {"nonfinite": self._nonfinite.clone()}
            if probs is not None:
                host["probs"] = probs.detach().float()
            if self.on_event is not None:
                host["preview"] = _to_uint8_device(x0)
            host = {k: v.to("cpu", non_blocking=True) for k, v in host.items()}
        done = torch.cuda.Event()
        done.record()
        self._pending.append((done, {"meta": meta, **host}))
        self.flush(block=False)

    def flush(self, block: bool) -> None:
        """Deliver the events whose copies have landed (all of them if ``block``), in order."""
        while self._pending:
            done, item = self._pending[0]
            if not block and not done.query():
                return
            done.synchronize()
            self._pending.pop(0)
            meta = dict(item["meta"], nonfinite=int(item["nonfinite"]))
            probs = item["probs"].numpy() if "probs" in item else None
            preview = item["preview"].numpy() if "preview" in item else None
            self._deliver(meta, probs, preview)

    def _deliver(self, meta: dict[str, Any], probs_np: np.ndarray | None,
                 preview: np.ndarray | None) -> None:
        if meta["batch_index"] == 0 and probs_np is not None:
            self.prob_trace.append((meta["step"], meta["timestep"], probs_np.mean(axis=0).round(6).tolist()))
        if self.on_event is None:
            return
        self.last_preview = preview
        self.on_event(
            StepEvent(
                method=self.cfg.method, phase=meta["phase"], step=meta["step"], total=meta["total"],
                timestep=meta["timestep"], batch_index=meta["batch_index"], n_batches=self.n_batches,
                sample_offset=meta["offset"], n_samples=self.n_total, elapsed=meta["elapsed"],
                captions=self.cfg.captions, probs=probs_np, preview=preview, loss=meta["loss"],
                nonfinite_skipped=meta["nonfinite"],
            )
        )

    def should_emit(self, step: int, total: int) -> bool:
        return step % self.cfg.event_every == 0 or step == total


def _to_uint8_device(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images [B, C, H, W] -> uint8 [B, H, W, 3] on their device (as ``to_uint8``)."""
    img = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if img.shape[1] == 1:
        img = img.expand(-1, 3, -1, -1)
    return img.permute(0, 2, 3, 1).contiguous()


def _reverse_chain(run: _Run, x: torch.Tensor, noise: StepNoise, schedule: Schedule,
                   batch_index: int, offset: int) -> torch.Tensor | None:
    """Sample from x_T down to x_0 (guided or not). Returns x0 in [-1, 1], or None if cancelled."""
    cfg, pack = run.cfg, run.pack
    guided_method = cfg.method in ("spherical", "contrastive") and cfg.scale > 0
    total = len(schedule)
    clip = schedule.clip_sample if cfg.clip_x0 else None
    x0 = x
    for k, t in enumerate(schedule.timesteps):
        if run.cancelled:
            run.flush(block=True)
            return None
        if run._pending:
            run.flush(block=False)
        abar_t, abar_prev = schedule.abar[k], schedule.abar_prev[k]
        guide_now = guided_method and (cfg.guide_from is None or t < cfg.guide_from)
        probs = shift = None
        if guide_now:
            eps, grad, probs = _guidance(run, x, t, abar_t)
            with torch.no_grad():
                shift = guidance_shift(schedule.kind, grad, abar_t, abar_prev, cfg.scale, cfg.eta)
        else:
            with torch.no_grad():
                eps = unet_eps(pack, x, t, run.runtime)
        with torch.no_grad():
            step_noise = noise() if (schedule.kind == "ddpm" or cfg.eta > 0) else None
            if schedule.kind == "ddpm":
                x, x0 = ddpm_step(x, eps, abar_t, abar_prev, t, step_noise,
                                  schedule.variance_type, clip)
            else:
                x, x0 = ddim_step(x, eps, abar_t, abar_prev, cfg.eta, step_noise, clip)
            if shift is not None:
                x = x + shift
        if run.should_emit(k + 1, total):
            if probs is None:
                probs = run.probs_of(x0)
            run.emit(phase="sample", step=k + 1, total=total, timestep=t,
                     batch_index=batch_index, offset=offset, x0=x0, probs=probs)
    run.flush(block=True)
    return x


def guidance_gradient(
    pack: LoadedPack, cfg: SamplingConfig, x: torch.Tensor, t: int, abar_t: torch.Tensor,
    text_emb: torch.Tensor, logit_scale: torch.Tensor, runtime: Runtime = REFERENCE_RUNTIME,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d/dx_t of the guidance objective (summed over samples, so per-sample gradients).

    Returns (raw gradient, the UNet's eps at x_t, CLIP image embedding at this step), all fp32.
    """
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        if runtime.is_reference:
            obj, eps, emb = _guided_objective(pack, cfg, runtime, x_in, t, abar_t, text_emb, logit_scale)
        else:
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            xin = x_in.contiguous(memory_format=torch.channels_last) if runtime.channels_last else x_in
            fn = _guided_forward(pack, cfg, runtime)
            obj, eps, emb = fn(xin, tt, abar_t, text_emb, logit_scale)
        (grad,) = torch.autograd.grad(obj.sum(), x_in)
    return grad, eps.detach(), emb.detach()


def _guided_objective(pack: LoadedPack, cfg: SamplingConfig, runtime: Runtime, x_in: torch.Tensor,
                      t: int | torch.Tensor, abar_t: torch.Tensor, text_emb: torch.Tensor,
                      logit_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The guided step's forward: UNet, predicted x0, CLIP, objective [B] (differentiable in x_in).

    Under a bf16 runtime only the two networks run in bf16; their outputs are upcast, so x0,
    the logits, the softmax and the objective are fp32.
    """

    def eps_of(x: torch.Tensor) -> torch.Tensor:
        if isinstance(t, int):
            return _unet(pack, x, t)
        with runtime.autocast(x.device):
            out = pack.unet(x, t).sample
        return out.float()

    if cfg.clip_input == "x0":
        eps = eps_of(x_in)
        x0 = predict_x0(x_in, eps, abar_t)
    else:
        with torch.no_grad():
            eps = eps_of(x_in)
        x0 = x_in
    view = clip_view(cfg, x_in, x0)
    if runtime.is_reference:
        emb = pack.encode_clip_input(view, already_normalised=False)
    else:
        emb = encode_for_guidance(pack, view.float().contiguous(), runtime)
    obj = objective(cfg, emb, text_emb, logit_scale)
    return obj, eps, emb


def _guided_forward(pack: LoadedPack, cfg: SamplingConfig, runtime: Runtime) -> Callable[..., Any]:
    def forward(x_in: torch.Tensor, tt: torch.Tensor, abar_t: torch.Tensor, text_emb: torch.Tensor,
                logit_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _guided_objective(pack, cfg, runtime, x_in, tt, abar_t, text_emb, logit_scale)

    if not runtime.compile:
        return forward
    key = ("guided", runtime, cfg.method, cfg.clip_input, cfg.seed_preprocess)
    return _compiled(pack, key, lambda: forward, runtime.compile_mode)


def _guidance(run: _Run, x: torch.Tensor, t: int, abar_t: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the UNet's eps, the guidance gradient as used, the caption probabilities CLIP gave)."""
    cfg = run.cfg
    grad, eps, emb = guidance_gradient(run.pack, cfg, x, t, abar_t, run.text_emb, run.logit_scale,
                                       run.runtime)
    grad, bad = _drop_nonfinite_lazy(grad)
    run.count_nonfinite(bad)
    if cfg.grad_norm != "none":  # "rms", the default
        grad = guidance.rms_normalise(grad)
    with torch.no_grad():
        return eps, grad, run.probs(emb)


def ddim_chain(pack: LoadedPack, x_T: torch.Tensor, schedule: Schedule,
               use_checkpoint: bool = True, runtime: Runtime = REFERENCE_RUNTIME) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from x_T to x0, differentiable; per-step checkpointing keeps
    only each step's input alive, so memory grows with the number of steps by one image each."""

    def one_step(x: torch.Tensor, k: int) -> torch.Tensor:
        eps = unet_eps(pack, x, schedule.timesteps[k], runtime)
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


def optimize_iteration(run: _Run, param: torch.Tensor, schedule: Schedule,
                       use_checkpoint: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and backward pass of x_T optimisation: fills ``param.grad``.

    Returns (x0 of the chain, its CLIP embedding, the per-sample cosine loss), detached.
    """
    with torch.enable_grad():
        x0 = ddim_chain(run.pack, param, schedule, use_checkpoint, run.runtime)
        emb = (run.pack.encode_image(to_unit_range(x0)) if run.runtime.is_reference
               else encode_for_guidance(run.pack, to_unit_range(x0), run.runtime))
        loss = guidance.cosine_distance(emb, run.text_emb[0])
        # Summed, so each sample's gradient is its own (independent of the batch).
        loss.sum().backward()
    return x0.detach(), emb.detach(), loss.detach()


def _optimize_xT(run: _Run, x_T: torch.Tensor, schedule: Schedule, batch_index: int,
                 offset: int, use_checkpoint: bool = True) -> torch.Tensor | None:
    """Adam on x_T so that the DDIM chain's image minimises CLIP's cosine distance to the prompt."""
    cfg, pack = run.cfg, run.pack
    param = x_T.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=cfg.lr)
    iters = cfg.opt_iters
    for it in range(iters):
        if run.cancelled:
            run.flush(block=True)
            return None
        opt.zero_grad(set_to_none=True)
        x0, emb, loss = optimize_iteration(run, param, schedule, use_checkpoint)
        grad, bad = _drop_nonfinite_lazy(param.grad)
        run.count_nonfinite(bad)
        param.grad = grad
        opt.step()
        mean_loss = float(loss.mean())
        if batch_index == 0:
            run.losses.append(mean_loss)
        if run.should_emit(it + 1, iters):
            run.emit(phase="optimize", step=it + 1, total=iters, timestep=0,
                     batch_index=batch_index, offset=offset, x0=x0,
                     probs=run.probs(emb), loss=mean_loss)
    run.flush(block=True)
    with torch.no_grad():
        return ddim_chain(pack, param.detach(), schedule, use_checkpoint=False, runtime=run.runtime)


def load_init_image(path: str, size: int, channels: int, device: torch.device) -> torch.Tensor:
    """An image file as a [1, C, size, size] tensor in [-1, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L").resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    t = torch.from_numpy(arr)
    t = t.permute(2, 0, 1) if t.ndim == 3 else t.unsqueeze(0)
    return t.unsqueeze(0).to(device)


def _sample_batch(run: _Run, indices: Sequence[int], batch_index: int, offset: int) -> torch.Tensor | None:
    cfg, pack = run.cfg, run.pack
    shape = (pack.channels, pack.image_size, pack.image_size)
    schedule = make_schedule(pack.scheduler, cfg.sampler, cfg.steps, pack.device)
    if cfg.method == "optimize":
        if cfg.init_image:
            img = load_init_image(cfg.init_image, pack.image_size, pack.channels, pack.device)
            x_T = ddim_invert(pack, img, schedule).expand(len(indices), -1, -1, -1).contiguous()
        else:
            x_T = initial_noise(cfg.seed, indices, shape, pack.device)
        return _optimize_xT(run, x_T, schedule, batch_index, offset)
    x_T = initial_noise(cfg.seed, indices, shape, pack.device)
    noise = StepNoise(cfg.seed, indices, shape, pack.device)
    return _reverse_chain(run, x_T, noise, schedule, batch_index, offset)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def sample(
    pack: LoadedPack,
    cfg: SamplingConfig,
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    indices: Sequence[int] | None = None,
    on_batch: Callable[[list[int], np.ndarray, np.ndarray], None] | None = None,
    runtime: Runtime | None = None,
) -> RunResult:
    """Run ``cfg`` (resolved and validated) on ``pack``; blocking.

    ``on_event`` is called from this thread at the config's event rate; ``cancel`` stops the run
    between steps, and the result then holds the batches that finished. ``indices`` selects which
    samples to make (default: 0..n-1), e.g. one rank's share. ``on_batch(indices, images,
    probs)`` is called as each batch finishes (to write it at once). On CUDA out-of-memory a batch is
    split in two and retried (the samples do not change: they depend only on seed and index).
    ``runtime`` says how to execute (precision, compile, ...); default
    ``Runtime.for_device(pack.device)``: the unchanged fp32 eager path on the CPU.
    """
    runtime = Runtime.for_device(pack.device, cfg.method) if runtime is None else runtime
    _prepare(pack, runtime)
    idx = list(range(cfg.n)) if indices is None else list(indices)
    run = _Run(pack, cfg, on_event, cancel, n_total=len(idx), runtime=runtime)
    batch = cfg.batch or len(idx)
    chunks = [idx[i : i + batch] for i in range(0, len(idx), batch)]
    run.n_batches = len(chunks)
    images: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    done: list[int] = []
    completed = True
    pending = list(chunks)
    b = 0
    offset = 0
    while pending:
        chunk = pending.pop(0)
        try:
            x0 = _sample_batch(run, chunk, b, offset)
        except RuntimeError as exc:
            if not (_is_oom(exc) and len(chunk) > 1):
                raise
            run._pending.clear()
            if pack.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(chunk) // 2
            pending[:0] = [chunk[:half], chunk[half:]]
            run.n_batches += 1
            run.oom_splits += 1
            continue
        if x0 is None:
            completed = False
            break
        with torch.no_grad():
            final_probs = run.probs_of(x0)
        images.append(to_uint8(x0))
        probs.append(final_probs.float().cpu().numpy())
        done.extend(chunk)
        if on_batch is not None:
            on_batch(list(chunk), images[-1], probs[-1])
        b += 1
        offset += len(chunk)
    c = len(cfg.captions)
    size = pack.image_size
    result = RunResult(
        config=cfg,
        captions=cfg.captions,
        images=np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8),
        probs=np.concatenate(probs) if probs else np.zeros((0, c), np.float32),
        indices=np.asarray(done, dtype=np.int64),
        completed=completed,
        seconds=time.perf_counter() - run.start,
        device=str(pack.device),
        nonfinite_skipped=run.nonfinite,
        losses=run.losses,
        prob_trace=run.prob_trace,
    )
    if run.oom_splits:
        result.extra["oom_splits"] = run.oom_splits
    if not runtime.is_reference:
        result.extra["runtime"] = runtime.describe()
    if not completed and run.last_preview is not None:
        result.extra["partial_preview"] = run.last_preview
    return result


def steps_per_second(result: RunResult) -> float:
    cfg = result.config
    work = (cfg.opt_iters * cfg.steps) if cfg.method == "optimize" else cfg.steps
    n_batches = math.ceil(max(len(result.indices), 1) / (cfg.batch or cfg.n))
    return work * n_batches / max(result.seconds, 1e-9)
