"""The Hugging Face cache and downloads, as huggingface_hub defines them, read at call time.

huggingface_hub reads its environment variables once, when it is imported; clipterm reads them
whenever it asks (the same variables, the same rules), so ``clipterm models`` answers without
importing it and a test or the app can change them. Downloads fetch only what loading needs:
the configs, and per folder the safetensors weights (``.bin`` only where a folder has no
safetensors).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from clipterm.errors import ModelUnavailableError, UserError
from clipterm.sanitize import printable

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES
WEIGHT_SUFFIXES = (".safetensors", ".bin")


# ----------------------------------------------------------------------------- environment
def offline_variable() -> str | None:
    """The variable that puts huggingface_hub offline (``HF_HUB_OFFLINE``, else
    ``TRANSFORMERS_OFFLINE``, read as huggingface_hub reads them), or None when online."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(var)
        if value:  # huggingface_hub: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, the first non-empty
            return var if value.upper() in TRUE_VALUES else None
    return None


def offline() -> bool:
    return offline_variable() is not None


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(os.path.expanduser(os.path.expandvars(value))) if value else None


def cache_root_and_source() -> tuple[Path, str]:
    """The hub cache folder and what set it (a variable name, or ``default``): HF_HUB_CACHE,
    else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else
    ~/.cache/huggingface/hub, as huggingface_hub.constants computes it."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        path = _env_path(var)
        if path is not None:
            return path, var
    home = _env_path("HF_HOME")
    if home is not None:
        return home / "hub", "HF_HOME"
    xdg = _env_path("XDG_CACHE_HOME")
    if xdg is not None:
        return xdg / "huggingface" / "hub", "XDG_CACHE_HOME"
    return Path.home() / ".cache" / "huggingface" / "hub", "default"


def cache_root() -> Path:
    return cache_root_and_source()[0]


def checked_cache_root() -> Path:
    """The cache folder, refusing in one line a setting that points at a file (or below one)."""
    root, source = cache_root_and_source()
    set_by = "" if source == "default" else f" (set by {source})"
    for p in (root, *root.parents):
        try:
            if p.exists() and not p.is_dir():
                raise UserError(f"the Hugging Face cache {printable(root)}{set_by} cannot be "
                                f"used: {printable(p)} is a file, not a folder")
            if p.is_dir():
                break
        except OSError as exc:
            raise UserError(f"cannot use the Hugging Face cache {printable(root)}{set_by}: "
                            f"{exc.strerror or exc}") from None
    return root


# ----------------------------------------------------------------------------- the cache
def _repo_folder(repo_id: str) -> Path:
    return cache_root() / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The cached snapshot folder of a model repo (the cache's layout: models--ORG--NAME/refs/
    REVISION holds a commit, snapshots/COMMIT/ the files), or None. Never raises: a damaged or
    unreadable cache reads as "not cached"."""
    try:
        repo = _repo_folder(repo_id)
        ref = repo / "refs" / revision
        commit = ref.read_text(encoding="ascii").strip() if ref.is_file() else revision
        if not commit or len(commit) > 100 or any(c in commit for c in "/\\\0") or ".." in commit:
            return None
        snapshot = repo / "snapshots" / commit
        return snapshot if snapshot.is_dir() else None
    except (OSError, UnicodeError, ValueError):
        return None


def cached_file(repo_id: str, filename: str, revision: str = "main") -> Path | None:
    """A file of a cached snapshot (following the cache's links to its blobs), or None."""
    snapshot = cached_snapshot(repo_id, revision)
    if snapshot is None:
        return None
    try:
        path = snapshot / filename
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def in_cache(path: Path) -> bool:
    """Whether ``path`` (a file of a snapshot) lies in the hub cache, links not followed for
    the file itself (a snapshot's files link to its blobs)."""
    try:
        root = Path(os.path.realpath(cache_root()))
        folder = Path(os.path.realpath(Path(path).parent))
        return folder.is_relative_to(root) and "snapshots" in folder.relative_to(root).parts
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- downloads
def select_files(files: list[str]) -> list[str]:
    """What loading needs from a repo's file list: every JSON config, and in each folder its
    safetensors weights, or its ``.bin`` weights only where the folder has no safetensors.
    Variants (``*.fp16.safetensors``, ``*.non_ema.bin``) are left out."""
    keep = [f for f in files if f.endswith(".json")]
    by_folder: dict[str, dict[str, list[str]]] = {}
    for f in files:
        p = PurePosixPath(f)
        if p.suffix in WEIGHT_SUFFIXES and "." not in p.stem:
            by_folder.setdefault(str(p.parent), {}).setdefault(p.suffix, []).append(f)
    for found in by_folder.values():
        keep += found.get(".safetensors") or found.get(".bin", [])
    return sorted(keep)


