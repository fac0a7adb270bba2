"""A run folder read back for the app (``clipterm open RUN_DIR``, or the app's Open action).

A run folder comes from outside: run.json may be damaged, hand-edited or hostile. Everything is
checked: the file's size, its JSON, the config (rebuilt and checked by the core's
``RunConfig.from_dict``), every sample file name (a plain ``sample-NNNNN.png`` inside the
folder, never a path elsewhere), every image (size-checked before it is decoded, the same shape
as the others), the probabilities and the trace (numbers in [0, 1] of the right length).
Anything wrong ends in one :class:`~clipterm.errors.UserError` line. No Textual here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipterm.config import RunConfig
from clipterm.errors import ConfigError, UserError
from clipterm.events import RunResult
from clipterm.sanitize import printable
from clipterm.tui.runner import ProbTrace

MAX_RUN_JSON_BYTES = 64 * 2**20
MAX_SAMPLES_SHOWN = 4096  # more would not help on a terminal, and cost memory
SAMPLE_NAME = re.compile(r"sample-\d{5,9}\.png")


@dataclass
class PastRun:
    """What the app needs to show a past run as if it had just finished."""

    folder: Path
    pack_name: str
    result: RunResult
    trace: ProbTrace
    status: str
    skipped: int = 0  # samples listed but not shown (over MAX_SAMPLES_SHOWN)


def _fail(folder: Path, reason: str) -> UserError:
    return UserError(f"{printable(folder)}: {reason}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def read_run_json(folder: Path) -> dict[str, Any]:
    path = folder / "run.json"
    if not folder.is_dir():
        raise UserError(f"{printable(folder)} is not a folder")
    if not path.is_file():
        raise _fail(folder, "not a clipterm run folder (no run.json)")
    try:
        size = path.stat().st_size
        if size > MAX_RUN_JSON_BYTES:
            raise _fail(folder, f"run.json is {size // 2**20} MB: too large to be a run record")
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _fail(folder, "run.json is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _fail(folder, f"run.json is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise _fail(folder, "run.json is nested too deeply") from None
    except OSError as exc:
        raise _fail(folder, f"cannot read run.json ({exc.strerror})") from None
    if not isinstance(data, dict) or data.get("clipterm") not in (None, "run"):
        raise _fail(folder, "run.json is not a clipterm run record")
    return data


def load_image(folder: Path, name: Any) -> np.ndarray:
    """One sample PNG of the folder as uint8 RGB, checked before it is decoded."""
    if not isinstance(name, str) or not SAMPLE_NAME.fullmatch(name):
        raise _fail(folder, f"run.json names a sample file {printable(repr(name), 60)}: "
                    "expected sample-NNNNN.png in the folder")
    path = folder / name
    if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
        raise _fail(folder, f"{printable(name)} leads outside the folder")
    from PIL import Image

    from clipterm.images import check_image

    check_image(path, "sample")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_past_run(folder: str | Path) -> PastRun:
    """Read a run folder for the app; one :class:`UserError` line when it cannot be shown."""
    folder = Path(folder).expanduser()
    info = read_run_json(folder)
    try:
        cfg = RunConfig.from_dict(info.get("config"))  # type: ignore[arg-type]
    except ConfigError as exc:
        raise _fail(folder, f"run.json's config: {exc}") from None
    except TypeError:
        raise _fail(folder, "run.json's config is not a clipterm config") from None
    captions = cfg.captions
    samples = info.get("samples")
    if not isinstance(samples, list):
        raise _fail(folder, "run.json lists no samples")
    entries = [s for s in samples if isinstance(s, dict)]
    if len(entries) != len(samples):
        raise _fail(folder, "run.json's samples are not all records")
    skipped = max(0, len(entries) - MAX_SAMPLES_SHOWN)
    entries = entries[:MAX_SAMPLES_SHOWN]
    images, probs, indices = [], [], []
    for s in entries:
        index = s.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 10**9:
            raise _fail(folder, f"a sample index is not a whole number: "
                        f"{printable(repr(index), 40)}")
        img = load_image(folder, s.get("file"))
        if images and img.shape != images[0].shape:
            raise _fail(folder, f"{printable(s.get('file'))} is {img.shape[1]}x{img.shape[0]}, "
                        f"the others {images[0].shape[1]}x{images[0].shape[0]}")
        p = s.get("probs") if isinstance(s.get("probs"), dict) else {}
        row = [_number(p.get(c)) for c in captions]
        probs.append([v if v is not None and 0 <= v <= 1 else math.nan for v in row])
        images.append(img)
        indices.append(index)
    if not images:
        raise _fail(folder, "no finished samples to show")
    trace_rows = []
    for row in info.get("prob_trace") or []:
        if (isinstance(row, list) and len(row) == 3 and isinstance(row[2], list)
                and len(row[2]) == len(captions) and _number(row[0]) is not None):
            values = [_number(v) for v in row[2]]
            if all(v is not None and 0 <= v <= 1 for v in values):
                trace_rows.append((int(row[0]), values))
    timings = info.get("timings") if isinstance(info.get("timings"), dict) else {}
    status = info.get("status") if isinstance(info.get("status"), str) else "unknown"
    losses = [v for v in (info.get("losses") or []) if _number(v) is not None] \
        if isinstance(info.get("losses"), list) else []
    result = RunResult(
        config=cfg,
        images=np.stack(images),
        probs=np.asarray(probs, dtype=np.float32),
        indices=np.asarray(indices, dtype=np.int64),
        completed=status == "complete",
        seconds=_number(timings.get("seconds")) or 0.0,
        device=printable(info.get("device", ""), 40),
        started=printable(info.get("started", ""), 40),
        finished=printable(info.get("finished", ""), 40),
        losses=[float(v) for v in losses],
        prob_trace=[(step, 0, values) for step, values in trace_rows],
    )
    total = cfg.opt_iters if cfg.method == "optimize" and cfg.opt_iters else cfg.steps
    trace = ProbTrace.from_means(captions, trace_rows, total)
    return PastRun(folder=folder, pack_name=printable(info.get("pack", ""), 60), result=result,
                   trace=trace, status=printable(status, 20), skipped=skipped)
