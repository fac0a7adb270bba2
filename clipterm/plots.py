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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipterm.errors import UserError
from clipterm.sanitize import printable


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
    the first batch, target first). The target caption is highlighted. run.json is not trusted:
    a trace or captions of the wrong shape are a one-line UserError, and every caption and
    name is escaped (they reach the terminal and the PNG).
    """
    captions = run_info.get("captions")
    trace = run_info.get("prob_trace")
    if not trace:
        raise UserError("this run has no probability trace (run.json has no prob_trace)")
    if not isinstance(captions, list) or not captions or not all(
            isinstance(c, str) for c in captions):
        raise UserError("run.json: captions must be a non-empty list of strings")
    if not isinstance(trace, list):
        raise UserError("run.json: prob_trace must be a list")
    cfg = run_info.get("config")
    cfg = cfg if isinstance(cfg, dict) else {}
    steps: list[float] = []
    columns: list[list[float]] = [[] for _ in captions]
    for k, row in enumerate(trace):
        probs = row[2] if isinstance(row, list) and len(row) >= 3 else None
        if (not isinstance(probs, list) or len(probs) != len(captions)
                or not all(_is_number(v) for v in (row[0], *probs))):
            raise UserError(f"run.json: prob_trace[{k}] is not [step, timestep, [one "
                            f"probability per caption ({len(captions)})]]")
        steps.append(float(row[0]))
        for i, v in enumerate(probs):
            columns[i].append(math.nan if v is None else float(v))
    method = printable(cfg.get("method", "?"), 30)
    shown = [printable(c, 60) for c in captions]
    series = [Series(name=name, xs=steps, ys=ys, highlight=(i == 0))
              for i, (name, ys) in enumerate(zip(shown, columns, strict=True))]
    label = title or f"{method}: CLIP probability of each caption (target '{shown[0]}')"
    return LinePlot(series=series, title=label,
                    xlabel="optimisation iteration" if cfg.get("method") == "optimize"
                    else "sampling step", ylabel="p(caption)", ylim=(0.0, 1.0))


def _is_number(v: Any) -> bool:
    """A JSON number (or null, which strict JSON writes for NaN); not a bool."""
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


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


def check_png_path(path: str | Path) -> Path:
    """Check, before any work, that a new PNG can be written at ``path``: a name ending in
    .png, nothing there yet (nothing is ever replaced), a writable folder. Returns the path."""
    import tempfile

    target = Path(path).expanduser()
    shown = printable(target)
    if target.is_dir():
        raise UserError(f"--png {shown} is a folder: give a file name, e.g. {shown}/trace.png")
    if target.exists() or target.is_symlink():
        raise UserError(f"--png {shown} exists: clipterm never replaces a file, choose a new name")
    if target.suffix.lower() != ".png":
        raise UserError(f"--png {shown}: the file name must end in .png")
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"--png {shown}: the folder {printable(folder)} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"--png {shown}: cannot write in {printable(folder)} "
                        f"({exc.strerror or exc})") from None
    return target


def _plain_text(text: str) -> str:
    """Text as matplotlib should draw it: no mathtext (a ``$`` is a dollar sign)."""
    return text.replace("$", r"\$")


def render_png(plot: LinePlot, size: tuple[float, float] = (6.4, 4.0)) -> bytes:
    """``plot`` as PNG bytes (matplotlib, Agg backend); the caller writes them (atomically)."""
    import io
    import warnings

    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110)
    try:
        many = len(plot.series) > 4
        for s in plot.series:
            kw: dict[str, Any] = {"label": _plain_text(s.name),
                                  "marker": "o" if len(s.xs) < 12 else None, "markersize": 4}
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
        ax.set_title(_plain_text(plot.title), fontsize=10)
        ax.set_xlabel(_plain_text(plot.xlabel))
        ax.set_ylabel(_plain_text(plot.ylabel))
        ax.grid(True, alpha=0.3)
        if plot.series:
            ax.legend(fontsize=7, ncol=2 if many else 1, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        with warnings.catch_warnings():  # glyphs the font lacks are drawn as boxes
            warnings.simplefilter("ignore", UserWarning)
            fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


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
