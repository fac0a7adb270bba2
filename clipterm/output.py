"""Run folders: one PNG per sample (parameters in a PNG text chunk), a grid, and run.json.

Every run gets a new folder under the output root; nothing that exists is overwritten. Files are
written to a temporary name and renamed, so a folder never holds a half-written file. Batches are
written as they finish, and run.json says whether the run completed.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from clipterm.config import SamplingConfig
from clipterm.errors import UserError
from clipterm.events import RunResult

PNG_KEY = "clipterm"


def check_out_dir(out_root: str | Path) -> Path:
    """Fail early (before any model is loaded) if runs cannot be written under ``out_root``."""
    root = Path(out_root).expanduser()
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {root} is a file, not a folder")
    probe = root
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--out {root}: {probe} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise UserError(f"--out {root} is not writable ({exc.strerror})") from None
    return root


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("clipterm", "torch", "diffusers", "open_clip_torch", "numpy", "pillow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def slug(text: str, limit: int = 32) -> str:
    s = re.sub(r"[^a-zA-Z0-9]+", "-", text.strip().lower()).strip("-")
    return s[:limit].rstrip("-") or "run"


def new_run_dir(out_root: Path, label: str) -> Path:
    """Create a fresh folder ``out_root/YYYYmmdd-HHMMSS-label[-k]``; never reuses one."""
    out_root.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{label}"
    for k in range(1, 10_000):
        path = out_root / (base if k == 1 else f"{base}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not make a new run folder under {out_root}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=_json_default) + "\n").encode())


def save_png(path: Path, image: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Save a uint8 [H, W, 3] image as PNG, with optional text chunks, atomically."""
    import io

    info = PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(path, buf.getvalue())


def read_png_params(path: Path) -> dict[str, Any]:
    """The parameters clipterm stored in a sample PNG."""
    with Image.open(path) as im:
        return json.loads(im.text[PNG_KEY])


def make_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile uint8 [N, H, W, 3] images into one uint8 image (torchvision's make_grid)."""
    import torch
    from torchvision.utils import make_grid as tv_make_grid

    if len(images) == 0:
        raise ValueError("no images to tile")
    nrow = nrow or math.ceil(math.sqrt(len(images)))
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    grid = tv_make_grid(t, nrow=nrow, padding=padding, pad_value=0)
    return grid.permute(1, 2, 0).numpy().astype(np.uint8)


def rows_grid(rows: Sequence[np.ndarray], padding: int = 2) -> np.ndarray:
    """One row per entry (e.g. per method), all rows the same width."""
    width = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    filled = []
    for r in rows:
        if len(r) < width:
            r = np.concatenate([r, np.zeros((width - len(r), h, w, 3), np.uint8)])
        filled.append(r)
    return make_grid(np.concatenate(filled), nrow=width, padding=padding)


class RunWriter:
    """Writes one run folder incrementally: batches as they finish, then grid and run.json."""

    def __init__(self, out_root: str | Path, cfg: SamplingConfig, pack_name: str,
                 extra: dict[str, Any] | None = None, run_dir: Path | None = None):
        self.cfg = cfg
        self.pack_name = pack_name
        self.extra = dict(extra or {})
        self.dir = run_dir or new_run_dir(Path(out_root), f"{cfg.method}-{slug(cfg.prompt)}")
        self.created = _dt.datetime.now().isoformat(timespec="seconds")
        self.samples: list[dict[str, Any]] = []
        self._write_json(status="running")

    def add_batch(self, indices: Sequence[int], images: np.ndarray, probs: np.ndarray) -> None:
        captions = self.cfg.captions
        for i, img, p in zip(indices, images, probs, strict=True):
            name = f"sample-{int(i):05d}.png"
            prob_map = {c: round(float(v), 6) for c, v in zip(captions, p, strict=True)}
            params = {"pack": self.pack_name, "index": int(i), **self.cfg.to_dict(),
                      "probs": prob_map}
            save_png(self.dir / name, img, {PNG_KEY: json.dumps(params)})
            self.samples.append({"index": int(i), "file": name, "probs": prob_map})

    def finish(self, result: RunResult, status: str | None = None) -> Path:
        if len(result.images):
            save_png(self.dir / "grid.png", make_grid(result.images))
        elif result.extra.get("partial_preview") is not None:
            save_png(self.dir / "partial-grid.png", make_grid(result.extra["partial_preview"]))
        self._write_json(status=status or ("complete" if result.completed else "incomplete"),
                         result=result)
        return self.dir

    def _write_json(self, status: str, result: RunResult | None = None) -> None:
        data: dict[str, Any] = {
            "clipterm": "run",
            "status": status,
            "created": self.created,
            "pack": self.pack_name,
            "config": self.cfg.to_dict(),
            "captions": list(self.cfg.captions),
            "versions": package_versions(),
        }
        data.update(self.extra)
        data["samples"] = sorted(self.samples, key=lambda s: s["index"])
        if result is not None:
            n = len(result.indices)
            data.update({
                "n_done": n,
                "device": result.device,
                "timings": {
                    "seconds": round(result.seconds, 4),
                    "seconds_per_sample": round(result.seconds / n, 4) if n else None,
                },
                "mean_probs": {c: round(float(v), 6) for c, v in
                               zip(result.captions, result.probs.mean(axis=0), strict=True)} if n else {},
                "mean_target_prob": round(result.mean_target_prob, 6) if n else None,
                "nonfinite_gradients_skipped": result.nonfinite_skipped,
                "losses": [round(v, 6) for v in result.losses],
                "prob_trace": result.prob_trace,
                "finished": _dt.datetime.now().isoformat(timespec="seconds"),
            })
            data.update({k: v for k, v in result.extra.items() if k != "partial_preview"})
        atomic_write_json(self.dir / "run.json", data)


def write_run(result: RunResult, out_root: str | Path, pack_name: str,
              extra: dict[str, Any] | None = None) -> Path:
    """Write a finished RunResult as a new run folder; returns the folder."""
    writer = RunWriter(out_root, result.config, pack_name, extra)
    writer.add_batch(result.indices.tolist(), result.images, result.probs)
    return writer.finish(result)


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a clipterm run folder (no run.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc.msg}") from None


def load_run_images(run_dir: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The sample images of a run folder as uint8 [N, H, W, 3], with its run.json."""
    info = read_run(run_dir)
    imgs = []
    for s in info.get("samples", []):
        with Image.open(Path(run_dir) / s["file"]) as im:
            imgs.append(np.asarray(im.convert("RGB")))
    if not imgs:
        raise UserError(f"{run_dir} holds no samples")
    return np.stack(imgs), info


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
