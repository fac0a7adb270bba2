"""Sweeps: the seed's ablations, guidance scale x guidance start step, as one grid.

Every grid point is a run folder (same seed, so the same x_T and step noise), under one sweep
folder with ``table.md``, ``table.json``, ``grid.png`` (a row per grid point) and the plots:
KID and judged share against scale and against the start step (PNG where matplotlib is
installed, and drawn in the terminal when stdout is one).

The ``clipterm sweep`` command (:mod:`clipterm.commands.sweep`) and scripts
(``scripts/reproduce_results.py``) both build on these functions.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from clipterm.errors import ConfigError

GRID_COLUMNS = 16
# (config, out_root, label, folder_label) -> (result, run dir); folder_label names the point
RunOne = Callable[[Any, Path, str, str], tuple[Any, Path]]


# ----------------------------------------------------------------------------- parsing
def parse_scales(text: str) -> list[float]:
    """``"1,10,100"`` -> [1.0, 10.0, 100.0]; each a finite number >= 0, none repeated."""
    values: list[float] = []
    for part in _parts(text, "--scale"):
        try:
            v = float(part)
        except ValueError:
            raise ConfigError(f"--scale: {part!r} is not a number") from None
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"--scale: {part} must be a finite number >= 0")
        values.append(v)
    return _unique(values, "--scale")


def parse_guide_from(text: str, train_steps: int) -> list[int | None]:
    """``"1000,600,all"`` -> [1000, 600, None]; None (``all``) guides every step."""
    values: list[int | None] = []
    for part in _parts(text, "--guide-from"):
        if part.lower() in ("all", "none"):
            values.append(None)
            continue
        if not part.isdigit() or not 0 < int(part) <= train_steps:
            raise ConfigError(f"--guide-from: {part!r} must be a whole number in 1..{train_steps} "
                              "or 'all'")
        values.append(int(part))
    return _unique(values, "--guide-from")


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


def varied(cfgs: Sequence[Any]) -> tuple[bool, bool]:
    """(scale varies, guide-from varies) over a sweep's grid; a one-point grid names its scale."""
    by_scale = len({c.scale for c in cfgs}) > 1
    by_start = len({c.guide_from for c in cfgs}) > 1
    return (by_scale or not by_start), by_start


def point_label(cfg: Any, scale: bool, start: bool) -> str:
    """A grid point in words, for the grid's rows and the progress: ``scale 0.3, t < 500``."""
    parts = [f"scale {cfg.scale:g}"] if scale else []
    if start:
        parts.append(guide_from_label(cfg.guide_from, cfg.train_steps))
    return ", ".join(parts)


def point_folder_label(cfg: Any, scale: bool, start: bool) -> str:
    """What ends a grid point's run folder name: ``scale-0.3``, ``from-500``, ``from-all``."""
    parts = [f"scale-{cfg.scale:g}"] if scale else []
    if start:
        g = cfg.guide_from
        parts.append("from-all" if g is None or g >= cfg.train_steps else f"from-{g}")
    return "-".join(parts)


# ----------------------------------------------------------------------------- the grid
def build_configs(spec: Any, *, method: str, prompt: str | None, distractors: Sequence[str] | None,
                  scales: Sequence[float] | None, guide_froms: Sequence[int | None],
                  preset: str | None, train_steps: int, **fields: Any) -> list[Any]:
    """One validated config per (scale, guide-from), scale-major. ``scales=None``: the method's
    default scale (the pack's, or the preset's)."""
    from clipterm.api import make_config
    from clipterm.config import GUIDED_METHODS

    if method not in GUIDED_METHODS:
        raise ConfigError(f"sweep varies the guidance scale and start step, which only "
                          f"{' and '.join(GUIDED_METHODS)} use (got --method {method})")
    base = make_config(spec, prompt=prompt, distractors=distractors, method=method,
                       preset=preset, **fields)
    out = []
    for s in (scales if scales else [base.scale]):
        for g in guide_froms:
            out.append(replace(base, scale=float(s),
                               guide_from=g if g is not None else base.train_steps))
    return out


