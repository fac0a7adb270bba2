"""Curves in a terminal: braille dots (2 x 4 per character cell), one colour per curve.

The one terminal drawing of line plots, shared by ``clipterm plot`` (through
:func:`clipterm.plots.terminal_plot`) and the app's live probability trace, so both draw the
per-caption probability over the steps the same way: same dots, same colour for the same
caption (:func:`caption_style`), the target caption drawn last and bold. It needs only rich.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

# Colours cycled over curves (rich style names); caption i of a trace always gets colour i.
CURVE_COLOURS = ("bright_red", "bright_green", "bright_blue", "bright_yellow", "bright_magenta",
                 "bright_cyan", "red", "green", "blue", "yellow", "magenta", "cyan")
BRAILLE_BASE = 0x2800
# Bit of the braille dot at (column, row) inside a 2 x 4 cell.
BRAILLE_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@dataclass
class Curve:
    """One curve: ``ys[i]`` at ``xs[i]``, drawn in ``style`` (a rich style string)."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    style: str = ""
    highlight: bool = False


def curve_style(index: int, highlight: bool = False) -> str:
    style = CURVE_COLOURS[index % len(CURVE_COLOURS)]
    return f"bold {style}" if highlight else style


def caption_style(index: int) -> str:
    """The style of caption ``index`` of a probability trace (0 = the target, bold)."""
    return curve_style(index, highlight=index == 0)


def fmt(v: float) -> str:
    if v == 0 or (1e-3 <= abs(v) < 1e5):
        return f"{v:.4g}"
    return f"{v:.2e}"


