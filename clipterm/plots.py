"""Plots: per-caption probability over steps, and sweep curves (KID vs scale, judged share vs start).

Two renderers for the same data:

- :func:`save_line_plot` writes a PNG with matplotlib (the optional ``plots`` extra; a missing
  matplotlib is a one-line :class:`~clipterm.errors.UserError`);
- :func:`terminal_plot` draws the curves with unicode braille dots (2 x 4 dots per character
  cell), coloured per series with rich styles; it needs nothing beyond rich.

Data in: a :class:`Series` per curve (name, x values, y values, optional error bars).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipterm.errors import UserError

# Colours cycled over series (rich style names; matplotlib gets its own default cycle).
TERMINAL_COLOURS = ("bright_red", "bright_green", "bright_blue", "bright_yellow", "bright_magenta",
                    "bright_cyan", "red", "green", "blue", "yellow", "magenta", "cyan")
_BRAILLE_BASE = 0x2800
# Bit of the braille dot at (column, row) inside a 2 x 4 cell.
_BRAILLE_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@dataclass
class Series:
    """One curve: ``ys[i]`` at ``xs[i]``; ``errors`` are symmetric error bars (PNG only)."""

    name: str
    xs: list[float]
    ys: list[float]
    errors: list[float] | None = None
    highlight: bool = False


@dataclass
class LinePlot:
    """Curves with a title and axis labels; ``logx`` for guidance scales spanning decades."""

    series: list[Series]
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    logx: bool = False
    ylim: tuple[float, float] | None = None
    invert_x: bool = False
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- data
def prob_trace_plot(run_info: dict[str, Any], title: str | None = None) -> LinePlot:
    """The per-caption CLIP probability over the steps of a run (the poster's last figure).

    ``run_info`` is a run.json; its ``prob_trace`` holds (step, timestep, mean probabilities of
    the first batch, target first). The target caption is highlighted.
    """
    trace = run_info.get("prob_trace") or []
    captions = list(run_info.get("captions") or [])
    if not trace or not captions:
        raise UserError("this run has no probability trace (run.json has no prob_trace)")
    cfg = run_info.get("config", {})
    phase_opt = cfg.get("method") == "optimize"
    steps = [float(row[0]) for row in trace]
    series = [
        Series(name=c, xs=steps, ys=[float(row[2][i]) for row in trace], highlight=(i == 0))
        for i, c in enumerate(captions)
    ]
    label = title or (f"{cfg.get('method', '?')}: CLIP probability of each caption "
                      f"(target {captions[0]!r})")
    return LinePlot(series=series, title=label,
                    xlabel="optimisation iteration" if phase_opt else "sampling step",
                    ylabel="p(caption)", ylim=(0.0, 1.0))


def sweep_plot(rows: Sequence[dict[str, Any]], x: str, y: str, group: str | None,
               title: str, xlabel: str, ylabel: str, logx: bool = False,
               error: str | None = None, label_of: Any = None) -> LinePlot:
    """Curves of ``row[y]`` against ``row[x]``, one per distinct ``row[group]``.

    Rows with a missing value are skipped; ``label_of(value)`` names a group value.
    """
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get(x) is None or r.get(y) is None:
            continue
        groups.setdefault(r.get(group) if group else None, []).append(r)
    series = []
    for key, members in groups.items():
        members = sorted(members, key=lambda r: float(r[x]))
        name = label_of(key) if label_of else (f"{group} {key}" if group else y)
        errs = [float(r.get(error) or 0.0) for r in members] if error else None
        series.append(Series(name=str(name), xs=[float(r[x]) for r in members],
                             ys=[float(r[y]) for r in members], errors=errs))
    return LinePlot(series=series, title=title, xlabel=xlabel, ylabel=ylabel, logx=logx)


# ----------------------------------------------------------------------------- PNG
def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require_matplotlib() -> None:
    if not have_matplotlib():
        raise UserError("PNG plots need matplotlib: pip install 'clipterm[plots]' "
                        "(terminal plots work without it)")


def save_line_plot(plot: LinePlot, path: str | Path, size: tuple[float, float] = (6.4, 4.0)
                   ) -> Path:
    """Write ``plot`` as a PNG (matplotlib, Agg backend); returns the path."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=size, dpi=110)
    try:
        many = len(plot.series) > 4
        for s in plot.series:
            kw: dict[str, Any] = {"label": s.name, "marker": "o" if len(s.xs) < 12 else None,
                                  "markersize": 4}
            if many:
                kw["linewidth"] = 2.6 if s.highlight else 1.0
                kw["alpha"] = 1.0 if s.highlight else 0.7
            if s.errors is not None and any(e > 0 for e in s.errors):
                ax.errorbar(s.xs, s.ys, yerr=s.errors, capsize=3, **kw)
            else:
                ax.plot(s.xs, s.ys, **kw)
        if plot.logx:
            ax.set_xscale("log")
        if plot.invert_x:
            ax.invert_xaxis()
        if plot.ylim is not None:
            ax.set_ylim(*plot.ylim)
        ax.set_title(plot.title, fontsize=10)
        ax.set_xlabel(plot.xlabel)
        ax.set_ylabel(plot.ylabel)
        ax.grid(True, alpha=0.3)
        if plot.series:
            ax.legend(fontsize=7, ncol=2 if many else 1, loc="best")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------- terminal
def _fmt(v: float) -> str:
    if v == 0 or (1e-3 <= abs(v) < 1e5):
        return f"{v:.4g}"
    return f"{v:.2e}"


def terminal_plot(plot: LinePlot, width: int = 60, height: int = 14) -> Any:
    """The curves as a rich ``Text`` of braille dots; ``.plain`` gives the uncoloured string.

    ``width`` x ``height`` is the drawing area in character cells (each 2 x 4 dots). Where curves
    cross, a cell takes the colour of the curve drawn last; the highlighted curve is drawn last.
    """
    from rich.text import Text

    width, height = max(int(width), 8), max(int(height), 4)
    order = sorted(range(len(plot.series)), key=lambda i: plot.series[i].highlight)
    points = [(i, x, y) for i in order for x, y in zip(plot.series[i].xs, plot.series[i].ys,
                                                      strict=True)
              if _finite(x) and _finite(y) and (not plot.logx or x > 0)]
    text = Text()
    if plot.title:
        text.append(plot.title + "\n", style="bold")
    if not points:
        text.append("(nothing to plot)\n")
        return text

    def tx(x: float) -> float:
        return math.log10(x) if plot.logx else x

    xs = [tx(p[1]) for p in points]
    ys = [p[2] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = plot.ylim if plot.ylim is not None else (min(ys), max(ys))
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    dots_w, dots_h = width * 2, height * 4

    def to_dot(x: float, y: float) -> tuple[int, int]:
        fx = (tx(x) - x_lo) / (x_hi - x_lo)
        if plot.invert_x:
            fx = 1 - fx
        fy = (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo)
        return round(fx * (dots_w - 1)), round((1 - fy) * (dots_h - 1))

    masks = [[0] * width for _ in range(height)]
    owner: list[list[int | None]] = [[None] * width for _ in range(height)]

    def dot(px: int, py: int, who: int) -> None:
        cx, cy = px // 2, py // 4
        masks[cy][cx] |= _BRAILLE_BITS[px % 2][py % 4]
        owner[cy][cx] = who

    for i in order:
        s = plot.series[i]
        pts = [to_dot(x, y) for x, y in zip(s.xs, s.ys, strict=True)
               if _finite(x) and _finite(y) and (not plot.logx or x > 0)]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            n = max(abs(x1 - x0), abs(y1 - y0), 1)
            for k in range(n + 1):
                dot(round(x0 + (x1 - x0) * k / n), round(y0 + (y1 - y0) * k / n), i)
        if len(pts) == 1:
            dot(*pts[0], i)

    labels = {0: _fmt(y_hi), height // 2: _fmt((y_lo + y_hi) / 2), height - 1: _fmt(y_lo)}
    pad = max(len(v) for v in labels.values())
    if plot.ylabel:
        text.append(f"{plot.ylabel}\n", style="dim")
    for row in range(height):
        text.append(f"{labels.get(row, ''):>{pad}} ┤" if row in labels else f"{'':>{pad}} │")
        run, run_style = "", ""
        for col in range(width):  # consecutive cells of one colour become one styled run
            who = owner[row][col]
            char = chr(_BRAILLE_BASE + masks[row][col]) if masks[row][col] else " "
            style = _colour(who, plot.series) if who is not None else ""
            if style != run_style and run:
                text.append(run, style=run_style)
                run = ""
            run, run_style = run + char, style
        text.append(run + "\n", style=run_style)
    text.append(f"{'':>{pad}} └" + "─" * width + "\n")
    left, right = (x_hi, x_lo) if plot.invert_x else (x_lo, x_hi)
    lo_label = _fmt(10**left if plot.logx else left)
    hi_label = _fmt(10**right if plot.logx else right)
    middle = plot.xlabel + (" (log)" if plot.logx else "")
    gap = max(width - len(lo_label) - len(hi_label) - len(middle), 2)
    text.append(f"{'':>{pad}}  {lo_label}{' ' * (gap // 2)}{middle}"
                f"{' ' * (gap - gap // 2)}{hi_label}\n", style="dim")
    for i, s in enumerate(plot.series):
        last = f" {_fmt(s.ys[-1])}" if s.ys else ""
        text.append("  ■ ", style=_colour(i, plot.series))
        text.append(f"{s.name}{last}\n", style="bold" if s.highlight else "")
    for note in plot.notes:
        text.append(f"  {note}\n", style="dim")
    return text


def _colour(index: int, series: Sequence[Series]) -> str:
    style = TERMINAL_COLOURS[index % len(TERMINAL_COLOURS)]
    return f"bold {style}" if series[index].highlight else style


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def print_terminal_plot(plot: LinePlot, width: int | None = None, height: int = 14) -> None:
    """Print ``plot`` to stdout with colour (for an interactive terminal)."""
    import shutil

    from rich.console import Console

    cols = shutil.get_terminal_size((80, 24)).columns
    Console().print(terminal_plot(plot, width=width or max(min(cols - 14, 90), 20),
                                  height=height), end="")
