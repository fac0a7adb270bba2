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

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clipterm.errors import ConfigError, ModelUnavailableError, UserError
from clipterm.sanitize import printable

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

    The embeddings come from the pack's own encode path (``pack.encode_image``: the resize and
    normalisation that guidance uses), so features and guidance see images the same way. Use a different CLIP from the one that guided the samples, or the score
    rewards fooling the guide.
    """

    def __init__(self, pack: Any, batch_size: int = 64) -> None:
        super().__init__()
        self.pack = pack
        self.batch_size = batch_size

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = self.pack.device
        out = [self.pack.encode_image(_unit_float(chunk).to(device)).float().cpu()
               for chunk in images.split(self.batch_size)]
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


def inception_weights_path(weights_path: str | Path | None = None) -> Path:
    """The Inception weights file to read: ``weights_path``, else torch-fidelity's file in
    torch's hub cache (``$TORCH_HOME/hub/checkpoints``)."""
    if weights_path is not None:
        return Path(weights_path).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def read_inception_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The Inception weights at ``path``, as plain tensors: a safetensors file, or a PyTorch
    pickle read with ``weights_only=True`` (a pickle that would run code is refused before any
    of it runs). One-line :class:`UserError` for anything else."""
    from clipterm.packs.weights import read_pickled_state_dict

    what = "Inception weights"
    try:
        if not path.is_file():
            raise ModelUnavailableError(f"{what} not found: {printable(path)}")
    except OSError as exc:
        raise UserError(f"cannot read {what} {printable(path)}: {exc.strerror or exc}") from None
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except OSError as exc:
            raise UserError(f"cannot read {what} {printable(path)}: "
                            f"{exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001 - SafetensorError and the parser's complaints
            raise UserError(f"{what} {printable(path)} is not a valid safetensors file: "
                            f"{_first_line(exc)}") from None
    return read_pickled_state_dict(path, what)


def download_inception_weights() -> Path:
    """Fetch torch-fidelity's Inception weights into torch's hub cache (checked against the
    hash in their name); returns the file."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    path = inception_weights_path(None)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), hash_prefix="6726825d",
                                       progress=False)
    except (OSError, RuntimeError) as exc:  # no network; a hash mismatch is a RuntimeError
        raise ModelUnavailableError(f"could not download the Inception weights to "
                                    f"{printable(path)}: {_first_line(exc)}") from None
    return path


def inception_features(
    weights_path: str | Path | None = None, device: str | torch.device = "cpu",
    download: bool = False,
) -> nn.Module:
    """torchmetrics' default KID features (Inception-v3, 2048-d pool features, torch-fidelity).

    ``weights_path`` is a local copy of ``weights-inception-2015-12-05-6726825d.pth`` (or a
    safetensors conversion of it); without it, the copy in torch's hub cache, fetched there
    first when ``download`` is true. The file is read by clipterm (safetensors, or
    ``weights_only=True``), never by torch-fidelity's own loader (which unpickles with
    ``weights_only=False``): the library gets the checked tensors, re-serialised in memory.
    Missing torch-fidelity, missing or unreadable weights raise one line.
    """
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise ModelUnavailableError(
            "Inception features need torch-fidelity: pip install 'clipterm[inception]' "
            "(or pip install torch-fidelity), or use --features judge|clip"
        ) from None
    from torchmetrics.image.fid import NoTrainInceptionV3

    if weights_path is None and download:
        download_inception_weights()
    path = inception_weights_path(weights_path)
    if weights_path is None and not path.is_file():
        raise ModelUnavailableError(
            f"the Inception weights are not in torch's hub cache ({printable(path)}): fetch "
            f"them once with `clipterm eval RUN_DIR --features inception --download`, or copy "
            f"{INCEPTION_WEIGHTS_FILE} there, or pass --inception-weights FILE to eval"
        )
    state = read_inception_state_dict(path)
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)  # plain tensors we hold: what the library unpickles is ours
    buffer.seek(0)
    try:
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                 feature_extractor_weights_path=buffer)  # type: ignore[arg-type]
    except RuntimeError as exc:  # load_state_dict: missing or unexpected keys, wrong shapes
        raise UserError(f"Inception weights {printable(path)} do not fit torch-fidelity's "
                        f"Inception-v3: {_first_line(exc)}") from None
    from clipterm.packs.weights import check_finite

    check_finite(net, "Inception weights", path)
    return _Uint8Inputs(net.to(device))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return printable(lines[0] if lines else type(exc).__name__, 200)


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