def finite(v: object) -> bool:
    try:
        return math.isfinite(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def braille_rows(curves: Sequence[Curve], width: int, height: int, *,
                 x_range: tuple[float, float], y_range: tuple[float, float],
                 logx: bool = False, invert_x: bool = False) -> list[list[tuple[str, str]]]:
    """``height`` rows of ``width`` (character, style) cells with the curves in braille dots.

    Curves are drawn in order (a later curve's colour wins a shared cell): put the highlighted
    one last. ``x_range`` is in plotted units (log10 of x when ``logx``).
    """
    x_lo, x_hi = x_range
    y_lo, y_hi = y_range
    dots_w, dots_h = width * 2, height * 4

    def tx(x: float) -> float:
        return math.log10(x) if logx else x

    def to_dot(x: float, y: float) -> tuple[int, int]:
        fx = (tx(x) - x_lo) / (x_hi - x_lo)
        if invert_x:
            fx = 1 - fx
        fy = (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo)
        return round(fx * (dots_w - 1)), round((1 - fy) * (dots_h - 1))

    masks = [[0] * width for _ in range(height)]
    owner: list[list[str | None]] = [[None] * width for _ in range(height)]

    def dot(px: int, py: int, style: str) -> None:
        cx, cy = px // 2, py // 4
        masks[cy][cx] |= BRAILLE_BITS[px % 2][py % 4]
        owner[cy][cx] = style

    for c in curves:
        pts = [to_dot(float(x), float(y)) for x, y in zip(c.xs, c.ys, strict=True)
               if finite(x) and finite(y) and (not logx or float(x) > 0)]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            n = max(abs(x1 - x0), abs(y1 - y0), 1)
            for k in range(n + 1):
                dot(round(x0 + (x1 - x0) * k / n), round(y0 + (y1 - y0) * k / n), c.style)
        if len(pts) == 1:
            dot(*pts[0], c.style)
    return [[(chr(BRAILLE_BASE + masks[r][col]) if masks[r][col] else " ", owner[r][col] or "")
             for col in range(width)] for r in range(height)]


def draw_plot(curves: Sequence[Curve], width: int = 60, height: int = 14, *, title: str = "",
              xlabel: str = "", ylabel: str = "", ylim: tuple[float, float] | None = None,
              logx: bool = False, invert_x: bool = False, legend: bool = True,
              notes: Sequence[str] = (), base_style: str = "") -> Text:
    """The curves with a y axis, an x axis and (``legend``) a legend, as a rich ``Text``.

    ``width`` x ``height`` is the drawing area in character cells. The highlighted curves are
    drawn last. ``.plain`` of the result gives the uncoloured text.
    """
    width, height = max(int(width), 4), max(int(height), 2)
    ordered = sorted(curves, key=lambda c: c.highlight)
    xs_all = [float(x) for c in ordered for x, y in zip(c.xs, c.ys, strict=True)
              if finite(x) and finite(y) and (not logx or float(x) > 0)]
    ys_all = [float(y) for c in ordered for x, y in zip(c.xs, c.ys, strict=True)
              if finite(x) and finite(y) and (not logx or float(x) > 0)]
    text = Text(style=base_style)
    if title:
        text.append(title + "\n", style="bold")
    if not xs_all:
        text.append("(nothing to plot)\n")
        return text

    def tx(x: float) -> float:
        return math.log10(x) if logx else x

    x_lo, x_hi = min(map(tx, xs_all)), max(map(tx, xs_all))
    y_lo, y_hi = ylim if ylim is not None else (min(ys_all), max(ys_all))
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    rows = braille_rows(ordered, width, height, x_range=(x_lo, x_hi), y_range=(y_lo, y_hi),
                        logx=logx, invert_x=invert_x)
    labels = {0: fmt(y_hi), height // 2: fmt((y_lo + y_hi) / 2), height - 1: fmt(y_lo)}
    pad = max(len(v) for v in labels.values())
    if ylabel:
        text.append(f"{ylabel}\n", style="dim")
    for r, cells in enumerate(rows):
        text.append(f"{labels[r]:>{pad}} ┤" if r in labels else f"{'':>{pad}} │")
        run, run_style = "", ""
        for char, style in cells:  # consecutive cells of one colour become one styled run
            if style != run_style and run:
                text.append(run, style=run_style)
                run = ""
            run, run_style = run + char, style
        text.append(run + "\n", style=run_style)
    text.append(f"{'':>{pad}} └" + "─" * width + "\n")
    left, right = (x_hi, x_lo) if invert_x else (x_lo, x_hi)
    lo_label = fmt(10**left if logx else left)
    hi_label = fmt(10**right if logx else right)
    middle = xlabel + (" (log)" if logx else "")
    gap = max(width - len(lo_label) - len(hi_label) - len(middle), 2)
    text.append(f"{'':>{pad}}  {lo_label}{' ' * (gap // 2)}{middle}"
                f"{' ' * (gap - gap // 2)}{hi_label}\n", style="dim")
    if legend:
        for c in curves:
            last = f" {fmt(float(c.ys[-1]))}" if len(c.ys) else ""
            text.append("  ■ ", style=c.style)
            text.append(f"{c.name}{last}\n", style="bold" if c.highlight else "")
    for note in notes:
        text.append(f"  {note}\n", style="dim")
    return text


def trace_curves(captions: Sequence[str], steps: Sequence[float],
                 probs: Sequence[Sequence[float]]) -> list[Curve]:
    """One curve per caption of a probability trace: ``probs[s][i]`` is caption i's
    probability at ``steps[s]``; caption 0 (the target) highlighted."""
    return [Curve(name=c, xs=list(steps), ys=[float(row[i]) for row in probs],
                  style=caption_style(i), highlight=i == 0)
            for i, c in enumerate(captions)]


def draw_trace(captions: Sequence[str], steps: Sequence[float], probs: Sequence[Sequence[float]],
               width: int = 60, height: int = 14, *, title: str = "",
               xlabel: str = "sampling step", legend: bool = True, base_style: str = "") -> Text:
    """The per-caption probability over the steps (the poster's last figure), y in [0, 1]."""
    return draw_plot(trace_curves(captions, steps, probs), width, height, title=title,
                     xlabel=xlabel, ylabel="p(caption)" if legend else "", ylim=(0.0, 1.0),
                     legend=legend, base_style=base_style)