def sweep_rows(results: Sequence[tuple[Any, Path]], evaluator: Any = None) -> list[dict[str, Any]]:
    """A row per grid point: scale, guide-from, time, mean target probability (+ evaluation)."""
    rows = []
    for result, run_dir in results:
        cfg = result.config
        n = len(result.indices)
        row: dict[str, Any] = {
            "method": cfg.method,
            "scale": cfg.scale,
            "guide_from": cfg.guide_from,
            "n": n,
            "seconds": round(result.seconds, 3),
            "mean_target_prob": round(result.mean_target_prob, 4) if n else None,
            "run_dir": str(run_dir),
        }
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
        "prompt": cfg.prompt if cfg else "",
        "captions": list(cfg.captions) if cfg else [],
        "seed": cfg.seed if cfg else None,
        "steps": cfg.steps if cfg else None,
        "sampler": cfg.sampler if cfg else None,
        "train_steps": int(train_steps),
        "device": first.device if first else "",
        "evaluation": evaluator.describe() if evaluator is not None else None,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "rows": sweep_rows(results, evaluator),
    }


def sweep_markdown(table: dict[str, Any]) -> str:
    from clipterm.compare import EVAL_HEAD, eval_cells  # lazy: keeps `clipterm --help` numpy-free
    rows = table["rows"]
    has_eval = any("kid_mean" in r for r in rows)
    head = ["scale", "guide from", "n", "seconds", "mean p(target)"]
    if has_eval:
        head += EVAL_HEAD
    from clipterm.sanitize import printable, quoted

    train_steps = int(table.get("train_steps") or 1000)
    distractors = ", ".join(printable(c, 40) for c in table["captions"][1:])
    lines = [
        f"{printable(table['method'])} sweep, prompt {quoted(table['prompt'], 80)} against "
        f"{distractors or 'no distractors'}; seed {table['seed']}, "
        f"{table['steps']} {table['sampler']} steps, device {printable(table['device'])}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        p = r.get("mean_target_prob")
        cells = [f"{r['scale']:g}", guide_from_label(r["guide_from"], train_steps), str(r["n"]),
                 f"{r['seconds']:.1f}", f"{p:.3f}" if p is not None else "-"]
        if has_eval:
            cells += eval_cells(r)
        lines.append("| " + " | ".join(cells) + " |")
    if table.get("evaluation"):
        lines += ["", f"evaluation: {printable(table['evaluation'])}"]
    return "\n".join(lines) + "\n"


def sweep_plots(table: dict[str, Any]) -> list[tuple[str, Any]]:
    """(file stem, LinePlot) for every (quantity, varied parameter) the table supports.

    KID and judged share (and the mean CLIP probability) against scale (log axis, a curve per
    start step) and against the start step (a curve per scale), where that parameter varies.
    """
    from clipterm.plots import sweep_plot
    from clipterm.sanitize import printable, quoted

    train_steps = int(table.get("train_steps") or 1000)
    rows = [dict(r, guide_from_x=r["guide_from"] if r["guide_from"] is not None else train_steps)
            for r in table["rows"]]
    scales = {r["scale"] for r in rows}
    starts = {r["guide_from_x"] for r in rows}
    quantities = [("kid", "kid_mean", "KID", "kid_std"),
                  ("judged-share", "judged_share", "judged share of the target", None),
                  ("clip-prob", "mean_target_prob", "mean final CLIP p(target)", None)]
    what = f"{printable(table['method'], 30)}, {quoted(table['prompt'], 60)}"
    out = []
    for stem, key, label, err in quantities:
        if not any(r.get(key) is not None for r in rows):
            continue
        if len(scales) > 1:
            positive = all(s > 0 for s in scales)
            out.append((f"{stem}-vs-scale", sweep_plot(
                rows, "scale", key, "guide_from", f"{label} vs guidance scale ({what})",
                "guidance scale", label, logx=positive, error=err,
                label_of=lambda g: f"guide {guide_from_label(g, train_steps)}")))
        if len(starts) > 1:
            out.append((f"{stem}-vs-guide-from", sweep_plot(
                rows, "guide_from_x", key, "scale",
                f"{label} vs guidance start ({what})",
                f"guidance starts at timestep (of {train_steps})", label, error=err,
                label_of=lambda s: f"scale {s:g}")))
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
        scale, start = varied([r.config for r, _ in results])
        grid = labelled_rows_grid([r.images[:GRID_COLUMNS] for r in done],
                                  [point_label(r.config, scale, start) for r in done])
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
    scale, start = varied(cfgs)
    for cfg in cfgs:
        results.append(run_one(cfg, folder / "runs", point_label(cfg, True, True),
                               point_folder_label(cfg, scale, start)))
    return sweep_table(results, evaluator, pack_name, train_steps), results
