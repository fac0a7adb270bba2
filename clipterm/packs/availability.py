"""Whether a pack's weights are on this machine, answered without torch and without network.

Never raises: a damaged cache, or a cache setting that points at a file, reads as "missing".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipterm.packs import hub
from clipterm.packs.spec import ClipRef, PackSpec

UNET_CONFIGS = ("unet/config.json", "config.json")
UNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def hub_cache_root() -> Path:
    """The Hugging Face hub cache folder (see :func:`clipterm.packs.hub.cache_root`)."""
    return hub.cache_root()


def _cached(repo_id: str, filenames: tuple[str, ...], revision: str = "main") -> bool:
    """Whether one of ``filenames`` of a hub model repo is in the cache."""
    return any(hub.cached_file(repo_id, f, revision) is not None for f in filenames)


def diffusers_folder_complete(folder: Path) -> bool:
    """A diffusers UNet (``unet/`` or flat) with a config and weights, and a scheduler config."""
    try:
        unet = folder / "unet" if (folder / "unet").is_dir() else folder
        sched = (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json")
        return ((unet / "config.json").is_file()
                and any((unet / w).is_file() for w in UNET_WEIGHTS)
                and any(s.is_file() for s in sched))
    except OSError:
        return False


def diffusion_available(source: str) -> bool:
    path = Path(source)
    if path.is_absolute():
        return diffusers_folder_complete(path)
    snapshot = hub.cached_snapshot(source)
    return snapshot is not None and diffusers_folder_complete(snapshot)


def clip_available(clip: ClipRef) -> bool:
    try:
        if clip.kind == "files":
            return (not clip.config or Path(clip.config).is_file()) and Path(clip.weights or "").is_file()
        if clip.kind == "local-dir":
            return Path(clip.path or "").is_dir()
        if clip.kind == "hf-hub":
            return _cached(clip.path or "", ("open_clip_config.json",)) and _cached(
                clip.path or "", OPEN_CLIP_WEIGHTS)
    except OSError:
        return False
    return bool(clip.hf_hub) and _cached(clip.hf_hub or "", OPEN_CLIP_WEIGHTS)


def pack_availability(spec: PackSpec) -> dict[str, Any]:
    d_ok = diffusion_available(spec.diffusion)
    c_ok = clip_available(spec.clip)
    return {
        "embedded": spec.embedded,
        "diffusion": spec.diffusion,
        "clip": spec.clip.label,
        "diffusion_ok": d_ok,
        "clip_ok": c_ok,
        "available": d_ok and c_ok,
    }
