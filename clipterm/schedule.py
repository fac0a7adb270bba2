"""The reverse chain's schedule: respaced timesteps over the model's alpha-bars, and its step.

:class:`Schedule` is what diffusers' schedulers are, minus their mutable state: ``step(k, x, eps,
noise)`` takes the model's own DDPM or DDIM step k (formula for formula diffusers'
``DDPMScheduler.step`` / ``DDIMScheduler.step``, tested equal), and ``guidance_shift(k, grad,
scale)`` says how far CLIP guidance moves x_{t-1}. The sampler adds the shift *after* the step, so
the model's clipping of the predicted x0 never cuts the guidance (guided-diffusion's
``condition_mean`` does the same).

The model's output may carry more than the noise: a learned-range model (guided-diffusion's
``learn_sigma``, converted to diffusers with ``out_channels`` 6 and ``variance_type``
``learned_range``) predicts the noise in its first half and, in its second, where the step's
log-variance lies between the posterior's and beta_t's. Every function here that takes ``eps``
takes that whole output, as diffusers' ``step`` does (:func:`split_model_output`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from clipterm.errors import UserError

SUPPORTED_VARIANCES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log",
                       "learned_range")
LEARNED_VARIANCES = ("learned_range",)


@dataclass(frozen=True)
class Schedule:
    """The strided chain: step k goes from timestep ``timesteps[k]`` to ``prev_timesteps[k]``."""

    kind: str  # "ddpm" | "ddim"
    timesteps: tuple[int, ...]
    prev_timesteps: tuple[int, ...]  # -1 for the last step
    abar: torch.Tensor  # [K] alpha-bar at timesteps (device, float32)
    abar_prev: torch.Tensor  # [K] alpha-bar at prev_timesteps (1.0 for the last step)
    variance_type: str
    clip_sample: float | None  # clip range of the predicted x0 inside a step, or None
    eta: float = 0.0  # DDIM only

    def __len__(self) -> int:
        return len(self.timesteps)

    @property
    def stochastic(self) -> bool:
        """Whether a step takes noise (DDPM, or DDIM with eta > 0)."""
        return self.kind == "ddpm" or self.eta > 0

    def step(self, k: int, x: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own step k from x_t with the model's output ``eps`` (the noise
        prediction, and a learned-range model's variance values): (x_{t-1}, x0_hat)."""
        if self.kind == "ddpm":
            return ddpm_step(x, eps, self.abar[k], self.abar_prev[k], self.timesteps[k], noise,
                             self.variance_type, self.clip_sample)
        return ddim_step(x, eps, self.abar[k], self.abar_prev[k], self.eta, noise,
                         self.clip_sample)

    def guidance_shift(self, k: int, grad: torch.Tensor, scale: float) -> torch.Tensor:
        """How far guidance with gradient ``grad`` and scale gamma moves x_{t-1} at step k."""
        return guidance_shift(self.kind, grad, self.abar[k], self.abar_prev[k], scale, self.eta)


def make_schedule(scheduler: Any, kind: str, steps: int, device: torch.device, eta: float = 0.0,
                  clip_x0: bool = True) -> Schedule:
    """Timesteps as diffusers spaces them (``set_timesteps``), over the model's own alpha-bars.

    A fresh scheduler object is made from the config, so the pack's scheduler is never mutated
    (runs may happen in several threads). ``clip_x0=False`` never clips the predicted x0 (the
    seed code's eps-form update), even where the model's scheduler would.
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
    one = torch.tensor(1.0, dtype=torch.float64)
    abar_prev = torch.stack([abar_all[p] if p >= 0 else one for p in prev])
    clip = (float(cfg.get("clip_sample_range", 1.0))
            if cfg.get("clip_sample", False) and clip_x0 else None)
    return Schedule(
        kind=kind, timesteps=tuple(ts), prev_timesteps=tuple(prev),
        abar=abar.to(device=device, dtype=torch.float32),
        abar_prev=abar_prev.to(device=device, dtype=torch.float32),
        variance_type=variance_type, clip_sample=clip, eta=eta if kind == "ddim" else 0.0,
    )


# ----------------------------------------------------------------------------- the steps
def split_model_output(out: torch.Tensor, x: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(noise prediction, variance values or None) of a model output for x: a learned-range
    model's output has twice x's channels, as diffusers' DDPMScheduler.step splits it."""
    channels = x.shape[1]
    if out.shape[1] == 2 * channels:
        return out[:, :channels], out[:, channels:]
    return out, None


