"""Sweeps: the seed's ablations (guidance scale x guidance start step) and the other knobs of a
guided run (guide every k-th step, an init image's strength, an image prompt's weight), as one
grid.

Every grid point is a run folder (same seed, so the same x_T and step noise), under one sweep
folder with ``table.md``, ``table.json``, ``grid.png`` (a row per grid point) and the plots:
KID and judged share against every varied value (PNG where matplotlib is installed, and drawn
in the terminal when stdout is one).

The ``clipterm sweep`` command (:mod:`clipterm.commands.sweep`) and scripts
(``scripts/reproduce_results.py``) both build on these functions.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clipterm.errors import ConfigError
from clipterm.sanitize import printable

GRID_COLUMNS = 16
# (config, out_root, label, folder_label) -> (result, run dir); folder_label names the point
RunOne = Callable[[Any, Path, str, str], tuple[Any, Path]]


# ----------------------------------------------------------------------------- parsing
def parse_scales(text: str) -> list[float]:
    """``"1,10,100"`` -> [1.0, 10.0, 100.0]; each a finite number >= 0, none repeated."""
    return parse_numbers(text, "--scale", 0.0, None)


def parse_numbers(text: str, flag: str, low: float | None, high: float | None) -> list[float]:
    """Comma-separated finite numbers in [low, high] (None: unbounded), none repeated."""
    values: list[float] = []
    for part in _parts(text, flag):
        try:
            v = float(part)
        except ValueError:
            raise ConfigError(f"{flag}: {printable(repr(part))} is not a number") from None
        if not math.isfinite(v) or (low is not None and v < low) or (high is not None and v > high):
            raise ConfigError(f"{flag}: {printable(part)} must be a finite number {_range(low, high)}")
        values.append(v)
    return _unique(values, flag)


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"in {low:g}..{high:g}"
    if low is not None:
        return f">= {low:g}"
    return f"<= {high:g}" if high is not None else ""


def parse_guide_from(text: str, train_steps: int) -> list[int | None]:
    """``"1000,600,all"`` -> [1000, 600, None]; None (``all``) guides every step."""
    values: list[int | None] = []
    for part in _parts(text, "--guide-from"):
        if part.lower() in ("all", "none"):
            values.append(None)
            continue
        if not _whole(part, 1, train_steps):
            raise ConfigError(f"--guide-from: {printable(repr(part))} must be a whole number in 1..{train_steps} "
                              "or 'all'")
        values.append(int(part))
    return _unique(values, "--guide-from")


def parse_guide_every(text: str, train_steps: int) -> list[int]:
    """``"1,2,5"`` -> [1, 2, 5]: guide every k-th step, k a whole number in 1..train_steps."""
    values: list[int] = []
    for part in _parts(text, "--guide-every"):
        if not _whole(part, 1, train_steps):
            raise ConfigError(f"--guide-every: {printable(repr(part))} must be a whole number in "
                              f"1..{train_steps}")
        values.append(int(part))
    return _unique(values, "--guide-every")


def parse_strengths(text: str) -> list[float]:
    """``"0.25,0.5,0.75"``: how much of the chain re-runs from an init image, each in 0..1."""
    return parse_numbers(text, "--strength", 0.0, 1.0)


def parse_image_weights(text: str) -> list[float]:
    """``"0.5,1,2"``: weights of the image prompt (negative steers away from it; not 0)."""
    values = parse_numbers(text, "--image-weight", -1e6, 1e6)
    if 0 in values:
        raise ConfigError("--image-weight: 0 leaves the image prompt out: sweep without "
                          "--image-prompt for that point")
    return values


def _whole(text: str, low: int, high: int) -> bool:
    """Is ``text`` a whole number in low..high, written in ASCII digits?"""
    return re.fullmatch(r"[0-9]{1,12}", text) is not None and low <= int(text) <= high


def _parts(text: str, flag: str) -> list[str]:
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{flag} is empty: give comma-separated values")
    return parts


def _unique(values: list[Any], flag: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise ConfigError(f"{flag} names a value twice")
    return values


def guide_from_label(value: int | None, train_steps: int = 1000) -> str:
    return "all steps" if value is None or value >= train_steps else f"t < {value}"


# ----------------------------------------------------------------------------- the axes
@dataclass(frozen=True)
class Axis:
    """One option a sweep can vary: the RunConfig field, its flag, and how a value reads."""

    field: str
    flag: str
    head: str  # the table's column and the plots' axis
    stem: str  # plot file names: ``kid-vs-<stem>.png``
    label: Callable[[Any, int], str]  # a grid row, the progress: ``scale 0.3``, ``t < 500``
    folder: Callable[[Any, int], str]  # a run folder's name ends with it: ``scale-0.3``
    legend: Callable[[Any, int], str]  # a curve of another axis's plot
    logx: bool = False

    def value(self, cfg: Any) -> Any:
        return getattr(cfg, self.field)

    def x(self, value: Any, train_steps: int) -> float | None:
        """Where a value sits on a plot's x axis (``all`` steps: the model's train steps)."""
        if self.field == "guide_from" and (value is None or value >= train_steps):
            return float(train_steps)
        return None if value is None else float(value)


def _from_folder(g: int | None, train_steps: int) -> str:
    return "from-all" if g is None or g >= train_steps else f"from-{g}"


AXES: tuple[Axis, ...] = (
    Axis("scale", "--scale", "scale", "scale",
         lambda v, _: f"scale {v:g}", lambda v, _: f"scale-{v:g}",
         lambda v, _: f"scale {v:g}", logx=True),
    Axis("guide_from", "--guide-from", "guide from", "guide-from",
         lambda v, t: guide_from_label(v, t), _from_folder,
         lambda v, t: f"guide {guide_from_label(v, t)}"),
    Axis("guide_every", "--guide-every", "guide every", "guide-every",
         lambda v, _: f"guide every {v}", lambda v, _: f"every-{v}",
         lambda v, _: f"guide every {v}"),
    Axis("strength", "--strength", "strength", "strength",
         lambda v, _: f"strength {v:g}", lambda v, _: f"strength-{v:g}",
         lambda v, _: f"strength {v:g}"),
    Axis("image_weight", "--image-weight", "image weight", "image-weight",
         lambda v, _: f"image weight {v:g}", lambda v, _: f"image-weight-{v:g}",
         lambda v, _: f"image weight {v:g}"),
)
AXIS = {a.field: a for a in AXES}


def varied_axes(cfgs: Sequence[Any]) -> list[Axis]:
    """The axes whose value differs across a sweep's grid; a one-point grid names its scale."""
    axes = [a for a in AXES if len({a.value(c) for c in cfgs}) > 1]
    return axes or [AXIS["scale"]]


