"""Method comparison: the same x_T through several methods, one table and one grid."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipterm.events import RunResult
from clipterm.output import (
    atomic_write_bytes,
    atomic_write_json,
    new_run_dir,
    rows_grid,
    save_png,
    slug,
)

GRID_COLUMNS = 16


def compare_table(results: Sequence[tuple[RunResult, Path]], evaluator: Any = None) -> dict[str, Any]:
    """Rows of: method, samples, seconds, seconds per sample, mean target probability
    (and, with an evaluator, KID mean/std, judged share and confidence)."""
    rows = []
    for result, run_dir in results:
        cfg = result.config
        n = len(result.indices)
        row: dict[str, Any] = {
            "method": cfg.method,
            "n": n,
            "seconds": round(result.seconds, 3),
            "seconds_per_sample": round(result.seconds / n, 4) if n else None,
            "mean_target_prob": round(result.mean_target_prob, 4) if n else None,
            "scale": cfg.scale,
            "steps": cfg.steps,
            "sampler": cfg.sampler,
            "run_dir": str(run_dir),
        }
        if evaluator is not None and n:
            row.update(evaluator.evaluate(result.images))
        rows.append(row)
    first = results[0][0].config if results else None
    return {
        "prompt": first.prompt if first else "",
        "captions": list(first.captions) if first else [],
        "seed": first.seed if first else None,
        "device": results[0][0].device if results else "",
        "evaluation": evaluator.describe() if evaluator is not None else None,
        "rows": rows,
    }


EVAL_HEAD = ["KID (mean ± std)", "judged share", "judge confidence"]


def eval_cells(row: dict[str, Any]) -> list[str]:
    """The evaluation columns (EVAL_HEAD) of a table row, '-' where a value is missing."""
    return [
        f"{row['kid_mean']:.4f} ± {row['kid_std']:.4f}" if "kid_mean" in row else "-",
        f"{row['judged_share']:.2f}" if row.get("judged_share") is not None else "-",
        f"{row['judge_confidence']:.3f}" if row.get("judge_confidence") is not None else "-",
    ]


def table_markdown(table: dict[str, Any]) -> str:
    rows = table["rows"]
    has_eval = any("kid_mean" in r for r in rows)
    head = ["method", "n", "seconds", "s/sample", "mean p(target)"]
    if has_eval:
        head += EVAL_HEAD
    lines = [
        f"prompt: {table['prompt']!r}; captions: {', '.join(table['captions'])}; "
        f"seed {table['seed']}; device {table['device']}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [r["method"], str(r["n"]), f"{r['seconds']:.2f}",
                 f"{r['seconds_per_sample']:.3f}" if r["seconds_per_sample"] is not None else "-",
                 f"{r['mean_target_prob']:.3f}" if r["mean_target_prob"] is not None else "-"]
        if has_eval:
            cells += eval_cells(r)
        lines.append("| " + " | ".join(cells) + " |")
    if table.get("evaluation"):
        lines += ["", f"evaluation: {table['evaluation']}"]
    return "\n".join(lines) + "\n"


def write_compare(out_root: Path, pack_name: str, results: Sequence[tuple[RunResult, Path]],
                  table: dict[str, Any]) -> Path:
    """A folder with grid.png (a row per method), table.md and table.json."""
    folder = new_run_dir(out_root, f"compare-{slug(table['prompt'])}")
    rows = [r.images[:GRID_COLUMNS] for r, _ in results if len(r.images)]
    if rows:
        save_png(folder / "grid.png", rows_grid(rows))
    table = dict(table, pack=pack_name, created=_dt.datetime.now().isoformat(timespec="seconds"),
                 grid_rows=[r.config.method for r, _ in results if len(r.images)])
    atomic_write_json(folder / "table.json", table)
    atomic_write_bytes(folder / "table.md", table_markdown(table).encode())
    return folder
