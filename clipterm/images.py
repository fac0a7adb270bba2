"""Image files from outside (init images, real reference images), opened defensively.

Every image is checked before it is decoded: its size (a decompression bomb declares a huge
canvas in a tiny file), that Pillow can read it, and that it is not truncated. 16-bit and
floating-point images are scaled into [0, 1], not clipped.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np

from clipterm.errors import UserError
from clipterm.sanitize import printable

# Larger images are refused before decoding: 64 megapixels is 8192 x 8192, far beyond any
# model here, and a 64 MP RGB image decodes to 192 MB.
MAX_PIXELS = 64 * 1024 * 1024
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _fail(what: str, path: Path, reason: str) -> UserError:
    return UserError(f"{what} {printable(path)} {reason}")


@functools.lru_cache(maxsize=64)
def _checked(path_str: str, mtime_ns: int, size: int, what: str) -> tuple[int, int, str]:
    from PIL import Image, UnidentifiedImageError

    path = Path(path_str)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise _fail(what, path, f"is {w}x{h} pixels: larger than the "
                                f"{MAX_PIXELS // 2**20} megapixels clipterm opens")
                im.load()
                return w, h, im.mode
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _fail(what, path, "declares a canvas too large to open "
                    "(a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise _fail(what, path, "is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _fail(what, path, f"is damaged ({printable(exc, 120)})") from None


def check_image(path: str | os.PathLike[str], what: str = "image") -> tuple[int, int, str]:
    """(width, height, mode) of an image file, or a one-line UserError; decoded once per
    version of the file (cached by path, modification time and size)."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise _fail(what, p, "not found") from None
    except OSError as exc:
        raise _fail(what, p, f"cannot be read ({exc.strerror})") from None
    if not p.is_file():
        raise _fail(what, p, "is not a file")
    return _checked(str(p), st.st_mtime_ns, st.st_size, what)


def load_image01(path: str | os.PathLike[str], size: int, channels: int,
                 what: str = "image") -> np.ndarray:
    """An image file as float32 [channels, size, size] in [0, 1], resized with Pillow's
    antialiased bicubic filter. 16-bit images are divided by 65535; floating-point images are
    taken as [0, 1] (or 8-/16-bit ranges when their values say so), never clipped."""
    from PIL import Image

    check_image(path, what)
    p = Path(path).expanduser()
    with Image.open(p) as im:
        im.load()
        if im.mode in _SIXTEEN_BIT:
            planes = [np.asarray(im, dtype=np.float32) / 65535.0]
        elif im.mode == "F":
            arr = np.asarray(im, dtype=np.float32)
            if not np.isfinite(arr).all():
                raise _fail(what, p, "holds values that are not finite numbers")
            top = float(arr.max()) if arr.size else 1.0
            planes = [arr / (1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0)]
        else:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            planes = [rgb[..., c] for c in range(3)]
    if channels == 1 and len(planes) == 3:  # ITU-R 601 luma, as Pillow's convert("L")
        planes = [planes[0] * 0.299 + planes[1] * 0.587 + planes[2] * 0.114]
    elif channels == 3 and len(planes) == 1:
        planes = planes * 3
    out = [np.asarray(Image.fromarray(np.clip(pl, 0.0, 1.0).astype(np.float32))
                      .resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
           for pl in planes]
    return np.clip(np.stack(out), 0.0, 1.0)