def point_label(cfg: Any, axes: Sequence[Axis]) -> str:
    """A grid point in words, for the grid's rows and the progress: ``scale 0.3, t < 500``."""
    return ", ".join(a.label(a.value(cfg), cfg.train_steps) for a in axes)


def point_folder_label(cfg: Any, axes: Sequence[Axis]) -> str:
    """What ends a grid point's run folder name: ``scale-0.3``, ``from-500``, ``every-2``."""
    return "-".join(a.folder(a.value(cfg), cfg.train_steps) for a in axes)


# ----------------------------------------------------------------------------- the grid
def build_configs(spec: Any, *, method: str, prompt: str | Sequence[str] | None,
                  distractors: Sequence[str] | None, scales: Sequence[float] | None,
                  guide_froms: Sequence[int | None], preset: str | None, train_steps: int,
                  guide_everys: Sequence[int] | None = None,
                  strengths: Sequence[float] | None = None,
                  image_weights: Sequence[float] | None = None, **fields: Any) -> list[Any]:
    """One validated config per grid point: the product of the given values, in the order
    scale, guide-from, guide-every, strength, image weight (scale-major). ``scales=None``: the
    method's default scale (the pack's, or the preset's); the other axes left None keep the
    value ``fields`` give (or the default). ``strengths`` need an ``init_image`` in ``fields``,
    ``image_weights`` an ``image_prompt``."""
    from clipterm.api import make_config
    from clipterm.config import GUIDED_METHODS

    if method not in GUIDED_METHODS:
        raise ConfigError(f"sweep varies options of guidance, which only "
                          f"{' and '.join(GUIDED_METHODS)} use (got --method {method})")
    if strengths and not fields.get("init_image"):
        raise ConfigError("--strength varies how much of an --init-image is kept: give "
                          "--init-image IMG", field="strength")
    if image_weights and not fields.get("image_prompt"):
        raise ConfigError("--image-weight varies the weight of an --image-prompt: give "
                          "--image-prompt IMG", field="image_weight")
    base = make_config(spec, prompt=prompt, distractors=distractors, method=method,
                       preset=preset, **fields)
    grid = (
        [float(s) for s in scales] if scales else [base.scale],
        [g if g is not None else base.train_steps for g in guide_froms],
        list(guide_everys) if guide_everys else [base.guide_every],
        [float(s) for s in strengths] if strengths else [base.strength],
        [float(w) for w in image_weights] if image_weights else [base.image_weight],
    )
    return [replace(base, scale=s, guide_from=g, guide_every=k, strength=st, image_weight=w)
            for s, g, k, st, w in itertools.product(*grid)]


