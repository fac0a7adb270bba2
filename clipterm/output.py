"""Run folders: one PNG per sample (parameters in a PNG text chunk), a grid, and run.json.

Every run gets a new folder under the output root; nothing that exists is overwritten. Files are
written to a temporary name and renamed (with SIGINT, SIGTERM and SIGHUP held back while they
are), so a folder never holds a half-written file. Each batch is written as it finishes and
run.json is rewritten after it, so whatever ends the process (a signal, ``kill -9``, a power
cut) the folder's run.json lists every finished sample. ``status`` says how the run ended:

- ``running``: the process (``pid`` on ``host``) is making it, or died without a word;
- ``complete``: every sample made;
- ``incomplete``: stopped early on request (Ctrl+C, SIGTERM, SIGHUP, cancel in the app);
- ``aborted``: stopped at once (a second Ctrl+C), mid-step;
- ``failed``: an error ended it (out of memory, full disk); ``error`` says which.

Files respect the user's umask. JSON is strict: a value that is not a finite number is null.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import io
import json
import math
import os
import platform
import re
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from clipterm.animation import SUFFIX as ANIMATION_SUFFIX
from clipterm.animation import FrameRecorder, fit_frame
from clipterm.animation import encode as encode_animation
from clipterm.config import RunConfig
from clipterm.errors import UserError
from clipterm.events import RunResult
from clipterm.sanitize import printable, quoted

PNG_KEY = "clipterm"
RUN_STATES = ("running", "complete", "incomplete", "aborted", "failed")
_HELD_SIGNALS = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}


def _read_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # elsewhere: set and restore (done once, at import)
    os.umask(old)
    return old


FILE_MODE = 0o666 & ~_read_umask()


def check_out_dir(out_root: str | Path) -> Path:
    """Fail early (before any model is loaded) if runs cannot be written under ``out_root``."""
    root = Path(out_root).expanduser()
    shown = printable(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {shown} is a file, not a folder")
    probe = root
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--out {shown}: {printable(probe)} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise UserError(f"--out {shown} is not writable ({exc.strerror})") from None
    return root


def package_versions() -> dict[str, str]:
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
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
    raise UserError(f"could not make a new run folder under {printable(out_root)}")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back (they are delivered on exit) so a write is not torn."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:  # pragma: no cover - not on POSIX
        yield
        return
    old = mask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


def atomic_write_bytes(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, with the umask's mode.

    ``replace=False`` refuses to replace an existing file (``FileExistsError``)."""
    path = Path(path)
    with signals_held():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, FILE_MODE)
            if replace:
                os.replace(tmp, path)
            else:
                _link_new(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _link_new(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (FileExistsError otherwise)."""
    try:
        os.link(tmp, path)  # atomic, and fails if path exists
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def strict_json(data: Any) -> Any:
    """``data`` with every float that is not finite replaced by None (JSON has no NaN)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(v) for v in data]
    return data


def json_text(data: Any) -> str:
    """Strict JSON text (numpy values and paths converted, NaN and infinities as null)."""
    plain = json.loads(json.dumps(data, default=_json_default))
    return json.dumps(strict_json(plain), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: Path, data: Any, *, replace: bool = True) -> None:
    atomic_write_bytes(path, json_text(data).encode(), replace=replace)


def save_png(path: Path, image: np.ndarray, text: dict[str, str] | None = None,
             *, replace: bool = True) -> None:
    """Save a uint8 [H, W, 3] image as PNG, with optional text chunks, atomically."""
    info = PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(path, buf.getvalue(), replace=replace)


def read_png_params(path: Path) -> dict[str, Any]:
    """The settings clipterm stored in a sample PNG (its ``clipterm`` JSON chunk), or a one-line
    UserError."""
    from clipterm.images import check_image

    check_image(path, "image")
    with Image.open(path) as im:
        text = getattr(im, "text", {}).get(PNG_KEY)
    if text is None:
        raise UserError(f"{printable(path)} holds no clipterm settings (written with "
                        "--no-metadata, or not by clipterm)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"the clipterm settings in {printable(path)} are not valid JSON") from None
    if not isinstance(data, dict):
        raise UserError(f"the clipterm settings in {printable(path)} are not a JSON object")
    return data


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


def sample_name(index: int) -> str:
    return f"sample-{int(index):05d}.png"


class RunWriter:
    """Writes one run folder incrementally: each batch's PNGs as it finishes, then run.json
    again; at the end the grid and the final run.json.

    ``record=False`` writes sample PNGs only (the other ranks of a multi-process run, whose
    samples rank 0 records).
    """

    def __init__(self, run_dir: Path, cfg: RunConfig, pack_name: str, *,
                 header: dict[str, Any] | None = None, record: bool = True,
                 metadata: bool = True, clip: str = "", pack_source: str = ""):
        self.dir = Path(run_dir)
        self.cfg = cfg
        self.pack_name = pack_name
        self.pack_source = pack_source or pack_name
        self.metadata = metadata
        self.clip = clip
        self.header = dict(header or {})
        self.record = record
        self.created = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.status = "running"
        self._samples: dict[int, dict[str, Any]] = {}
        self._result: RunResult | None = None
        self._lock = threading.Lock()
        if record:
            self._write_record()

    @classmethod
    def create(cls, out_root: str | Path, cfg: RunConfig, pack_name: str,
               header: dict[str, Any] | None = None, *, label: str | None = None,
               **options: Any) -> RunWriter:
        """A writer for a new run folder under ``out_root``, named ``STAMP-METHOD-PROMPT`` and
        ``label`` if given (``options``: metadata, clip, pack_source)."""
        name = f"{cfg.method}-{slug(cfg.prompt)}" + (f"-{label}" if label else "")
        run_dir = new_run_dir(Path(out_root), name)
        return cls(run_dir, cfg, pack_name, header=header, **options)

    def png_text(self, index: int, size: tuple[int, int], probs: dict[str, float]
                 ) -> dict[str, str]:
        """A sample's PNG text chunks: clipterm's settings as JSON, the web UIs' ``parameters``
        and ``Software`` (none with ``metadata=False``)."""
        if not self.metadata:
            return {}
        from clipterm.parameters import PARAMETERS_KEY, SOFTWARE_KEY, format_parameters

        settings = {"pack": self.pack_name, "pack_source": self.pack_source,
                    **self.cfg.to_dict(), "index": int(index), "probs": probs}
        return {
            PNG_KEY: json_text(settings),
            PARAMETERS_KEY: format_parameters(self.cfg, index=index, size=size,
                                              model=self.pack_name, clip=self.clip),
            SOFTWARE_KEY: f"clipterm {package_versions()['clipterm']}",
        }

    @property
    def samples(self) -> list[dict[str, Any]]:
        """The finished samples' entries (index, file, probs), in index order."""
        with self._lock:
            return [self._samples[i] for i in sorted(self._samples)]

    def add_samples(self, entries: Sequence[dict[str, Any]]) -> None:
        """Record samples that another process wrote into this folder."""
        with self._lock:
            for e in entries:
                self._samples[int(e["index"])] = dict(e)

    def add_batch(self, indices: Sequence[int], images: np.ndarray, probs: np.ndarray) -> None:
        """Write a finished batch's PNGs, then run.json listing them."""
        captions = self.cfg.captions
        for i, img, p in zip(indices, images, probs, strict=True):
            prob_map = {c: round(float(v), 6) for c, v in zip(captions, p, strict=True)}
            name = sample_name(i)
            text = self.png_text(int(i), (img.shape[1], img.shape[0]), prob_map)
            save_png(self.dir / name, img, text, replace=False)
            with self._lock:
                self._samples[int(i)] = {"index": int(i), "file": name, "probs": prob_map}
        if self.record:
            self._write_record()

    def mark(self, status: str, error: str | None = None) -> None:
        """Rewrite run.json with ``status`` (the samples written so far stay listed)."""
        if status not in RUN_STATES:
            raise ValueError(f"unknown run status {status!r}")
        self.status = status
        if error:
            self.header["error"] = error
        if self.record:
            self._write_record(self._result)

    def finish(self, result: RunResult, status: str | None = None) -> Path:
        """Write the grid and the final run.json; returns the folder."""
        if len(result.images):
            save_png(self.dir / "grid.png", make_grid(result.images), replace=False)
        elif result.partial_preview is not None:
            save_png(self.dir / "partial-grid.png", make_grid(result.partial_preview),
                     replace=False)
        self.status = status or ("complete" if result.completed else "incomplete")
        self._result = result
        if self.record:
            self._write_record(result)
        return self.dir

    def _write_record(self, result: RunResult | None = None) -> None:
        data: dict[str, Any] = {
            "clipterm": "run",
            "status": self.status,
            "created": result.started if result is not None and result.started else self.created,
            "pack": self.pack_name,
            "pack_source": self.pack_source,
            "config": self.cfg.to_dict(),
            "captions": list(self.cfg.captions),
            "versions": package_versions(),
            **self.header,
        }
        if self.status == "running":
            data["pid"] = os.getpid()
            data["host"] = socket.gethostname()
        data["samples"] = self.samples
        if result is not None:
            data.update(result_record(result))
        atomic_write_json(self.dir / "run.json", data)


def result_record(result: RunResult) -> dict[str, Any]:
    """What run.json says about a finished (or stopped) run."""
    n = len(result.indices)
    return {
        "n_done": n,
        "device": result.device,
        "runtime": result.runtime,
        "started": result.started,
        "finished": result.finished,
        "timings": {"seconds": round(result.seconds, 4),
                    "seconds_per_sample": round(result.seconds / n, 4) if n else None},
        "mean_probs": ({c: round(float(v), 6) for c, v in
                        zip(result.captions, result.probs.mean(axis=0), strict=True)} if n else {}),
        "mean_target_prob": (round(result.mean_target_prob, 6)
                             if result.mean_target_prob is not None else None),
        "nonfinite_gradients_skipped": result.nonfinite_skipped,
        "nonfinite_samples": list(result.nonfinite_samples),
        "oom_splits": result.oom_splits,
        "losses": [round(v, 6) for v in result.losses],
        "prob_trace": result.prob_trace,
        **({"world_size": len(result.ranks),
            "ranks": [vars(r) for r in result.ranks]} if result.ranks else {}),
    }


def write_run(result: RunResult, out_root: str | Path, pack_name: str,
              header: dict[str, Any] | None = None) -> Path:
    """Write a finished RunResult as a new run folder; returns the folder."""
    writer = RunWriter.create(out_root, result.config, pack_name, header)
    writer.add_batch(result.indices.tolist(), result.images, result.probs)
    return writer.finish(result)


def write_animations(run_dir: Path, recorder: FrameRecorder, indices: Sequence[int], fmt: str,
                     per_sample: bool = False, finals: np.ndarray | None = None,
                     max_grid_side: int = 1024) -> list[str]:
    """Write the grid animation (and one per sample) into ``run_dir``; returns the file names.

    ``finals`` (the samples' final images, in ``indices`` order) end each animation exactly as
    the saved samples look."""
    if finals is not None:
        recorder.end_with(indices, finals)
    seqs = [recorder.frames_of(i) for i in indices]
    seqs = [s for s in seqs if s]
    if not seqs:
        return []
    n_frames = min(len(s) for s in seqs)
    grid = [fit_frame(make_grid(np.stack([s[j] for s in seqs])), max_grid_side)
            for j in range(n_frames)]
    names = ["animation" + ANIMATION_SUFFIX[fmt]]
    atomic_write_bytes(run_dir / names[0], encode_animation(grid, fmt), replace=False)
    if per_sample:
        for i in indices:
            frames = recorder.frames_of(i)
            if frames:
                name = sample_name(i).removesuffix(".png") + "-animation" + ANIMATION_SUFFIX[fmt]
                atomic_write_bytes(run_dir / name, encode_animation(frames, fmt), replace=False)
                names.append(name)
    return names


MAX_RECORD_BYTES = 64 * 2**20  # a run.json larger than this is not one clipterm wrote


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's run.json as a dict, or a one-line UserError (nothing in it is trusted:
    it must be a UTF-8 JSON object that says it is a clipterm run record). Values that are not
    finite numbers (bare NaN from old versions, 1e999) read as None."""
    folder = Path(run_dir).expanduser()
    shown = printable(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"{shown} {what} (a clipterm run folder holds run.json and sample PNGs)")
    path = folder / "run.json"
    if not path.exists():
        raise UserError(f"{shown} is not a clipterm run folder (no run.json)")
    if not path.is_file():
        raise UserError(f"{printable(path)} is not a file")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise UserError(f"{printable(path)} is a link leading outside the run folder: refused")
    try:
        size = path.stat().st_size
        if size > MAX_RECORD_BYTES:
            raise UserError(f"{printable(path)} is {size // 2**20} MiB: too large for a run record")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{printable(path)} is not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {printable(path)}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, parse_constant=lambda _name: None)
    except json.JSONDecodeError as exc:
        raise UserError(f"{printable(path)} is not valid JSON: {exc.msg} (line {exc.lineno})"
                        ) from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting 10^5 deep
        raise UserError(f"{printable(path)} is not valid JSON: "
                        f"{printable(str(exc).split(';')[0], 80)}") from None
    if not isinstance(data, dict) or data.get("clipterm") != "run":
        raise UserError(f"{printable(path)} is not a clipterm run record "
                        "(a JSON object with \"clipterm\": \"run\")")
    return strict_json(data)


def run_sample_files(run_dir: str | Path, info: dict[str, Any]) -> tuple[list[Path], list[str]]:
    """The sample files run.json lists that are on disk, and the names of those that are not.

    Reads are confined to the run folder: a listed name must be a plain file name inside it
    (no ``..``, no absolute path, no symlink leading out); anything else is a one-line
    UserError, as is a ``samples`` entry of the wrong shape or a file listed twice.
    """
    folder = Path(run_dir).expanduser()
    root = folder.resolve()
    samples = info.get("samples", [])
    if samples is None:
        samples = []
    if not isinstance(samples, list):
        raise UserError("run.json: samples must be a list")
    found: list[Path] = []
    missing: list[str] = []
    seen: set[Path] = set()
    for k, entry in enumerate(samples):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.strip() or "\0" in name:
            raise UserError(f"run.json: samples[{k}] does not name its file (samples[].file)")
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise UserError(f"run.json lists a sample outside the run folder: "
                            f"{quoted(name, 80)}: refused")
        path = folder / rel
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            missing.append(name)
            continue
        except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable folder
            raise UserError(f"run.json lists {quoted(name, 80)}, which cannot be opened: "
                            f"{printable(getattr(exc, 'strerror', None) or exc, 80)}") from None
        if not real.is_relative_to(root):
            raise UserError(f"run.json lists {quoted(name, 80)}, which leads outside the run "
                            "folder: refused")
        if not real.is_file():
            raise UserError(f"run.json lists {quoted(name, 80)}, which is not a file")
        if real in seen:
            raise UserError(f"run.json lists the sample {quoted(name, 80)} twice")
        seen.add(real)
        found.append(real)
    return found, missing


def read_sample_images(files: Sequence[Path]) -> np.ndarray:
    """Sample PNGs as uint8 [N, H, W, 3]; each checked first (size, format, truncation), and
    all of one size, or a one-line UserError naming the file."""
    from clipterm.images import check_image

    imgs: list[np.ndarray] = []
    for path in files:
        check_image(path, "sample")
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:
            raise UserError(f"sample {printable(path)} is damaged ({printable(exc, 120)})"
                            ) from None
        if imgs and rgb.shape != imgs[0].shape:
            h0, w0 = imgs[0].shape[:2]
            raise UserError(f"the samples differ in size: {printable(files[0].name)} is "
                            f"{w0}x{h0}, {printable(path.name)} is {rgb.shape[1]}x{rgb.shape[0]}")
        imgs.append(rgb)
    if not imgs:
        return np.zeros((0, 0, 0, 3), np.uint8)
    return np.stack(imgs)


def load_run_images(run_dir: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The sample images of a run folder as uint8 [N, H, W, 3], with its run.json; every
    listed sample must be there (see :func:`run_sample_files` for what is refused)."""
    info = read_run(run_dir)
    files, missing = run_sample_files(run_dir, info)
    if missing:
        raise UserError(f"{printable(run_dir)}: {len(missing)} listed sample file(s) missing "
                        f"({quoted(missing[0], 80)}{', ...' if len(missing) > 1 else ''})")
    if not files:
        raise UserError(f"{printable(run_dir)} holds no samples")
    return read_sample_images(files), info


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
