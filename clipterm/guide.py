"""CLIP's side of a run, built once: caption embeddings, the view CLIP gets, the objective.

:class:`Guide` is guided-diffusion's ``cond_fn`` for this sampler: called at a reverse step with
x_t, it returns the UNet's noise prediction, the gradient of the guidance objective with respect
to x_t (non-finite gradients dropped, optionally RMS-normalised) and CLIP's caption
probabilities. :class:`CaptionScorer` gives the per-caption probabilities every method reports.

With ``cutouts`` N > 0, CLIP sees the whole image (antialiased) and N random crops of it
(:mod:`clipterm.cutouts`); the objective is the mean over these views, and the probabilities
reported are the whole image's. The crops of sample i at timestep t depend on (seed, i, t), so a
guide is bound to the sample indices of its batch (:meth:`Guide.bind`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from clipterm import guidance
from clipterm.config import RunConfig
from clipterm.cutouts import make_views, mean_over_views
from clipterm.errors import ConfigError
from clipterm.runtime import DEFAULT_CPU_RUNTIME, Runtime, timestep_batch, unet_eps, upcast
from clipterm.sanitize import quoted
from clipterm.schedule import predict_x0
from clipterm.seeds import cutout_seeds


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map [-1, 1] to [0, 1] (CLIP's input range), without clamping.

    No clamp on purpose: a clamp would zero the gradient of every saturated pixel (most of a
    digit's black background early in the chain), so guidance could not draw there. CLIP sees
    the predicted image slightly out of range instead, and the gradient is the true one.
    """
    return (x + 1) / 2