def sweep_rows(results: Sequence[tuple[Any, Path]], evaluator: Any = None) -> list[dict[str, Any]]:
    """A row per grid point: the axes' values, time, mean target probability (+ evaluation)."""
    rows = []
    for result, run_dir in results:
        cfg = result.config
        n = len(result.indices)
        row: dict[str, Any] = {"method": cfg.method}
        row.update({a.field: a.value(cfg) for a in AXES})
        row.update({
            "n": n,
            "seconds": round(result.seconds, 3),
            "mean_target_prob": round(result.mean_target_prob, 4) if n else None,
            "run_dir": str(run_dir),
        })
        if evaluator is not None and n:
            row.update(evaluator.evaluate(result.images))
        rows.append(row)
    return rows


def sweep_table(results: Sequence[tuple[Any, Path]], evaluator: Any = None,
                pack_name: str = "", train_steps: int = 1000) -> dict[str, Any]:
    first = results[0][0] if results else None
    cfg = first.config if first else None
    return {
        "clipterm": "sweep",
        "pack": pack_name,
        "method": cfg.method if cfg else "",
        "prompt": cfg.prompt_text if cfg else "",
        "captions": list(cfg.captions) if cfg else [],
        "seed": cfg.seed if cfg else None,
        "steps": cfg.steps if cfg else None,
        "sampler": cfg.sampler if cfg else None,
        "init_image": cfg.init_image if cfg else None,
        "image_prompt": cfg.image_prompt if cfg else None,
        "varied": [a.field for a in varied_axes([r.config for r, _ in results])] if cfg else [],
        "train_steps": int(train_steps),
        "device": first.device if first else "",
        "evaluation": evaluator.describe() if evaluator is not None else None,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "rows": sweep_rows(results, evaluator),
    }


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[Axis]:
    """Scale and guide-from always; the other axes where a row sets them (not the default)."""
    defaults = {"guide_every": (None, 1), "strength": (None,), "image_weight": (None,)}
    return [a for a in AXES if a.field not in defaults
            or any(r.get(a.field) not in defaults[a.field] for r in rows)]


def _cell(axis: Axis, value: Any, train_steps: int) -> str:
    if value is None:
        return "-"
    if axis.field == "guide_from":
        return guide_from_label(value, train_steps)
    return f"{value:g}"


def sweep_markdown(table: dict[str, Any]) -> str:
    from clipterm.compare import (  # lazy: keeps `clipterm --help` numpy-free
        EVAL_HEAD,
        eval_cells,
        image_notes,
        markdown_start,
    )
    from clipterm.sanitize import printable, quoted

    rows = table["rows"]
    has_eval = any("kid_mean" in r for r in rows)
    axes = _columns(rows)
    head = [a.head for a in axes] + ["n", "seconds", "mean p(target)"]
    if has_eval:
        head += EVAL_HEAD
    train_steps = int(table.get("train_steps") or 1000)
    distractors = ", ".join(printable(c, 40) for c in table["captions"][1:])
    lines = markdown_start(
        f"{printable(table['method'])} sweep, prompt {quoted(table['prompt'], 80)} against "
        f"{distractors or 'no distractors'}; seed {table['seed']}, "
        f"{table['steps']} {table['sampler']} steps, device {printable(table['device'])}"
        f"{image_notes(table)}", head)
    for r in rows:
        p = r.get("mean_target_prob")
        cells = [_cell(a, r.get(a.field), train_steps) for a in axes]
        cells += [str(r["n"]), f"{r['seconds']:.1f}", f"{p:.3f}" if p is not None else "-"]
        if has_eval:
            cells += eval_cells(r)
        lines.append("| " + " | ".join(cells) + " |")
    if table.get("evaluation"):
        lines += ["", f"evaluation: {printable(table['evaluation'])}"]
    return "\n".join(lines) + "\n"


