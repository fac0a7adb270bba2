"""Plots: per-caption probability over steps, and sweep curves (KID vs scale, judged share vs start).

Two renderers for the same data:

- :func:`save_line_plot` writes a PNG with matplotlib (the optional ``plots`` extra; a missing
  matplotlib is a one-line :class:`~clipterm.errors.UserError`);
- :func:`terminal_plot` draws the curves with unicode braille dots (2 x 4 dots per character
  cell), coloured per series with rich styles, with :mod:`clipterm.trace_plot` (the drawing the
  app's live probability trace uses too); it needs nothing beyond rich.

Data in: a :class:`Series` per curve (name, x values, y values, optional error bars).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipterm.errors import UserError


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
def terminal_plot(plot: LinePlot, width: int = 60, height: int = 14) -> Any:
    """The curves as a rich ``Text`` of braille dots; ``.plain`` gives the uncoloured string.

    ``width`` x ``height`` is the drawing area in character cells (each 2 x 4 dots). Where curves
    cross, a cell takes the colour of the curve drawn last; the highlighted curve is drawn last.
    Drawn by :func:`clipterm.trace_plot.draw_plot`, as the app draws its live trace.
    """
    from clipterm.trace_plot import Curve, curve_style, draw_plot

    curves = [Curve(s.name, s.xs, s.ys, curve_style(i, s.highlight), s.highlight)
              for i, s in enumerate(plot.series)]
    return draw_plot(curves, width, height, title=plot.title, xlabel=plot.xlabel,
                     ylabel=plot.ylabel, ylim=plot.ylim, logx=plot.logx, invert_x=plot.invert_x,
                     notes=plot.notes)


def print_terminal_plot(plot: LinePlot, width: int | None = None, height: int = 14) -> None:
    """Print ``plot`` to stdout with colour (for an interactive terminal)."""
    import shutil

    from rich.console import Console

    cols = shutil.get_terminal_size((80, 24)).columns
    Console().print(terminal_plot(plot, width=width or max(min(cols - 14, 90), 20),
                                  height=height), end="")
