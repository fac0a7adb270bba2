"""Method comparison: the same x_T through several methods, one table and one grid."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipterm.events import RunResult
from clipterm.output import (
    atomic_write_bytes,
    atomic_write_json,
    new_run_dir,
    rows_grid,
    save_png,
    slug,
)
from clipterm.sanitize import printable, quoted

GRID_COLUMNS = 16
LABEL_MIN_ROW_PX = 24  # rows are enlarged (nearest) until a label fits beside them


def labelled_rows_grid(rows: Sequence[np.ndarray], labels: Sequence[str], *,
                       scale: int | None = None, font_size: int = 12) -> np.ndarray:
    """One row of images per entry (:func:`clipterm.output.rows_grid`), each with its label
    on the left (white on black). Small images are enlarged by a whole factor (nearest
    neighbour, pixels stay exact) so a label fits a row; ``scale`` forces the factor."""
    from PIL import Image, ImageDraw, ImageFont

    grid = rows_grid(rows)
    row_h = grid.shape[0] / len(rows)
    factor = scale or max(1, -(-LABEL_MIN_ROW_PX // int(row_h)))
    img = Image.fromarray(grid)
    if factor > 1:
        img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    try:
        font = ImageFont.load_default(size=font_size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: the bitmap font
        font = ImageFont.load_default()
    shown = [printable(label, 28) for label in labels]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [probe.textbbox((0, 0), text, font=font) for text in shown]
    margin = max((b[2] - b[0] for b in boxes), default=0) + 12
    canvas = Image.new("RGB", (img.width + margin, img.height), (0, 0, 0))
    canvas.paste(img, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    step = img.height / len(rows)
    for i, (text, box) in enumerate(zip(shown, boxes, strict=True)):
        top = step * i + (step - (box[3] - box[1])) / 2 - box[1]
        draw.text((6, int(top)), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


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
            **{key: getattr(cfg, key) for key in RECORDED},
            "run_dir": str(run_dir),
        }
        if evaluator is not None and n:
            row.update(evaluator.evaluate(result.images))
        rows.append(row)
    first = results[0][0].config if results else None
    return {
        "prompt": first.prompt_text if first else "",
        "init_image": first.init_image if first else None,
        "image_prompt": next((r.config.image_prompt for r, _ in results
                              if r.config.image_prompt), None),
        "captions": list(first.captions) if first else [],
        "seed": first.seed if first else None,
        "train_steps": first.train_steps if first else 1000,
        "device": results[0][0].device if results else "",
        "evaluation": evaluator.describe() if evaluator is not None else None,
        "rows": rows,
    }


# the options a row records beside method, scale, steps and sampler (None: the method lacks it)
RECORDED = ("guide_from", "guide_every", "init_image", "strength", "image_prompt",
            "image_weight")
OPTION_HEAD = {"guide_from": "guide from", "guide_every": "guide every",
               "strength": "strength", "image_weight": "image weight"}


EVAL_HEAD = ["KID (mean ± std)", "judged share", "judge confidence"]


def eval_cells(row: dict[str, Any]) -> list[str]:
    """The evaluation columns (EVAL_HEAD) of a table row, '-' where a value is missing."""
    return [
        f"{row['kid_mean']:.4f} ± {row['kid_std']:.4f}" if "kid_mean" in row else "-",
        f"{row['judged_share']:.2f}" if row.get("judged_share") is not None else "-",
        f"{row['judge_confidence']:.3f}" if row.get("judge_confidence") is not None else "-",
    ]


def image_notes(table: dict[str, Any]) -> str:
    """"; init image '...'; image prompt '...'" for a table whose runs used them."""
    return "".join(f"; {what} {quoted(table[key], 60)}" for key, what in
                   (("init_image", "init image"), ("image_prompt", "image prompt"))
                   if table.get(key))


def markdown_start(title: str, head: Sequence[str]) -> list[str]:
    """A markdown table's first lines: its title, a blank line, the head and the rule."""
    return [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def table_markdown(table: dict[str, Any]) -> str:
    rows = table["rows"]
    has_eval = any("kid_mean" in r for r in rows)
    train = int(table.get("train_steps") or 1000)
    options = [k for k, name in OPTION_HEAD.items() if any(_set(k, r.get(k), train) for r in rows)]
    head = ["method", *(OPTION_HEAD[k] for k in options), "n", "seconds", "s/sample",
            "mean p(target)"]
    if has_eval:
        head += EVAL_HEAD
    lines = markdown_start(
        f"prompt: {quoted(table['prompt'], 80)}; captions: "
        f"{', '.join(printable(c, 40) for c in table['captions'])}; "
        f"seed {table['seed']}; device {printable(table['device'])}{image_notes(table)}", head)
    for r in rows:
        cells = [printable(r["method"]), *(_option_cell(k, r.get(k), train) for k in options),
                 str(r["n"]), f"{r['seconds']:.2f}",
                 f"{r['seconds_per_sample']:.3f}" if r["seconds_per_sample"] is not None else "-",
                 f"{r['mean_target_prob']:.3f}" if r["mean_target_prob"] is not None else "-"]
        if has_eval:
            cells += eval_cells(r)
        lines.append("| " + " | ".join(cells) + " |")
    if table.get("evaluation"):
        lines += ["", f"evaluation: {printable(table['evaluation'])}"]
    return "\n".join(lines) + "\n"


def _set(key: str, value: Any, train_steps: int) -> bool:
    """Is an option set to other than what a run does without it?"""
    default = {"guide_from": train_steps, "guide_every": 1}.get(key)
    return value is not None and value != default


def _option_cell(key: str, value: Any, train_steps: int) -> str:
    if value is None:
        return "-"
    if key == "guide_from":
        return "all steps" if value >= train_steps else f"t < {value}"
    return f"{value:g}"


def write_compare(out_root: Path, pack_name: str, results: Sequence[tuple[RunResult, Path]],
                  table: dict[str, Any]) -> Path:
    """A folder with grid.png (a row per method, labelled), table.md and table.json."""
    folder = new_run_dir(out_root, f"compare-{slug(table['prompt'])}")
    shown = [(r.images[:GRID_COLUMNS], r.config.method) for r, _ in results if len(r.images)]
    if shown:
        save_png(folder / "grid.png", labelled_rows_grid([imgs for imgs, _ in shown],
                                                         [m for _, m in shown]), replace=False)
    table = dict(table, pack=pack_name, created=_dt.datetime.now().isoformat(timespec="seconds"),
                 grid_rows=[m for _, m in shown])
    atomic_write_json(folder / "table.json", table, replace=False)
    atomic_write_bytes(folder / "table.md", table_markdown(table).encode(), replace=False)
    return folder
