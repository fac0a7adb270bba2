"""Guidance objectives as small pure functions of unit-norm CLIP embeddings.

Each objective returns one value per sample; the sampler differentiates its sum with respect to
the current sample x_t (per-sample gradients, since samples do not interact).

- contrastive: log p_CLIP(target | x) = log softmax over [target, distractors] of CLIP's logits,
  taken at the target (index 0).
- spherical: minus the spherical (great-circle, squared) distance between the image embedding and
  the target caption embedding (Crowson's CLIP-guided diffusion loss, the poster's baseline).
- cosine distance: 1 - cos(image, target), the loss x_T optimisation minimises.
"""

from __future__ import annotations

import torch


def caption_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP logits [B, C]: logit_scale * cos(image_b, caption_c). Embeddings must be unit-norm."""
    return logit_scale * image_emb @ text_emb.T


def caption_probs(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Softmax over the captions [B, C] (target first)."""
    return caption_logits(image_emb, text_emb, logit_scale).softmax(dim=-1)


def contrastive_log_prob(
    image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """log p(target | image) among [target, *distractors]: [B]."""
    return caption_logits(image_emb, text_emb, logit_scale).log_softmax(dim=-1)[:, 0]


def weighted_contrastive(image_emb: torch.Tensor, caption_emb: torch.Tensor,
                         logit_scale: torch.Tensor | float, weights: torch.Tensor) -> torch.Tensor:
    """Sum over the targets (the first ``len(weights)`` captions) of weight * log p(target | image),
    p the softmax over all captions: [B]."""
    logp = caption_logits(image_emb, caption_emb, logit_scale).log_softmax(dim=-1)
    return (logp[:, : len(weights)] * weights).sum(dim=-1)


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance on the unit sphere, halved-angle form: 2 * asin(|a-b|/2)^2.

    For unit vectors at angle theta this equals theta^2 / 2. a: [B, D], b: [D] or [B, D].
    """
    chord = (a - b).norm(dim=-1)
    return 2.0 * torch.arcsin((chord / 2.0).clamp(max=1.0)) ** 2


def spherical_objective(image_emb: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
    """What spherical guidance ascends: minus the spherical distance to the target, [B]."""
    return -spherical_distance(image_emb, target_emb)


def weighted_spherical(image_emb: torch.Tensor, target_emb: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """Minus the weighted sum of spherical distances to the targets [T, D]: [B]."""
    d = torch.stack([spherical_distance(image_emb, t) for t in target_emb], dim=-1)
    return -(d * weights).sum(dim=-1)


def cosine_distance(image_emb: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
    """1 - cos(image, target), [B]; the CLIP loss of x_T optimisation."""
    return 1.0 - (image_emb * target_emb).sum(dim=-1)


def rms_normalise(grad: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each sample's gradient to unit root-mean-square.

    With this, the guidance scale means the same push (in units of the noise prediction's own
    RMS, which is ~1) whatever the model, the CLIP input or the size of CLIP's raw gradient.
    """
    dims = tuple(range(1, grad.ndim))
    rms = grad.pow(2).mean(dim=dims, keepdim=True).sqrt()
    return grad / (rms + eps)


def drop_nonfinite(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the gradient of every sample that holds a NaN or an infinity.

    Returns (the gradient, how many samples were zeroed as a 0-d tensor on the gradient's
    device: reading it is left to the caller, so a step never waits on the host)."""
    dims = tuple(range(1, grad.ndim))
    bad = ~torch.isfinite(grad).all(dim=dims)
    grad = torch.where(bad.view(-1, *([1] * (grad.ndim - 1))), torch.zeros_like(grad), grad)
    return grad, bad.sum()
