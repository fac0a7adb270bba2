"""Whether a pack's weights are on this machine, answered without torch and without network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipterm.packs import PackSpec


def _cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in filenames)


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
