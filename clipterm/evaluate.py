"""Evaluating a set of samples against real images of the target class: KID, and an independent judge.

:class:`Evaluator` is what ``clipterm eval``, ``compare --eval`` and ``sweep --eval`` use. It is
built once per (pack, prompt) with :meth:`Evaluator.for_run`, which resolves the real reference
set and the feature space, and extracts the real features once; :meth:`Evaluator.evaluate` then
scores any number of sample sets against them.

Choices, and why (docs/RESULTS.md shows the measurements behind them):

- **Reference set.** By default the pack's own data for the prompt: ``digits:<prompt>`` for the
  digits pack (the held-out test split, which no training saw: 36 sevens), ``cifar10:<prompt>``
  for the CIFAR-10 pack (torchvision's test split: 1000 per class).
- **Features.** ``judge`` (default where the pack has a judge): the judge CNN's penultimate
  features, used **raw** (no L2 normalisation). They are non-negative ReLU outputs whose typical
  ``x.y / d`` is about 1 on real digits, the range KID's kernel ``(x.y / d + 1) ** 3`` is made for
  (as Inception's pool features are used raw by torchmetrics); their norm carries how much digit
  evidence the judge sees, which is part of what a faint or smeared sample gets wrong; and
  L2-normalising them would make the kernel almost linear (``x.y / d <= 1 / d``), leaving KID a
  comparison of means alone. ``clip``: the pack's CLIP image embeddings, unit-norm then scaled by
  ``sqrt(D)`` so that ``x.y / D`` is the cosine similarity (same kernel regime; unit-norm
  embeddings would again make the kernel near-linear). ``inception``: torchmetrics' standard
  2048-d Inception features (torch-fidelity), for comparison with published numbers.
- **Subset size.** Default ``min(50, n_generated, n_real)``. A larger subset gives each subset's
  unbiased MMD^2 estimate a smaller variance (the std over subsets shrinks like ``1 / sqrt(m)``
  when the sets differ, and like ``1 / m`` when they match); 50 keeps each subset a genuine resample of the poster's 100 samples (at
  ``m = n`` every subset would be the whole set and the std 0). On the digits pack the 36
  held-out sevens cap it at 36. The poster used 10 (``--subset-size 10`` reproduces that).
- The judge scores samples but never guides them; nor does a judge exist for packs without one
  (judged share and confidence are then ``None``).

Images are uint8 ``[N, H, W, 3]`` numpy arrays (the run folders' PNG layout) or ``[N, 3, H, W]``
tensors, as :func:`clipterm.metrics.as_nchw_uint8` accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipterm.errors import ConfigError
from clipterm.metrics import FEATURE_KINDS
from clipterm.sanitize import printable, quoted

DEFAULT_SUBSET_CAP = 50
DEFAULT_SUBSETS = 100
MAX_SUBSETS = 10_000
MAX_SEED = 2**63 - 1
REAL_DATA_PREFIX = {"sklearn-digits": "digits", "digits": "digits", "cifar10": "cifar10"}


def default_subset_size(n_generated: int, n_real: int) -> int:
    """``min(50, n_generated, n_real)``: see the module docstring for why."""
    return min(DEFAULT_SUBSET_CAP, int(n_generated), int(n_real))


def check_options(features: str, subset_size: int | None, subsets: int, seed: int) -> str:
    """Check the evaluation options alone (before anything is loaded); returns the feature
    kind, normalised. Each problem is a one-line :class:`ConfigError`."""
    kind = (features or "judge").strip().lower()
    if kind not in FEATURE_KINDS:
        raise ConfigError(f"unknown features {quoted(features, 40)}: choose "
                          f"{', '.join(FEATURE_KINDS)}", field="features")
    if not 1 <= int(subsets) <= MAX_SUBSETS:
        raise ConfigError(f"--subsets must be a whole number in 1..{MAX_SUBSETS} (got {subsets})",
                          field="subsets")
    if subset_size is not None and int(subset_size) < 2:
        raise ConfigError(f"KID subset size must be at least 2 (got {subset_size})",
                          field="subset_size")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"the KID seed must be a whole number in 0..2**63-1 (got {seed})",
                          field="seed")
    return kind


def default_real_spec(pack_spec: Any, prompt: str) -> str:
    """The reference set a pack implies for ``prompt`` (``digits:seven``, ``cifar10:airplane``).

    Raises a one-line :class:`ConfigError` when the pack names no real data or the prompt is not
    one of its classes, asking for ``--real``.
    """
    real_data = getattr(pack_spec, "real_data", None)
    prefix = REAL_DATA_PREFIX.get(str(real_data).lower()) if real_data else None
    if prefix is None:
        raise ConfigError(
            f"the pack {quoted(getattr(pack_spec, 'name', '?'), 60)} names no real data to compare with: "
            "pass --real FOLDER (a folder of real images of the target class)"
        )
    classes = [c.casefold() for c in getattr(pack_spec, "captions", ())]
    key = prompt.strip().casefold()
    if classes and key not in classes:
        raise ConfigError(
            f"the prompt {quoted(prompt, 60)} is not one of the {prefix} classes, so there are no real images "
            f"of it: pass --real {prefix}:CLASS or --real FOLDER"
        )
    return f"{prefix}:{prompt.strip()}"


def judge_class_index(judge: Any, prompt: str) -> int | None:
    """The judge's class index for ``prompt`` (case-insensitive), or None if it has no such class."""
    names = [str(c).casefold() for c in getattr(getattr(judge, "config", None), "class_names", ())]
    key = prompt.strip().casefold()
    return names.index(key) if key in names else None


