"""Evaluation: KID between generated and real images, and scores from an independent judge.

KID is computed by torchmetrics' :class:`~torchmetrics.image.kid.KernelInceptionDistance`. We
extract features ourselves (judge, CLIP or Inception) and hand the metric the *feature* tensors
through an identity feature module, so torchmetrics does all of the statistics: the polynomial
kernel ``k(x, y) = (x.y / d + 1) ** 3``, the unbiased MMD^2 estimate on each subset, and the mean
and standard deviation over subsets.

What torchmetrics does, and what that means for a reported ``mean ± std`` (torchmetrics 1.9):

- each of ``subsets`` rounds draws ``subset_size`` generated and ``subset_size`` real features
  without replacement (``torch.randperm`` on torch's global RNG); rounds are independent, so
  subsets overlap. :func:`kid` seeds that RNG locally, so results repeat for a given ``seed``.
- ``std`` is the population standard deviation (``unbiased=False``) of the per-subset estimates:
  the spread of one subset's KID, not the standard error of the mean, and it says nothing about
  seed-to-seed variation of the sampler. When ``subset_size`` equals both sample counts every
  subset is the whole set and ``std`` is exactly 0.
- the estimator is unbiased, so KID can be slightly negative when the two sets match.
- ``subset_size`` may equal the sample count (torchmetrics rejects only larger values).

Images follow torchmetrics' convention, uint8 ``[N, 3, H, W]`` in [0, 255]; float tensors are
taken to be in [0, 1]. numpy arrays are ``[N, H, W, 3]`` (the PIL/PNG layout) and are converted.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipterm.errors import ConfigError, ModelUnavailableError

FEATURE_KINDS = ("judge", "clip", "inception")
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


# ----------------------------------------------------------------------------- KID
def check_subset_size(subset_size: int, n_generated: int, n_real: int) -> None:
    """Raise a one-line :class:`ConfigError` unless ``2 <= subset_size <= min(n_gen, n_real)``."""
    largest = min(n_generated, n_real)
    if largest < 2:
        raise ConfigError(
            f"KID needs at least 2 generated and 2 real images (got {n_generated} generated, "
            f"{n_real} real)"
        )
    if subset_size > largest:
        raise ConfigError(
            f"KID subset size {subset_size} is larger than the sample count ({n_generated} "
            f"generated, {n_real} real): the largest valid value is {largest}"
        )
    if subset_size < 2:
        raise ConfigError(
            f"KID subset size must be at least 2 (got {subset_size}); the largest valid value "
            f"is {largest}"
        )


def kid(
    gen_features: torch.Tensor,
    real_features: torch.Tensor,
    subset_size: int,
    subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (mean, std over subsets) between two feature sets ``[N, d]`` and ``[M, d]``.

    Computed by torchmetrics' ``KernelInceptionDistance`` (identity feature module) in float64.
    The subset draws use torch's global RNG inside a fork, seeded with ``seed``: the caller's RNG
    state is left as it was and the result depends only on the inputs and ``seed``.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    gen = _as_feature_matrix(gen_features, "generated")
    real = _as_feature_matrix(real_features, "real")
    if gen.shape[1] != real.shape[1]:
        raise ValueError(f"feature sizes differ: generated {gen.shape[1]}, real {real.shape[1]}")
    check_subset_size(int(subset_size), gen.shape[0], real.shape[0])
    if int(subsets) < 1:
        raise ConfigError(f"KID needs at least 1 subset (got {subsets})")

    with warnings.catch_warnings():
        # "will save all extracted features in buffer": expected, we pass features.
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=nn.Identity(), subsets=int(subsets), subset_size=int(subset_size)
        )
    metric.update(real, real=True)
    metric.update(gen, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        mean, std = metric.compute()
    return float(mean), float(std)


def _as_feature_matrix(features: torch.Tensor | np.ndarray, which: str) -> torch.Tensor:
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.ndim != 2:
        raise ValueError(f"{which} features must be [N, d], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{which} features contain NaN or infinity")
    return x


# ----------------------------------------------------------------------------- images
def as_nchw_uint8(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images as a uint8 tensor ``[N, 3, H, W]``.

    numpy arrays are ``[N, H, W, 3]`` uint8 (or float in [0, 1]); tensors are ``[N, 3, H, W]``,
    uint8 or float in [0, 1]. Floats are rounded, not truncated.
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"numpy images must be [N, H, W, 3], got shape {images.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    else:
        x = images.detach().cpu()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"image tensors must be [N, 3, H, W], got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


def _unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]; float input is taken to be in [0, 1] already."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float()


def _module_device(module: Any) -> torch.device:
    try:
        return next(module.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _module_dtype(module: Any) -> torch.dtype:
    try:
        return next(module.parameters()).dtype
    except (StopIteration, AttributeError):
        return torch.float32


class JudgeFeatures(nn.Module):
    """Penultimate features of the digits judge: images ``[N, 3, H, W]`` -> ``[N, d]`` float32.

    Input is uint8 in [0, 255] (torchmetrics' convention) or float in [0, 1]; the judge sees
    float in [0, 1] at its own device, in batches of ``batch_size``.
    """

    def __init__(self, judge: Any, batch_size: int = 256) -> None:
        super().__init__()
        self.judge = judge
        self.batch_size = batch_size

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = _module_device(self.judge)
        with _eval_mode(self.judge):
            out = [
                self.judge.features(_unit_float(chunk).to(device)).float().cpu()
                for chunk in images.split(self.batch_size)
            ]
        return torch.cat(out).flatten(1)


class ClipFeatures(nn.Module):
    """Unit-norm CLIP image embeddings: images ``[N, 3, H, W]`` -> ``[N, D]`` float32.

    Preprocessing matches the guidance path: [0, 1] -> bicubic resize to ``image_size`` ->
    ``(x - mean) / std`` -> ``encode_image`` -> L2 normalisation. Use a different CLIP from the one
    that guided the samples, or the score rewards fooling the guide.
    """

    def __init__(
        self,
        clip_model: Any,
        mean: Sequence[float] | torch.Tensor,
        std: Sequence[float] | torch.Tensor,
        image_size: int,
        batch_size: int = 64,
    ) -> None:
        super().__init__()
        self.clip_model = clip_model
        self.register_buffer(
            "mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.image_size = int(image_size)
        self.batch_size = batch_size

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = _module_device(self.clip_model)
        dtype = _module_dtype(self.clip_model)
        mean, std = self.mean.to(device), self.std.to(device)
        out = []
        for chunk in images.split(self.batch_size):
            x = _unit_float(chunk).to(device)
            if x.shape[-2:] != (self.image_size, self.image_size):
                size = (self.image_size, self.image_size)
                x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
            x = ((x - mean) / std).to(dtype)
            emb = self.clip_model.encode_image(x).float()
            out.append(F.normalize(emb, dim=-1).cpu())
        return torch.cat(out)


class _Uint8Inputs(nn.Module):
    """Feeds a uint8-only network (torchmetrics' Inception) in batches; floats in [0, 1] rounded."""

    def __init__(self, net: nn.Module, batch_size: int = 64) -> None:
        super().__init__()
        self.net = net
        self.batch_size = batch_size

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = _module_device(self.net)
        out = [
            self.net(as_nchw_uint8(chunk).to(device)).float().cpu()
            for chunk in images.split(self.batch_size)
        ]
        return torch.cat(out)


def inception_features(
    weights_path: str | Path | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """torchmetrics' default KID features (Inception-v3, 2048-d pool features, torch-fidelity).

    ``weights_path`` is a local copy of ``weights-inception-2015-12-05-6726825d.pth``; without
    it torch-fidelity loads the weights from torch's hub cache, downloading them on first use
    when this machine has internet. Missing torch-fidelity or unreachable weights raise a one-line
    :class:`ModelUnavailableError`.
    """
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise ModelUnavailableError(
            "Inception features need torch-fidelity: pip install 'clipterm[inception]' "
            "(or pip install torch-fidelity), or use --features judge|clip"
        ) from None
    from torchmetrics.image.fid import NoTrainInceptionV3

    if weights_path is not None and not Path(weights_path).is_file():
        raise ModelUnavailableError(f"Inception weights file not found: {weights_path}")
    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=None if weights_path is None else str(weights_path),
        )
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; bad files are RuntimeErrors
        hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailableError(
            f"Inception weights unavailable ({reason}): on a machine with internet run once with "
            f"--features inception to cache them at {hub}, or pass a local "
            f"{INCEPTION_WEIGHTS_FILE}"
        ) from None
    return _Uint8Inputs(net.to(device))


def extract_features(module: nn.Module, images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Run a feature module on images (see :func:`as_nchw_uint8` for accepted layouts)."""
    return module(as_nchw_uint8(images)).detach().cpu()


# ----------------------------------------------------------------------------- judge
@contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Run ``module`` in eval mode (BatchNorm running stats, no dropout), then restore its mode."""
    was_training = bool(getattr(module, "training", False))
    if was_training:
        module.eval()
    try:
        yield
    finally:
        if was_training:
            module.train()


def judge_probabilities(judge: Any, images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Class probabilities ``[N, C]``: softmax of the judge's logits, images uint8 or [0, 1]."""
    x = as_nchw_uint8(images)
    device = _module_device(judge)
    out = []
    with torch.no_grad(), _eval_mode(judge):
        for chunk in x.split(256):
            logits = judge(_unit_float(chunk).to(device)).float()
            out.append(torch.softmax(logits, dim=-1).cpu())
    return torch.cat(out)


def judge_scores(
    judge: Any, images_uint8: torch.Tensor | np.ndarray, target_index: int
) -> dict[str, Any]:
    """What the independent judge sees in the images.

    Returns ``target_share`` (fraction judged to be class ``target_index``), ``confidence``
    (mean max-probability), ``target_probability`` (mean probability of the target class),
    ``histogram`` (count per judged class, length C), ``class_names`` (the judge's, when it has
    them) and ``n``. The judge runs in eval mode; its logits go through a softmax.
    """
    probs = judge_probabilities(judge, images_uint8)
    n, n_classes = probs.shape
    if not 0 <= int(target_index) < n_classes:
        raise ConfigError(f"target class index {target_index} is outside 0..{n_classes - 1}")
    if n == 0:
        raise ConfigError("no images to judge")
    judged = probs.argmax(dim=1)
    histogram = torch.bincount(judged, minlength=n_classes)
    config = getattr(judge, "config", None)
    names = [str(c) for c in getattr(config, "class_names", ())] or None
    return {
        "n": int(n),
        "target_index": int(target_index),
        "target_share": float((judged == int(target_index)).float().mean()),
        "confidence": float(probs.max(dim=1).values.mean()),
        "target_probability": float(probs[:, int(target_index)].mean()),
        "histogram": [int(c) for c in histogram],
        "class_names": names,
    }


# ----------------------------------------------------------------------------- combined
def evaluate_images(
    images_uint8: np.ndarray | torch.Tensor,
    real_uint8: np.ndarray | torch.Tensor,
    features: str,
    subset_size: int,
    subsets: int = 100,
    judge: Any = None,
    target_index: int | None = None,
    clip: ClipFeatures | None = None,
    seed: int = 0,
    inception_weights: str | Path | None = None,
) -> dict[str, Any]:
    """KID on the chosen features, plus judge scores when a judge and a target are given.

    ``images_uint8`` and ``real_uint8`` are ``[N, H, W, 3]`` numpy arrays (or ``[N, 3, H, W]``
    tensors). ``features`` is ``judge`` (needs ``judge``), ``clip`` (needs ``clip``, a
    :class:`ClipFeatures`) or ``inception`` (torch-fidelity).
    """
    gen = as_nchw_uint8(images_uint8)
    real = as_nchw_uint8(real_uint8)
    check_subset_size(int(subset_size), gen.shape[0], real.shape[0])
    if features == "judge":
        if judge is None:
            raise ConfigError("--features judge needs a pack with a judge; use clip or inception")
        extractor: nn.Module = JudgeFeatures(judge)
    elif features == "clip":
        if clip is None:
            raise ConfigError("--features clip needs a CLIP model")
        extractor = clip
    elif features == "inception":
        extractor = inception_features(inception_weights)
    else:
        raise ConfigError(f"unknown features {features!r}: choose {', '.join(FEATURE_KINDS)}")

    mean, std = kid(extractor(gen), extractor(real), subset_size, subsets, seed)
    result: dict[str, Any] = {
        "features": features,
        "n_generated": int(gen.shape[0]),
        "n_real": int(real.shape[0]),
        "subset_size": int(subset_size),
        "subsets": int(subsets),
        "seed": int(seed),
        "kid_mean": mean,
        "kid_std": std,
        "judge": None,
    }
    if judge is not None and target_index is not None:
        result["judge"] = judge_scores(judge, gen, target_index)
    return result
