"""Named model packs: a pack is data (a JSON file checked against a schema), not code.

A pack JSON names a diffusion model (a folder inside the pack's folder, or a Hugging Face repo
id), a CLIP, an optional judge, its captions and its default settings. The built-in packs live
beside this file (``digits.json``, ``cifar10.json``, the 256x256 ``church.json``, ...); a user
can point ``--model`` at their own pack JSON (or a folder holding ``pack.json``), or at a
diffusers model folder / repo id directly (a built-in pack's repo id names that pack).

The schema (:mod:`clipterm.packs.schema`; unknown keys are refused)::

    {
      "name": "digits",                       # letters, digits, . _ - (default: the file's stem)
      "description": "...",
      "diffusion": "digits/ddpm",             # folder inside the pack's folder, or ORG/NAME
      "clip": {"config": "digits/clip/NAME.json", "weights": "digits/clip/x.safetensors"}
           | {"model": "ViT-B-32", "weights": "clip/x.safetensors"}
           | {"model": "ViT-B-32", "pretrained": "openai", "hf_hub": "timm/..."}
           | "local-dir:FOLDER" | "hf-hub:ORG/NAME",
      "judge": "digits/judge",                # optional: a folder with config.json
      "captions": ["zero", ...],              # visible, distinct (case-insensitive)
      "default_prompt": "seven",              # default: the first caption
      "vocabulary": "closed" | "open",        # closed: the CLIP reads only the captions
      "real_data": "sklearn-digits" | "cifar10",
      "tuned": true, "embedded": true,
      "train_steps": 1000,                    # default: the scheduler config's
      "download_mb": 750,                     # approximate download size, where known
      "defaults": {"sampler": "ddim", "steps": 50, "batch": 100, "scale": 0.0, "opt_iters": 10,
                   "lr": 0.05, "grad_norm": "rms", "methods": {"contrastive": {"scale": 0.1}},
                   "cutouts": 16, "cut_pow": 1.0, "augment": false,   # CLIP's views (guided)
                   "grad_checkpointing": true}                        # the UNet's, when guided
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipterm.errors import UserError
from clipterm.packs.reading import PACKS_DIR, adhoc_spec, is_repo_id, spec_from_json
from clipterm.packs.spec import ClipRef, MethodDefaults, PackDefaults, PackSpec
from clipterm.sanitize import printable

__all__ = [
    "PACKS_DIR", "ClipRef", "MethodDefaults", "PackDefaults", "PackEntry", "PackSpec",
    "builtin_pack_names", "default_pack_name", "get_pack_spec", "list_pack_specs", "list_packs",
    "spec_from_json", "vocabulary_suggestion",
]

DEFAULT_PACK = "digits"  # embedded: always there
PREFERRED_PACK = "cifar10"  # the real models, when their weights are in the cache


def builtin_pack_names() -> list[str]:
    return sorted(p.stem for p in PACKS_DIR.glob("*.json"))


def get_pack_spec(name_or_path: str) -> PackSpec:
    """Find a pack by built-in name, pack JSON path, folder (holding ``pack.json``, or a
    diffusers model), or Hugging Face repo id. Raises a one-line UserError."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise UserError("the model is empty: name a pack (e.g. digits) or a model folder")
    if "\0" in name_or_path:
        raise UserError(f"the model '{printable(name_or_path, 80)}' holds a NUL character")
    if "/" not in name_or_path and name_or_path in builtin_pack_names():
        return spec_from_json(PACKS_DIR / f"{name_or_path}.json")
    try:
        return _spec_from_path(name_or_path)
    except OSError as exc:
        raise UserError(f"cannot use the model '{printable(name_or_path, 200)}': "
                        f"{exc.strerror or exc}") from None