def sweep_plots(table: dict[str, Any]) -> list[tuple[str, Any]]:
    """(file stem, LinePlot) for every (quantity, varied value) the table supports.

    KID and judged share (and the mean CLIP probability) against each value that varies (the
    scale on a log axis where all are positive), a curve per combination of the others.
    """
    from clipterm.plots import sweep_plot
    from clipterm.sanitize import printable, quoted

    train_steps = int(table.get("train_steps") or 1000)
    rows = [dict(r) for r in table["rows"]]
    axes = [a for a in AXES if len({r.get(a.field) for r in rows}) > 1]
    for r in rows:
        for a in axes:
            r[f"{a.field}_x"] = a.x(r.get(a.field), train_steps)
            others = [b for b in axes if b is not a]
            r[f"{a.field}_group"] = ", ".join(b.legend(r.get(b.field), train_steps)
                                             for b in others) or None
    quantities = [("kid", "kid_mean", "KID", "kid_std"),
                  ("judged-share", "judged_share", "judged share of the target", None),
                  ("clip-prob", "mean_target_prob", "mean final CLIP p(target)", None)]
    what = f"{printable(table['method'], 30)}, {quoted(table['prompt'], 60)}"
    titles = {"scale": ("guidance scale", "guidance scale"),
              "guide_from": ("guidance start", f"guidance starts at timestep (of {train_steps})"),
              "guide_every": ("guiding every k-th step", "guide every k-th step"),
              "strength": ("init image strength", "strength (share of the chain re-run)"),
              "image_weight": ("image prompt weight", "image prompt weight")}
    out = []
    for stem, key, label, err in quantities:
        if not any(r.get(key) is not None for r in rows):
            continue
        for a in axes:
            logx = a.logx and all(r[f"{a.field}_x"] > 0 for r in rows)
            title, xlabel = titles[a.field]
            out.append((f"{stem}-vs-{a.stem}", sweep_plot(
                rows, f"{a.field}_x", key, f"{a.field}_group", f"{label} vs {title} ({what})",
                xlabel, label, logx=logx, error=err,
                label_of=lambda g, label=label: g if g is not None else label)))
    return out


def write_sweep(folder: Path, table: dict[str, Any], results: Sequence[tuple[Any, Path]],
                png: bool | None = None) -> list[Path]:
    """Write table.md, table.json, grid.png (a labelled row per grid point) and the plots into
    ``folder``; returns the plot PNGs. Nothing existing is replaced.

    ``png=None`` writes PNG plots when matplotlib is installed; True requires it.
    """
    from clipterm.compare import labelled_rows_grid
    from clipterm.output import atomic_write_bytes, atomic_write_json, read_run, save_png
    from clipterm.plots import have_matplotlib, prob_trace_plot, render_png

    folder.mkdir(parents=True, exist_ok=True)
    done = [r for r, _ in results if len(r.images)]
    if done:
        axes = varied_axes([r.config for r, _ in results])
        grid = labelled_rows_grid([r.images[:GRID_COLUMNS] for r in done],
                                  [point_label(r.config, axes) for r in done])
        save_png(folder / "grid.png", grid, replace=False)
    atomic_write_json(folder / "table.json", table, replace=False)
    atomic_write_bytes(folder / "table.md", sweep_markdown(table).encode(), replace=False)
    written: list[Path] = []
    if png is False or (png is None and not have_matplotlib()):
        return written
    for stem, plot in sweep_plots(table):
        atomic_write_bytes(folder / f"{stem}.png", render_png(plot), replace=False)
        written.append(folder / f"{stem}.png")
    for _, run_dir in results:
        info = read_run(run_dir)
        if info.get("prob_trace"):
            path = Path(run_dir) / "prob-trace.png"
            atomic_write_bytes(path, render_png(prob_trace_plot(info)), replace=False)
            written.append(path)
    return written


def run_sweep(cfgs: Sequence[Any], folder: Path, run_one: RunOne, evaluator: Any = None,
              pack_name: str = "", train_steps: int = 1000) -> tuple[dict[str, Any], list]:
    """Run every config (run folders under ``folder/runs``); returns (table, results)."""
    results = []
    axes = varied_axes(cfgs)
    shown = [a for a in AXES if a.field in ("scale", "guide_from") or a in axes]
    for cfg in cfgs:
        results.append(run_one(cfg, folder / "runs", point_label(cfg, shown),
                               point_folder_label(cfg, axes)))
    return sweep_table(results, evaluator, pack_name, train_steps), results