@dataclass
class Evaluator:
    """Scores sample sets against a fixed real reference set (features extracted once).

    Build it with :meth:`for_run`. ``feature_module`` maps uint8 ``[N, 3, H, W]`` images to
    features ``[N, d]``; ``feature_scale`` is ``"raw"`` or ``"unit*sqrt(d)"``.
    """

    features: str
    feature_module: Any
    real_label: str
    real_features: Any  # torch.Tensor [n_real, d]
    subset_size: int | None = None  # None: default_subset_size per call
    subsets: int = DEFAULT_SUBSETS
    judge: Any = None
    target_index: int | None = None
    prompt: str = ""
    seed: int = 0
    feature_scale: str = "raw"
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ building
    @classmethod
    def for_run(
        cls,
        pack: Any,
        prompt: str,
        real: str | None = None,
        features: str = "judge",
        subset_size: int | None = None,
        subsets: int = DEFAULT_SUBSETS,
        n: int | None = None,
        *,
        seed: int = 0,
        data_root: str | Path | None = None,
        download: bool = False,
        inception_weights: str | Path | None = None,
        split: str = "test",
    ) -> Evaluator:
        """An evaluator for samples of ``prompt`` made with ``pack`` (a LoadedPack).

        ``real`` is ``digits:CLASS``, ``cifar10:CLASS`` or a folder (default: the pack's data for
        the prompt, see :func:`default_real_spec`). ``n`` is the number of samples that will be
        evaluated, when known: a ``subset_size`` larger than ``min(n, n_real)`` is then rejected
        here, before any sampling, with the largest valid value named.
        """
        from clipterm.realdata import load_real_images

        features = check_options(features, subset_size, subsets, seed)
        judge = getattr(pack, "judge", None)
        if features == "judge" and judge is None:
            raise ConfigError(
                f"the pack {quoted(pack.name, 60)} has no judge, so --features judge is not available: "
                "use --features clip or --features inception"
            )
        spec = real or default_real_spec(pack.spec, prompt)
        real_images = load_real_images(
            spec, pack.image_size, data_root=data_root, split=split, download=download
        )
        n_real = int(real_images.shape[0])
        if subset_size is not None:
            _check_subset(int(subset_size), n_real if n is None else int(n), n_real)

        module, scale = _feature_module(features, pack, inception_weights, download)
        target_index = judge_class_index(judge, prompt) if judge is not None else None
        notes = []
        if judge is not None and target_index is None:
            notes.append(f"the judge has no class {quoted(prompt.strip(), 60)}: no judged share")
        if features == "clip":
            notes.append("CLIP features come from the guiding CLIP, which guided samples are "
                         "pushed to please: prefer judge or inception features")
        label = printable(spec if ":" in spec else Path(spec).expanduser())
        ev = cls(
            features=features,
            feature_module=module,
            real_label=label,
            real_features=_extract(module, real_images, scale),
            subset_size=None if subset_size is None else int(subset_size),
            subsets=int(subsets),
            judge=judge,
            target_index=target_index,
            prompt=prompt.strip(),
            seed=int(seed),
            feature_scale=scale,
            notes=notes,
        )
        return ev

    # ------------------------------------------------------------------ scoring
    @property
    def n_real(self) -> int:
        return int(self.real_features.shape[0])

    def subset_size_for(self, n_generated: int) -> int:
        """The subset size used for ``n_generated`` samples (checked, one-line error if invalid)."""
        m = self.subset_size if self.subset_size is not None else default_subset_size(
            n_generated, self.n_real
        )
        _check_subset(m, n_generated, self.n_real)
        return m

    def evaluate(self, images_uint8: Any) -> dict[str, Any]:
        """KID (mean and std over subsets) and judge scores for one set of samples.

        Returns ``kid_mean``, ``kid_std``, ``kid_subset_size``, ``kid_subsets``, ``features``,
        ``n``, ``n_real``, ``judged_share`` (fraction the judge assigns to the target class),
        ``judge_confidence`` (mean max-probability), ``judge_target_prob`` (mean probability of
        the target), the last three ``None`` where there is no judge or no such judge class.
        """
        from clipterm.metrics import as_nchw_uint8, judge_scores, kid

        images = as_nchw_uint8(images_uint8)
        n = int(images.shape[0])
        m = self.subset_size_for(n)
        gen = _extract(self.feature_module, images, self.feature_scale)
        mean, std = kid(gen, self.real_features, m, self.subsets, self.seed)
        out: dict[str, Any] = {
            "n": n,
            "kid_mean": mean,
            "kid_std": std,
            "kid_subset_size": m,
            "kid_subsets": self.subsets,
            "features": self.features,
            "n_real": self.n_real,
            "judged_share": None,
            "judge_confidence": None,
            "judge_target_prob": None,
        }
        if self.judge is not None and self.target_index is not None:
            scores = judge_scores(self.judge, images, self.target_index)
            out["judged_share"] = scores["target_share"]
            out["judge_confidence"] = scores["confidence"]
            out["judge_target_prob"] = scores["target_probability"]
            out["judge_histogram"] = scores["histogram"]
        return out

    def describe(self) -> str:
        """One line: what was compared with what, how."""
        size = (f"subset size {self.subset_size}" if self.subset_size is not None
                else f"subset size min({DEFAULT_SUBSET_CAP}, n, {self.n_real})")
        scale = "" if self.feature_scale == "raw" else f", {self.feature_scale}"
        text = (f"KID on {self.features} features{scale} against {self.n_real} real images "
                f"({self.real_label}), {size}, {self.subsets} subsets, seed {self.seed}; "
                "± is the population std over subsets")
        if self.judge is not None and self.target_index is not None:
            text += f"; judged share = fraction the judge classifies as {quoted(self.prompt, 60)}"
        for note in self.notes:
            text += f"; {note}"
        return text


