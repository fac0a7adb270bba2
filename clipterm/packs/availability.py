"""Whether a pack's weights are on this machine, answered without torch and without network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clipterm.packs import PackSpec


def hub_cache_root() -> Path:
    """The Hugging Face hub cache folder, found as huggingface_hub finds it (its environment
    variables, then ~/.cache/huggingface/hub), without importing it: that import costs most of
    a second, and ``clipterm models`` must answer at once."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _cached(repo_id: str, filenames: tuple[str, ...], revision: str = "main") -> bool:
    """Whether one of ``filenames`` of a hub model repo is in the cache (the cache's layout:
    models--ORG--NAME/refs/REVISION holds a commit, snapshots/COMMIT/FILE the file)."""
    repo = hub_cache_root() / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / revision
    try:
        commit = ref.read_text().strip() if ref.is_file() else revision
    except OSError:
        return False
    snapshot = repo / "snapshots" / commit
    return any((snapshot / f).is_file() for f in filenames)


def diffusion_available(source: str) -> bool:
    path = Path(source)
    if path.is_absolute() or path.exists():
        return path.is_dir()
    return _cached(source, ("unet/config.json", "config.json"))


def clip_available(clip: dict[str, Any] | str) -> bool:
    if isinstance(clip, str):
        return clip.startswith("local-dir:") and Path(clip.split(":", 1)[1]).is_dir()
    if "config" in clip:
        weights = clip.get("weights")
        return Path(clip["config"]).is_file() and (not weights or Path(weights).is_file())
    pretrained = clip.get("pretrained")
    if pretrained and Path(pretrained).is_file():
        return True
    hub = clip.get("hf_hub")
    return bool(hub) and _cached(
        hub, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    )


def clip_label(clip: dict[str, Any] | str) -> str:
    if isinstance(clip, str):
        return clip
    if "config" in clip:
        return f"{Path(clip['config']).stem} ({clip['config']})"
    return f"{clip['model']}:{clip.get('pretrained', '')}"


def pack_availability(spec: PackSpec) -> dict[str, Any]:
    d_ok = diffusion_available(spec.diffusion)
    c_ok = clip_available(spec.clip)
    return {
        "embedded": spec.embedded,
        "diffusion": spec.diffusion,
        "clip": clip_label(spec.clip),
        "diffusion_ok": d_ok,
        "clip_ok": c_ok,
        "available": d_ok and c_ok,
    }
