"""The embedded pack's real data: scikit-learn's bundled handwritten digits, rendered as RGB.

``sklearn.datasets.load_digits`` ships 1,797 8x8 grey images (values 0..16) of ten classes with
scikit-learn itself, so nothing is downloaded. Every consumer (the three trainings in
``scripts/train_digits.py``, the tests, the evaluation's KID reference) renders them through
:func:`load_digit_images` and splits them with :func:`digit_split`, so train and evaluation see
identical pixels.

Rendering: the 8x8 digit is scaled to [0, 1], upsampled bicubically to ``3/4`` of the canvas
(24x24 on a 32x32 canvas), clamped, and centred on a black canvas; white digit on black, the grey
value replicated to three channels; uint8 RGB ``[N, size, size, 3]``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DIGIT_NAMES: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
TEST_FRACTION = 0.2
DIGIT_FILL = 0.75  # share of the canvas side covered by the upsampled 8x8 digit


@lru_cache(maxsize=4)
def _rendered(size: int) -> tuple[np.ndarray, np.ndarray]:
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]
    inner = max(1, round(size * DIGIT_FILL))
    up = F.interpolate(grey, size=(inner, inner), mode="bicubic", align_corners=False)
    up = up.clamp(0.0, 1.0)
    canvas = torch.zeros(grey.shape[0], 1, size, size)
    lo = (size - inner) // 2
    canvas[:, :, lo : lo + inner, lo : lo + inner] = up
    rgb = (canvas * 255.0).round().to(torch.uint8).expand(-1, 3, -1, -1)
    images = rgb.permute(0, 2, 3, 1).contiguous().numpy()
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digit_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 RGB ``[N, size, size, 3]`` (white on black) and int64 labels ``[N]``.

    The arrays are cached and read-only; copy them before editing.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    return _rendered(int(size))


def digit_split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed stratified split: (train indices, test indices), about 20% of each class held out.

    Deterministic in ``seed`` alone; both index arrays are sorted and disjoint.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * TEST_FRACTION))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def class_index(class_name_or_index: str | int) -> int:
    """``"seven"``, ``"7"`` or ``7`` -> 7; raises ``ValueError`` for anything else."""
    if isinstance(class_name_or_index, (int, np.integer)):
        index = int(class_name_or_index)
    else:
        key = str(class_name_or_index).strip().casefold()
        if key in DIGIT_NAMES:
            index = DIGIT_NAMES.index(key)
        elif key.isdigit():
            index = int(key)
        else:
            raise ValueError(
                f"unknown digit class {class_name_or_index!r}; use one of {DIGIT_NAMES}"
            )
    if not 0 <= index < len(DIGIT_NAMES):
        raise ValueError(f"digit class index must be 0..9, got {index}")
    return index


def real_digit_images(
    class_name_or_index: str | int, split: str = "test", size: int = 32, seed: int = 0
) -> np.ndarray:
    """Real digits of one class as uint8 RGB ``[n, size, size, 3]``: the reference set for KID.

    ``split`` is ``"test"`` (held out from all trainings), ``"train"`` or ``"all"``.
    """
    index = class_index(class_name_or_index)
    images, labels = load_digit_images(size)
    if split == "all":
        chosen = np.arange(len(labels))
    elif split in ("train", "test"):
        train_idx, test_idx = digit_split(labels, seed=seed)
        chosen = test_idx if split == "test" else train_idx
    else:
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}")
    chosen = chosen[labels[chosen] == index]
    return images[chosen].copy()