def _spec_from_path(name_or_path: str) -> PackSpec:
    path = Path(name_or_path).expanduser()
    shown = printable(path, 200)
    if path.suffix == ".json":
        if not path.is_file():
            raise UserError(f"pack file not found: {shown}" if not path.exists()
                            else f"pack file {shown} is not a file")
        return spec_from_json(path)
    if path.is_dir():
        if (path / "pack.json").is_file():
            return spec_from_json(path / "pack.json")
        if not ((path / "unet").is_dir() or (path / "config.json").is_file()):
            raise UserError(
                f"{shown} is neither a pack nor a diffusers model folder "
                "(expected pack.json, unet/ or config.json inside)"
            )
        return adhoc_spec(str(path.resolve()), source=str(path))
    if is_repo_id(name_or_path) and not path.exists():  # a Hugging Face repo id
        for spec in list_pack_specs():  # a built-in pack's model: that pack's captions, defaults
            if spec.diffusion == name_or_path:
                return spec
        return adhoc_spec(name_or_path, source=name_or_path)
    raise UserError(
        f"unknown model '{printable(name_or_path, 200)}': choose a pack "
        f"({', '.join(builtin_pack_names())}), a pack JSON, a diffusers model folder, "
        "or a Hugging Face repo id like org/name"
    )


def list_pack_specs() -> list[PackSpec]:
    """The built-in packs (they ship with clipterm, so a broken one is a bug and raises)."""
    return [spec_from_json(PACKS_DIR / f"{n}.json") for n in builtin_pack_names()]


# ----------------------------------------------------------------------------- for front ends
@dataclass(frozen=True)
class PackEntry:
    """A pack as a front end lists it: its spec, or the one-line reason it cannot be used."""

    name: str  # what --model takes for it
    spec: PackSpec | None
    error: str | None = None
    available: bool = False

    @property
    def ok(self) -> bool:
        return self.spec is not None


def list_packs(extra: tuple[str, ...] | list[str] = ()) -> list[PackEntry]:
    """The built-in packs, then each of ``extra`` (packs a user named or the app remembers).

    Never raises: a pack that cannot be read becomes an entry with its one-line error, so a
    broken remembered pack cannot stop the app from starting."""
    from clipterm.packs.availability import pack_availability

    entries: list[PackEntry] = []
    for name in [*builtin_pack_names(), *(e for e in extra if e not in builtin_pack_names())]:
        try:
            spec = get_pack_spec(name)
            available = bool(pack_availability(spec)["available"])
        except UserError as exc:
            entries.append(PackEntry(name=name, spec=None, error=printable(exc, 300)))
            continue
        except Exception as exc:  # noqa: BLE001 - listing must not fail; the entry says why
            entries.append(PackEntry(name=name, spec=None,
                                     error=printable(f"{type(exc).__name__}: {exc}", 300)))
            continue
        entries.append(PackEntry(name=name, spec=spec, available=available))
    return entries


def default_pack_name() -> str:
    """The pack a command uses when none is named: ``cifar10`` when its weights are in the
    cache, else the embedded ``digits`` pack. Never raises; reads no network."""
    from clipterm.packs.availability import pack_availability

    try:
        if pack_availability(get_pack_spec(PREFERRED_PACK))["available"]:
            return PREFERRED_PACK
    except Exception:  # noqa: BLE001 - a default must always be there
        pass
    return DEFAULT_PACK


def vocabulary_suggestion(spec: PackSpec, caption: str) -> str:
    """For a caption a closed-vocabulary pack cannot read: which built-in pack fits, and how
    to get it (``clipterm models --download cifar10``)."""
    from clipterm.packs.availability import pack_availability

    key = caption.strip().casefold()
    candidates = [s for s in list_pack_specs() if s.vocabulary == "open" and s.name != spec.name]
    candidates.sort(key=lambda s: s.name != PREFERRED_PACK)  # the general one first
    if not candidates:
        return "choose a pack with an open vocabulary"
    fits = [s for s in candidates if key in (c.casefold() for c in s.captions)]
    best = (fits or candidates)[0]
    reads = (f"'{printable(caption.strip(), 60)}' is one of its classes" if fits
             else "its CLIP reads any prompt")
    if pack_availability(best)["available"]:
        return f"use --model {best.name} ({reads})"
    return (f"use --model {best.name} ({reads}) after `clipterm models --download "
            f"{best.name}`")