def has_weights(files: list[str]) -> bool:
    return any(PurePosixPath(f).suffix in WEIGHT_SUFFIXES for f in files)


@contextlib.contextmanager
def _hub_quiet() -> Iterator[None]:
    """huggingface_hub's warnings (retries of a failing connection) stay out of the terminal
    while clipterm downloads; its download progress bars stay."""
    from huggingface_hub.utils import logging as hub_logging

    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        yield
    finally:
        hub_logging.set_verbosity(level)


def _failed(what: str, exc: BaseException) -> ModelUnavailableError:
    text = str(exc).strip().splitlines()
    return ModelUnavailableError(
        f"could not download {what}: {printable(text[0] if text else type(exc).__name__, 300)}")


def download_repo(repo_id: str) -> Path:
    """Fetch what loading needs from a model repo into the cache; returns the snapshot."""
    if offline():
        raise ModelUnavailableError(
            f"cannot download {repo_id}: {offline_variable()} is set (huggingface_hub is offline)")
    root = checked_cache_root()
    from huggingface_hub import HfApi, snapshot_download

    with _hub_quiet():
        try:
            files = HfApi().list_repo_files(repo_id)
        except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
            raise _failed(repo_id, exc) from None
        if not has_weights(files):
            raise ModelUnavailableError(f"the repo {repo_id} holds no .safetensors or .bin weights")
        try:
            return Path(snapshot_download(repo_id, allow_patterns=select_files(files),
                                          cache_dir=str(root)))
        except Exception as exc:  # noqa: BLE001
            raise _failed(repo_id, exc) from None


def download_file(repo_id: str, candidates: list[str]) -> Path:
    """Fetch the first of ``candidates`` the repo holds (safetensors first); returns its path."""
    if offline():
        raise ModelUnavailableError(
            f"cannot download {repo_id}: {offline_variable()} is set (huggingface_hub is offline)")
    root = checked_cache_root()
    from huggingface_hub import HfApi, hf_hub_download

    with _hub_quiet():
        try:
            files = set(HfApi().list_repo_files(repo_id))
            chosen = next((c for c in candidates if c in files), None)
            if chosen is None:
                raise ModelUnavailableError(
                    f"the repo {repo_id} holds none of {', '.join(candidates)}")
            return Path(hf_hub_download(repo_id, chosen, cache_dir=str(root)))
        except ModelUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _failed(f"{repo_id}", exc) from None


def not_downloaded(what: str, get_it: str) -> ModelUnavailableError:
    """One line: what is missing, where it was looked for, and the command that fetches it."""
    root, source = cache_root_and_source()
    where = f"the Hugging Face cache {printable(root)}"
    if source != "default":
        where += f", from {source}"
    var = offline_variable()
    why = f"; {var} is set, so nothing was downloaded" if var else ""
    return ModelUnavailableError(
        f"not downloaded: {what} (looked in {where}){why}. On a machine with internet run "
        f"`clipterm models --download {get_it}` (or copy the cache folder)"
    )


def resolve_repo(repo_id: str, complete: Callable[[Path], bool], what: str, get_it: str) -> Path:
    """The local snapshot of a repo that ``complete`` accepts: the cached one, else (online)
    a fresh download of what loading needs; offline and not cached: one line saying how to
    get it."""
    snapshot = cached_snapshot(repo_id)
    if snapshot is not None and complete(snapshot):
        return snapshot
    checked_cache_root()
    if offline():
        raise not_downloaded(what, get_it)
    snapshot = download_repo(repo_id)
    if not complete(snapshot):
        raise ModelUnavailableError(f"{what}: the download of {repo_id} is incomplete")
    return snapshot