# ----------------------------------------------------------------------------- helpers
def _check_subset(subset_size: int, n_generated: int, n_real: int) -> None:
    from clipterm.metrics import check_subset_size

    check_subset_size(int(subset_size), int(n_generated), int(n_real))


def _feature_module(features: str, pack: Any, inception_weights: str | Path | None,
                    download: bool = False) -> tuple[Any, str]:
    from clipterm import metrics

    if features == "judge":
        return metrics.JudgeFeatures(pack.judge), "raw"
    if features == "clip":
        return metrics.ClipFeatures(pack), "unit*sqrt(d)"
    return metrics.inception_features(inception_weights, device=pack.device,
                                      download=download), "raw"


def _extract(module: Any, images: Any, scale: str) -> Any:
    """Features ``[N, d]`` (float64, CPU) of images, scaled as ``scale`` says."""
    import torch

    from clipterm.metrics import extract_features

    feats = extract_features(module, images).to(torch.float64)
    if scale == "unit*sqrt(d)":
        feats = torch.nn.functional.normalize(feats, dim=1) * math.sqrt(feats.shape[1])
    return feats


def seed_summary(values: list[float | None]) -> dict[str, float | int | None]:
    """Mean and sample std (ddof 1) across seeds of one quantity, ignoring ``None``."""
    xs = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if xs.size == 0:
        return {"mean": None, "std": None, "k": 0}
    std = float(xs.std(ddof=1)) if xs.size > 1 else None
    return {"mean": float(xs.mean()), "std": std, "k": int(xs.size)}
