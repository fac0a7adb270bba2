"""Pixel-exact terminal images made of half-block cells.

Each terminal cell shows two vertically stacked pixels: the glyph ``▀`` painted with the top
pixel as foreground colour and the bottom pixel as background colour. A 32x32 sample becomes
32 columns x 16 rows, exactly one cell per pixel pair, with nothing but SGR colour codes, so it
works over SSH and inside tmux, and Textual's diff renderer redraws only the cells that changed
(no flicker).

Why not a terminal graphics protocol inside the app: for images this small, kitty / iTerm2 / sixel
graphics show the same pixels, only interpolated when enlarged, and they do not mix with
Textual's compositor (escape sequences break its cell-width accounting and an image would be
re-sent on every repaint). term-image (a declared dependency) is used where it earns its place:
the "view" action suspends the app and lets term-image draw the selected sample with the best
protocol the terminal supports (see :mod:`clipterm.tui.graphics`). Half blocks are always the
in-app renderer and the fallback.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style

UPPER_HALF = "\u2580"  # ▀

# The xterm 256-colour palette above the 16 system colours: a 6x6x6 cube and a 24-step grey ramp.
CUBE_LEVELS = np.array([0, 95, 135, 175, 215, 255], dtype=np.int32)
GREY_VALUES = np.array([0, *range(8, 239, 10), 255], dtype=np.int32)  # black, ramp, white
GREY_INDICES = np.array([16, *range(232, 256), 231], dtype=np.int32)
GREY_CHROMA = 24  # pixels whose channels differ less than this are drawn from the grey ramp
_WEIGHTS = np.array([2, 4, 3], dtype=np.int32)  # a cheap perceptual weighting of R, G, B

_style_cache: dict[tuple[int, ...], Style] = {}


def _style(top: tuple[int, ...], bottom: tuple[int, ...] | None) -> Style:
    """The style of one half-block cell: an RGB triple each, or a 1-tuple palette index."""
    key = top + bottom if bottom is not None else top
    style = _style_cache.get(key)
    if style is None:
        if len(_style_cache) > 65536:
            _style_cache.clear()
        style = Style(color=_colour(top), bgcolor=None if bottom is None else _colour(bottom))
        _style_cache[key] = style
    return style


def _colour(value: tuple[int, ...]) -> Color:
    return Color.from_ansi(value[0]) if len(value) == 1 else Color.from_rgb(*value)


def xterm256(image: np.ndarray) -> np.ndarray:
    """The nearest colour of the xterm 256-colour palette for each pixel, as palette indices.

    Grey-ish pixels (channels within ``GREY_CHROMA``) take the nearest step of the 24-step grey
    ramp (or black / white), so grey samples stay grey; the others the nearer of the colour
    cube's and the ramp's candidates (weighted RGB distance). The 16 system colours are never
    used: terminals and themes change them.
    """
    rgb = image.astype(np.int32)
    cube = np.abs(rgb[..., None] - CUBE_LEVELS).argmin(axis=-1)  # [H, W, 3] levels 0..5
    cube_rgb = CUBE_LEVELS[cube]
    cube_index = 16 + 36 * cube[..., 0] + 6 * cube[..., 1] + cube[..., 2]
    grey = (rgb * _WEIGHTS).sum(axis=-1) // _WEIGHTS.sum()
    g = np.abs(grey[..., None] - GREY_VALUES).argmin(axis=-1)
    grey_rgb = GREY_VALUES[g][..., None]
    d_cube = (((rgb - cube_rgb) ** 2) * _WEIGHTS).sum(axis=-1)
    d_grey = (((rgb - grey_rgb) ** 2) * _WEIGHTS).sum(axis=-1)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    use_grey = (chroma < GREY_CHROMA) | (d_grey <= d_cube)
    return np.where(use_grey, GREY_INDICES[g], cube_index).astype(np.int32)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an RGB uint8 image: repeat pixels when enlarging by whole factors, else box filter."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if width % w == 0 and height % h == 0 and width // w == height // h:
        k = width // w
        return np.repeat(np.repeat(image, k, axis=0), k, axis=1)
    if w % width == 0 and h % height == 0 and w // width == h // height:
        k = w // width
        return image.reshape(height, k, width, k, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    from PIL import Image

    pil = Image.fromarray(image).resize((width, height), Image.NEAREST if width > w else Image.BOX)
    return np.asarray(pil)


def halfblock_lines(image: np.ndarray, colours: str = "truecolor") -> list[list[Segment]]:
    """Render an RGB uint8 image [H, W, 3] as ceil(H/2) lines of W half-block cells.

    ``colours="256"`` picks each pixel's colour from the xterm 256-colour palette here (see
    :func:`xterm256`) instead of leaving the terminal's colour reduction to chance.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = img.shape[:2]
    if colours == "256":
        rows = xterm256(img)[..., None].tolist()
    else:
        rows = img.tolist()  # plain ints: much faster to index than numpy scalars
    lines: list[list[Segment]] = []
    for y in range(0, h, 2):
        top_row = rows[y]
        bottom_row = rows[y + 1] if y + 1 < h else None
        line = [
            Segment(
                UPPER_HALF,
                _style(
                    tuple(top_row[x]),
                    tuple(bottom_row[x]) if bottom_row is not None else None,
                ),
            )
            for x in range(w)
        ]
        lines.append(line)
    return lines


def lines_to_text_rows(lines: Iterable[list[Segment]]) -> list[str]:
    """Plain text of rendered lines (for tests and plain captures)."""
    return ["".join(seg.text for seg in line) for line in lines]


def fit_factor(width: int, height: int, max_cells_w: int, max_rows: int, max_up: int = 4) -> float:
    """The largest scale (whole upscales up to ``max_up``, else 1/2, 1/4, ...) that fits the box.

    An image of ``width`` x ``height`` pixels takes ``width`` cells x ``ceil(height / 2)`` rows.
    """
    for k in range(max_up, 0, -1):
        if width * k <= max_cells_w and (height * k + 1) // 2 <= max_rows:
            return float(k)
    k = 2
    while k < max(width, height):
        if width // k <= max_cells_w and (height // k + 1) // 2 <= max_rows:
            return 1.0 / k
        k *= 2
    return 1.0 / k


def scaled(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return resize(image, max(1, round(w * factor)), max(1, round(h * factor)))
