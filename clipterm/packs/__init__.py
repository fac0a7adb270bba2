"""Named model packs: a pack is data (a JSON file), not code.

A pack JSON names a diffusion model (a Hugging Face repo id, or a folder, relative to the JSON),
a CLIP model, optional judge, default captions and default settings. The built-in packs live
beside this file (``cifar10.json``, ``digits.json``); a user can point ``--model`` at their own
pack JSON, or at a diffusers model folder / repo id directly.

Schema (keys not listed are kept in ``PackSpec.raw``)::

    {
      "name": "digits",
      "description": "...",
      "diffusion": "digits/ddpm",           # folder (relative to the JSON) or repo id
      "clip": {"config": "digits/clip/NAME.json", "weights": "digits/clip/x.safetensors"}
           | {"model": "ViT-B-32", "pretrained": "openai"}
           | "local-dir:/path" | "hf-hub:org/repo",
      "judge": "digits/judge",              # optional
      "captions": ["zero", ...], "default_prompt": "seven",
      "real_data": "sklearn-digits" | "cifar10",
      "tuned": true,
      "defaults": {"sampler": "ddim", "steps": 50, "scale": ..., "methods": {"contrastive": {...}}}
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipterm.errors import UserError

PACKS_DIR = Path(__file__).resolve().parent
DEFAULT_CLIP = {"model": "ViT-B-32", "pretrained": "openai"}
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


@dataclass(frozen=True)
class PackSpec:
    """A pack as described by its JSON, before anything is loaded."""

    name: str
    description: str
    diffusion: str  # resolved: absolute folder path or repo id
    clip: dict[str, Any] | str
    captions: tuple[str, ...]
    default_prompt: str
    defaults: dict[str, Any]
    judge: str | None = None  # resolved folder path
    real_data: str | None = None
    tuned: bool = False
    embedded: bool = False
    source: str = ""  # the JSON file, or what --model named
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def distractors_for(self, prompt: str) -> tuple[str, ...]:
        """The pack's captions other than ``prompt``: the poster's contrastive setting."""
        p = prompt.strip().casefold()
        return tuple(c for c in self.captions if c.casefold() != p)

    @property
    def diffusion_is_local(self) -> bool:
        return Path(self.diffusion).is_absolute()

    @property
    def train_steps(self) -> int:
        """The diffusion model's training steps, read without loading it (1000 if unknown)."""
        if "train_steps" in self.raw:
            return int(self.raw["train_steps"])
        if self.diffusion_is_local:
            root = Path(self.diffusion)
            for cfg in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json"):
                if cfg.is_file():
                    try:
                        return int(json.loads(cfg.read_text()).get("num_train_timesteps", 1000))
                    except (OSError, ValueError):
                        break
        return 1000


def builtin_pack_names() -> list[str]:
    return sorted(p.stem for p in PACKS_DIR.glob("*.json"))


def _resolve_path(value: str, base: Path) -> str:
    """A path relative to the pack JSON if it exists there, else the value as is (a repo id)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    candidate = (base / p).resolve()
    return str(candidate) if candidate.exists() else value


def spec_from_json(path: Path) -> PackSpec:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"pack file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except OSError as exc:
        raise UserError(f"cannot read pack file {path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise UserError(f"pack file {path} must hold a JSON object")
    for key in ("diffusion", "captions"):
        if key not in data:
            raise UserError(f"pack file {path} has no {key!r} entry")
    base = path.parent
    clip = data.get("clip", DEFAULT_CLIP)
    if isinstance(clip, dict):
        clip = {
            k: (_resolve_path(v, base) if k in ("config", "weights") else v) for k, v in clip.items()
        }
    captions = tuple(str(c) for c in data["captions"])
    judge = data.get("judge")
    return PackSpec(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        diffusion=_resolve_path(str(data["diffusion"]), base),
        clip=clip,
        captions=captions,
        default_prompt=str(data.get("default_prompt", captions[0] if captions else "")),
        defaults=dict(data.get("defaults", {})),
        judge=_resolve_path(judge, base) if judge else None,
        real_data=data.get("real_data"),
        tuned=bool(data.get("tuned", False)),
        embedded=bool(data.get("embedded", False)),
        source=str(path),
        raw=data,
    )


def get_pack_spec(name_or_path: str) -> PackSpec:
    """Find a pack by built-in name, pack JSON path, or diffusers model folder / repo id."""
    if not name_or_path or not name_or_path.strip():
        raise UserError("the model is empty: name a pack (e.g. digits) or a model folder")
    builtin = PACKS_DIR / f"{name_or_path}.json"
    if "/" not in name_or_path and builtin.is_file():
        return spec_from_json(builtin)
    path = Path(name_or_path).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise UserError(f"pack file not found: {path}")
        return spec_from_json(path)
    if path.is_dir():
        if (path / "pack.json").is_file():
            return spec_from_json(path / "pack.json")
        if not ((path / "unet").is_dir() or (path / "config.json").is_file()):
            raise UserError(
                f"{path} is neither a pack nor a diffusers model folder "
                "(expected pack.json, unet/ or config.json inside)"
            )
        return _adhoc_spec(str(path.resolve()), source=str(path))
    if name_or_path.count("/") == 1 and not path.exists() and not name_or_path.startswith("."):
        return _adhoc_spec(name_or_path, source=name_or_path)  # a Hugging Face repo id
    raise UserError(
        f"unknown model {name_or_path!r}: choose a pack ({', '.join(builtin_pack_names())}), "
        "a pack JSON, a diffusers model folder, or a Hugging Face repo id like org/name"
    )


def _adhoc_spec(diffusion: str, source: str) -> PackSpec:
    """A bare diffusion model: CIFAR-10 captions and the default CLIP, like the cifar10 pack."""
    cifar = spec_from_json(PACKS_DIR / "cifar10.json")
    return PackSpec(
        name=Path(source).name or source,
        description=f"diffusion model {source} with {cifar.clip}",
        diffusion=diffusion,
        clip=cifar.clip,
        captions=cifar.captions,
        default_prompt=cifar.default_prompt,
        defaults=cifar.defaults,
        real_data=None,
        tuned=False,
        source=source,
    )


def list_pack_specs() -> list[PackSpec]:
    return [spec_from_json(PACKS_DIR / f"{n}.json") for n in builtin_pack_names()]


def default_pack_name() -> str:
    """The pack used when none is named."""
    return "digits"