def clip_view(cfg: RunConfig, x_t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The image CLIP sees, in CLIP's input range before normalisation ([0, 1] unless seed mode)."""
    if cfg.clip_input == "xt":
        return x_t if cfg.seed_preprocess else to_unit_range(x_t)  # the seed fed x_t unmapped
    return to_unit_range(x0)


def encode_images(pack: Any, images01: torch.Tensor, runtime: Runtime = DEFAULT_CPU_RUNTIME
                  ) -> torch.Tensor:
    """Unit-norm CLIP embeddings (fp32, or fp64 for fp64 images) of images in CLIP's input
    range, under ``runtime``."""
    with runtime.autocast(images01.device):
        return upcast(pack.encode_clip_input(images01.contiguous(), already_normalised=False))


def check_captions(pack: Any, captions: tuple[str, ...]) -> list[str]:
    """Warnings for captions longer than the CLIP's context (CLIP reads only their start); a
    ConfigError when two captions become the same once cut."""
    tokenizer = pack.tokenizer
    ctx = getattr(tokenizer, "context_length", None)
    if not ctx:
        return []
    cut = tokenizer(list(captions))
    try:
        full = tokenizer(list(captions), context_length=ctx * 8)
    except TypeError:  # a tokenizer without a context_length argument
        return []
    notes = []
    for i, text in enumerate(captions):
        if int((full[i] != 0).sum()) > ctx:
            role = "the prompt" if i == 0 else f"the distractor {quoted(text, 40)}"
            notes.append(f"{role} is longer than this CLIP's {ctx} tokens: only its start is read")
    for i in range(len(captions)):
        for j in range(i + 1, len(captions)):
            if torch.equal(cut[i], cut[j]):
                a, b = (quoted(captions[k], 40) for k in (i, j))
                raise ConfigError(f"{a} and {b} are the same caption once cut to this CLIP's "
                                  f"{ctx} tokens: shorten them", field="distractors")
    return notes


@torch.no_grad()
def image_prompt_embedding(pack: Any, path: str) -> torch.Tensor:
    """CLIP's unit-norm embedding [1, D] of an image file (resized to CLIP's input, antialiased)."""
    from clipterm.images import load_image01

    size = pack.clip_image_size
    img = torch.from_numpy(load_image01(path, size, 3, "image prompt")).unsqueeze(0)
    return encode_images(pack, img.to(pack.device))


class CaptionScorer:
    """CLIP's probabilities over a run's captions (target first), from embeddings or images."""

    def __init__(self, pack: Any, captions: tuple[str, ...], runtime: Runtime = DEFAULT_CPU_RUNTIME):
        self.pack = pack
        self.runtime = runtime
        self.text_emb = pack.encode_text(captions)
        self.logit_scale = pack.logit_scale

    def probs(self, emb: torch.Tensor) -> torch.Tensor:
        return guidance.caption_probs(emb, self.text_emb, self.logit_scale)

    @torch.no_grad()
    def probs_of(self, x0: torch.Tensor) -> torch.Tensor:
        """Probabilities for images in [-1, 1]."""
        return self.probs(encode_images(self.pack, to_unit_range(x0), self.runtime))


class Guide:
    """The guidance of one run: ``guide(x, t, abar_t) -> (eps, grad, probs)``.

    With one prompt the objective is the poster's: the contrastive log-probability of the prompt
    among the captions, or minus the spherical distance to it. With weighted prompts (and an
    image prompt, whose CLIP embedding is one more target) it is their weighted sum.
    """

    def __init__(self, pack: Any, cfg: RunConfig, scorer: CaptionScorer,
                 runtime: Runtime = DEFAULT_CPU_RUNTIME):
        self.pack = pack
        self.cfg = cfg
        self.scorer = scorer
        self.runtime = runtime
        self.nonfinite = torch.zeros((), dtype=torch.long, device=pack.device)
        n_targets = len(cfg.targets)
        targets = scorer.text_emb[:n_targets]
        weights = list(cfg.target_weights)
        if cfg.image_prompt is not None:
            targets = torch.cat([targets, image_prompt_embedding(pack, cfg.image_prompt).to(targets)])
            weights.append(1.0 if cfg.image_weight is None else float(cfg.image_weight))
        self.target_emb = targets
        # contrastive: the targets (text, then image) first, then the distractors
        self.caption_emb = torch.cat([targets, scorer.text_emb[n_targets:]])
        self.weights = torch.tensor(weights, device=pack.device, dtype=targets.dtype)
        self.indices: tuple[int, ...] | None = None  # the batch's samples (None: 0..B-1)

    def bind(self, indices: Sequence[int]) -> Guide:
        """This guide for a batch of the samples ``indices`` (their cutouts depend on them);
        it shares the run's text embeddings and the count of dropped gradients."""
        bound = copy.copy(self)
        bound.indices = tuple(indices)
        return bound

    def views(self, x_t: torch.Tensor, x0: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """What CLIP sees: the one view of :func:`clip_view`, or with cutouts, the whole image
        and its crops, view-major (:func:`clipterm.cutouts.make_views`)."""
        image = clip_view(self.cfg, x_t, x0)
        if not self.cfg.cutouts:
            return image
        indices = self.indices if self.indices is not None else range(image.shape[0])
        seeds = cutout_seeds(self.cfg.seed, indices, int(t))
        return make_views(image, self.pack.clip_image_size, self.cfg.cutouts,
                          float(self.cfg.cut_pow), bool(self.cfg.augment), seeds)

    def active_at(self, k: int, t: int) -> bool:
        """Whether step ``k`` (timestep ``t``) is guided: below guide-from, every k-th step."""
        return t < self.cfg.guide_from and k % self.cfg.guide_every == 0

    def objective(self, emb: torch.Tensor) -> torch.Tensor:
        """What guidance ascends, one value per sample."""
        if not self.cfg.weighted:
            if self.cfg.method == "contrastive":
                return guidance.contrastive_log_prob(emb, self.scorer.text_emb,
                                                     self.scorer.logit_scale)
            return guidance.spherical_objective(emb, self.scorer.text_emb[0])
        if self.cfg.method == "contrastive":
            return guidance.weighted_contrastive(emb, self.caption_emb, self.scorer.logit_scale,
                                                 self.weights)
        return guidance.weighted_spherical(emb, self.target_emb, self.weights)

    def forward(self, x_in: torch.Tensor, t: int | torch.Tensor, abar_t: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """UNet, predicted x0, CLIP, objective: (objective [B], eps, CLIP embedding), all fp32
        and differentiable in ``x_in`` (the UNet only when CLIP sees x0)."""
        if self.cfg.clip_input == "x0":
            eps = unet_eps(self.pack.unet, x_in, t, self.runtime)
            x0 = predict_x0(x_in, eps, abar_t)
        else:
            with torch.no_grad():
                eps = unet_eps(self.pack.unet, x_in, t, self.runtime)
            x0 = x_in
        emb = encode_images(self.pack, self.views(x_in, x0, t), self.runtime)
        obj = self.objective(emb)
        if self.cfg.cutouts:  # the mean over the views; the whole image's embedding
            batch = x_in.shape[0]
            return mean_over_views(obj, batch), eps, emb[:batch]
        return obj, eps, emb

    def gradient(self, x: torch.Tensor, t: int, abar_t: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(raw d objective / d x_t summed over samples, so per sample; eps; CLIP embedding)."""
        # cutouts are drawn on the host per step: that forward is not compiled
        forward = self.forward if self.cfg.cutouts else self.runtime.compiled(
            self.pack.unet, ("guided", self.cfg.method, self.cfg.clip_input,
                             self.cfg.seed_preprocess), self.forward)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            xin = (x_in.contiguous(memory_format=torch.channels_last)
                   if self.runtime.channels_last else x_in)
            compiled = self.runtime.compile and not self.cfg.cutouts
            obj, eps, emb = forward(xin, timestep_batch(t, x) if compiled else t, abar_t)
            (grad,) = torch.autograd.grad(obj.sum(), x_in)
        return grad, eps.detach(), emb.detach()

    def __call__(self, x: torch.Tensor, t: int, abar_t: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grad, eps, emb = self.gradient(x, t, abar_t)
        grad = self.drop_nonfinite(grad)
        if self.cfg.grad_norm == "rms":
            grad = guidance.rms_normalise(grad)
        with torch.no_grad():
            return eps, grad, self.scorer.probs(emb)

    def drop_nonfinite(self, grad: torch.Tensor) -> torch.Tensor:
        """Zero the gradient of samples holding a NaN or inf and count them; the count stays on
        the device, so the step never waits on the host."""
        grad, bad = guidance.drop_nonfinite(grad)
        self.nonfinite += bad
        return grad