def predict_x0(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    eps, _ = split_model_output(eps, x)
    return (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()


def ddpm_step(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
              t: int, noise: torch.Tensor | None, variance_type: str, clip_sample: float | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step, numbered as diffusers' DDPMScheduler.step. Returns (x_prev, x0_hat)."""
    # 0. a learned-range model's output: the noise, then where the log-variance lies
    eps, v = split_model_output(eps, x)
    # 1. alphas and betas of the (possibly respaced) step
    alpha_t = abar_t / abar_prev
    beta_t = 1 - alpha_t
    # 2. predicted x0 (eq. 15 of the DDPM paper), 3. clipped to the data range
    x0 = predict_x0(x, eps, abar_t)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    # 4. coefficients of the posterior mean (eq. 7), 5. the mean
    coef_x0 = abar_prev.sqrt() * beta_t / (1 - abar_t)
    coef_xt = alpha_t.sqrt() * (1 - abar_prev) / (1 - abar_t)
    mean = coef_x0 * x0 + coef_xt * x
    # 6. noise, except at the last step
    if t > 0 and noise is not None:
        posterior_var = ((1 - abar_prev) / (1 - abar_t) * beta_t).clamp(min=1e-20)
        if variance_type == "learned_range":
            if v is None:
                raise ValueError("a learned-range step needs the model's variance output")
            # log sigma^2 = frac log beta_t + (1 - frac) log posterior variance, frac = (v + 1) / 2
            # (Improved DDPM, eq. 15; guided-diffusion's learn_sigma, diffusers' learned_range)
            frac = (v + 1) / 2
            log_var = frac * beta_t.log() + (1 - frac) * posterior_var.log()
            return mean + torch.exp(0.5 * log_var) * noise, x0
        var = beta_t if variance_type.startswith("fixed_large") else posterior_var
        mean = mean + var.sqrt() * noise
    return mean, x0


def ddim_step(x: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
              eta: float, noise: torch.Tensor | None, clip_sample: float | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (eq. 12 of the DDIM paper, as diffusers' DDIMScheduler.step).
    Returns (x_prev, x0_hat). A learned variance is not used: DDIM sets its own (eta)."""
    eps, _ = split_model_output(eps, x)
    x0 = predict_x0(x, eps, abar_t)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    sigma, direction = _ddim_sigma_direction(abar_t, abar_prev, eta)
    x_prev = abar_prev.sqrt() * x0 + direction * eps
    if eta > 0 and noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def _ddim_sigma_direction(abar_t: torch.Tensor, abar_prev: torch.Tensor, eta: float
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_t, the coefficient of eps in the "direction pointing to x_t") of a DDIM step."""
    var = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
    sigma = eta * var.sqrt()
    return sigma, (1 - abar_prev - sigma**2).clamp(min=0).sqrt()


def guidance_shift(kind: str, grad: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
                   scale: float, eta: float = 0.0) -> torch.Tensor:
    """The guidance term of a step, added to x_{t-1} after the model's own step.

    DDPM, the poster's guided mean::

        x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps + gamma beta_t grad) / sqrt(alpha_t) + sigma_t z
                = step(x_t, eps) + gamma beta_t / sqrt(alpha_t) grad

    DDIM: what the guided noise prediction eps_hat = eps - sqrt(1 - abar_t) gamma grad (guidance
    through the score) changes in an unclipped step. Adding it after the step, not feeding eps_hat
    through the clipping step, matters: where x0_hat is saturated (most pixels early in the chain)
    the clip would remove the x0 part of the correction, and for DDIM the rest moves x_{t-1}
    *against* the gradient.
    """
    if kind == "ddpm":
        alpha_t = abar_t / abar_prev
        beta_t = 1 - alpha_t
        return scale * beta_t / alpha_t.sqrt() * grad
    d_eps = -(1 - abar_t).sqrt() * scale * grad
    dx0_deps = -(1 - abar_t).sqrt() / abar_t.sqrt()
    _, direction = _ddim_sigma_direction(abar_t, abar_prev, eta)
    return (abar_prev.sqrt() * dx0_deps + direction) * d_eps
