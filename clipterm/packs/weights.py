"""Weight files, checked before any library loads them.

A weight file is read as safetensors, or as a PyTorch file through ``torch.load(...,
weights_only=True)``, whose unpickler builds tensors and containers only: a pickle that would
run code (``__reduce__`` calling ``os.system``, ``open``, ...) is refused before anything in
it runs. A checked pickle is converted to safetensors (:func:`save_safetensors`), so libraries
load only safetensors. Every problem ends in one :class:`~clipterm.errors.UserError` line that
says what the file is and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import secrets
import warnings
from pathlib import Path
from typing import Any

from clipterm.errors import UserError
from clipterm.sanitize import printable

SAFETENSORS = ".safetensors"
PICKLES = (".bin", ".pt", ".pth", ".ckpt")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return printable(text[0] if text else type(exc).__name__, 200)


def count_elements(path: Path, what: str) -> int:
    """Check a weight file without loading a library model from it; returns how many numbers
    it holds. Safetensors: the header is parsed and checked against the file's size (a
    truncated file fails here). Pickles: loaded with ``weights_only=True`` (nothing runs)."""
    shown = printable(path)
    try:
        if not path.is_file():
            raise UserError(f"{what} not found: {shown}")
    except OSError as exc:
        raise UserError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    if path.suffix == SAFETENSORS:
        n = _count_safetensors(path, what)
    elif path.suffix in PICKLES:
        n = sum(int(t.numel()) for t in read_pickled_state_dict(path, what).values())
    else:
        raise UserError(f"{what} {shown} is not a weight file clipterm loads (.safetensors, or "
                        ".bin/.pt holding plain tensors)")
    if n == 0:
        raise UserError(f"{what} {shown} holds no weights")
    return n


def _count_safetensors(path: Path, what: str) -> int:
    from safetensors import safe_open

    try:
        total = 0
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += math.prod(f.get_slice(key).get_shape())
        return total
    except OSError as exc:
        raise UserError(f"cannot read {what} {printable(path)}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - SafetensorError and the parser's other complaints
        raise UserError(f"{what} {printable(path)} is not a valid safetensors file (corrupt, "
                        f"truncated or another format): {_first_line(exc)}") from None


def read_pickled_state_dict(path: Path, what: str) -> dict[str, Any]:
    """A ``.bin``/``.pt`` state dict, loaded with ``weights_only=True``: plain tensors only."""
    import torch

    shown = printable(path)
    try:
        with warnings.catch_warnings():
            # torch remarks on pickle protocols it did not write; the file is refused or read
            # all the same, and the remark would come before clipterm's own line
            warnings.filterwarnings("ignore", message="Detected pickle protocol",
                                    category=UserWarning)
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{what} {shown} does not hold plain weights: refused, nothing in it "
                        f"was run ({_unpickling_detail(exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    except (RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, MemoryError, UnicodeError) as exc:
        raise UserError(f"{what} {shown} is not a readable PyTorch weight file (corrupt or "
                        f"truncated): {_first_line(exc)}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise UserError(f"{what} {shown} does not hold a state dict (names -> tensors)")
    return data


def _unpickling_detail(exc: BaseException) -> str:
    """What torch's weights-only unpickler objected to, in a few words."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if found:
        return f"it would call {printable(found.group(1), 80)}: a pickle that runs code"
    return "a damaged file, or not a PyTorch weight file"


def check_finite(module: Any, what: str, source: Path | str) -> None:
    """Refuse weights holding NaN or infinity (a damaged file that parses)."""
    import torch

    for name, p in module.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise UserError(f"{what} {printable(source)} holds NaN or infinite values "
                            f"(in {printable(name, 80)}): the file is damaged")


def save_safetensors(state: dict[str, Any], target: Path, source: Path | str = "") -> Path:
    """Write a checked state dict (names -> tensors) as the safetensors file ``target``, which
    must not exist yet: through a temporary file beside it (created with the umask's mode) and
    a link, so nothing existing is replaced and no half-written file is ever at ``target``. If
    another process wrote ``target`` meanwhile, its file stays. Raises OSError where the folder
    is not writable or the disk is full."""
    from safetensors.torch import save_file

    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} exists")
    # contiguous copies that share no memory, as safetensors requires
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    part = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
    try:
        with open(part, "xb"):  # O_EXCL, mode 0o666 less the umask
            pass
        mode = part.stat().st_mode & 0o777
        save_file(tensors, str(part), metadata={"format": "pt", "converted_from": Path(source).name})
        os.chmod(part, mode)  # safetensors writes a file of its own, with its own mode
        try:
            os.link(part, target)
        except FileExistsError:
            pass  # another process converted it first: its file is the same weights
        except OSError:  # a file system without hard links
            if not target.exists():
                os.replace(part, target)
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    return target
