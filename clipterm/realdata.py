"""Real images to compare generated ones against: ``digits:CLASS``, ``cifar10:CLASS`` or a folder.

Every loader returns uint8 ``[N, H, W, 3]`` at the requested square size. Nothing here touches
the network unless ``download=True`` is passed for CIFAR-10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from clipterm.errors import ConfigError, ModelUnavailableError
from clipterm.images import check_image
from clipterm.sanitize import printable, quoted

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DATASETS = ("digits", "cifar10")


def default_data_root() -> Path:
    """Where CIFAR-10 is looked for (and downloaded to) when no ``data_root`` is given."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("clipterm")) / "datasets"


def load_real_images(
    spec: str,
    image_size: int,
    data_root: str | Path | None = None,
    split: str = "test",
    download: bool = False,
) -> np.ndarray:
    """Real images for ``spec`` as uint8 ``[N, image_size, image_size, 3]``.

    ``spec`` is ``digits:CLASS`` (the embedded digits data), ``cifar10:CLASS`` (torchvision's
    CIFAR-10 under ``data_root``) or a folder of PNG/JPEG files. CLASS is a name or an index.
    ``split`` is ``test`` (held out, the default), ``train`` or ``all``.
    """
    if image_size < 1:
        raise ConfigError(f"image size must be positive (got {image_size})")
    dataset, sep, cls = spec.partition(":")
    if sep and dataset.lower() in DATASETS:
        if dataset.lower() == "digits":
            return load_digits(cls, image_size, split)
        return load_cifar10(cls, image_size, data_root, split, download)
    return load_folder(spec, image_size)


def _class_index(name: str, classes: tuple[str, ...] | list[str], dataset: str) -> int:
    key = name.strip().lower()
    if key.isdigit() and int(key) < len(classes):
        return int(key)
    lowered = [c.lower() for c in classes]
    if key in lowered:
        return lowered.index(key)
    raise ConfigError(
        f"unknown {dataset} class {quoted(name, 40)}: choose one of {', '.join(classes)} "
        f"(or an index 0..{len(classes) - 1})"
    )


def _check_split(split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise ConfigError(f"unknown split {quoted(split, 20)}: choose one of {', '.join(valid)}")


def load_digits(class_name: str, image_size: int, split: str = "test") -> np.ndarray:
    """Real digits of one class from the embedded data, rendered at ``image_size``.

    ``split="test"`` is the held-out 20% (no training saw it): the default KID reference.
    """
    from clipterm import data

    _check_split(split, ("test", "train", "all"))
    index = _class_index(class_name, tuple(data.DIGIT_NAMES), "digits")
    render = image_size if image_size >= 8 else 32  # the renderer needs at least 8x8
    images = data.real_digit_images(index, split=split, size=render)
    return resize_images(to_rgb_uint8(images), image_size)


def load_cifar10(
    class_name: str,
    image_size: int,
    data_root: str | Path | None = None,
    split: str = "test",
    download: bool = False,
) -> np.ndarray:
    """Real CIFAR-10 images of one class (test split: 1000, train: 5000, all: 6000)."""
    _check_split(split, ("test", "train", "all"))
    index = _class_index(class_name, CIFAR10_CLASSES, "cifar10")
    root = Path(data_root) if data_root is not None else default_data_root()
    from torchvision.datasets import CIFAR10

    parts = []
    for train in {"test": (False,), "train": (True,), "all": (True, False)}[split]:
        try:
            ds = CIFAR10(root=str(root), train=train, download=download)
        except RuntimeError:
            raise ModelUnavailableError(
                f"CIFAR-10 is not under {printable(root)} (looked for cifar-10-batches-py): on a machine "
                "with internet run once with --download, or copy that folder there, or pass "
                "--data-root DIR"
            ) from None
        except OSError as exc:  # download asked for but no network, disk full, ...
            raise ModelUnavailableError(
                f"could not download CIFAR-10 to {printable(root)}: {printable(exc, 120)}; copy cifar-10-batches-py there "
                "from a machine with internet"
            ) from None
        labels = np.asarray(ds.targets)
        parts.append(np.asarray(ds.data)[labels == index])
    return resize_images(np.concatenate(parts), image_size)


def load_folder(folder: str | Path, image_size: int) -> np.ndarray:
    """Every PNG/JPEG directly in ``folder`` (sorted): RGB, centre-cropped square, resized."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        hint = " (or digits:CLASS / cifar10:CLASS)" if ":" in str(folder) else ""
        raise ConfigError(f"real-image folder not found: {printable(path)}{hint}")
    try:
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise ConfigError(f"cannot read the real-image folder {printable(path)}: "
                          f"{exc.strerror or exc}") from None
    if not files:
        raise ConfigError(f"no PNG or JPEG images in {printable(path)}")
    out = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    for i, file in enumerate(files):
        check_image(file, "real image")  # size (decompression bombs), format, truncation
        try:
            with Image.open(file) as im:
                im.load()
                out[i] = np.asarray(_square(im.convert("RGB"), image_size))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"cannot read image {printable(file)}: {printable(reason, 120)}"
                              ) from None
    return out


def _square(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    return im


def to_rgb_uint8(images: np.ndarray) -> np.ndarray:
    """``[N, H, W]``, ``[N, H, W, 1|3]`` or ``[N, 1|3, H, W]`` (uint8, or float in [0, 1]) ->
    uint8 ``[N, H, W, 3]``."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images, got shape {x.shape}")
    if x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.dtype != np.uint8:
        x = (np.clip(x.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x)


def resize_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` -> uint8 ``[N, image_size, image_size, 3]`` (bicubic)."""
    if images.shape[1:3] == (image_size, image_size):
        return np.ascontiguousarray(images)
    out = np.empty((images.shape[0], image_size, image_size, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(_square(Image.fromarray(im), image_size))
    return out
