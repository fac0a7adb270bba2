"""Loading: a diffusers UNet2DModel + DDPMScheduler and an open_clip model + tokenizer.

Everything goes through the libraries' own loaders (``from_pretrained``, open_clip's factory),
with safe weight formats (safetensors, or torch.load with ``weights_only=True`` inside open_clip).
Missing weights become a one-line :class:`ModelUnavailableError` that says what is missing,
where it was looked for and how to get it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipterm.errors import DeviceError, ModelUnavailableError, UserError
from clipterm.packs import PackSpec, get_pack_spec

log = logging.getLogger(__name__)
_REGISTER_LOCK = threading.Lock()


# ----------------------------------------------------------------------------- devices
def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` prefers CUDA; ``cpu``, ``cuda`` and ``cuda:N`` are checked against this machine."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for, but CUDA is not available on this machine")
        if name.startswith("cuda:"):
            idx = name.split(":", 1)[1]
            if not idx.isdigit():
                raise DeviceError(f"bad device {name!r}: use cuda:N with N a GPU index")
            if int(idx) >= torch.cuda.device_count():
                raise DeviceError(
                    f"device {name!r} asked for, but this machine has "
                    f"{torch.cuda.device_count()} CUDA device(s)"
                )
        return torch.device(name)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device 'mps' asked for, but MPS is not available on this machine")
        return torch.device("mps")
    raise DeviceError(f"unknown device {name!r}: choose auto, cpu, cuda or cuda:N")


# ----------------------------------------------------------------------------- hub helpers
def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _missing(what: str, detail: str = "") -> ModelUnavailableError:
    where = f"looked in the Hugging Face cache {hub_cache_dir()}"
    if hub_offline():
        where += " (HF_HUB_OFFLINE is set, so nothing was downloaded)"
    msg = (
        f"{what} is not available here: {where}. On a machine with internet run "
        "`clipterm models --download cifar10` (or copy the cache folder), or use the offline "
        "pack: --model digits"
    )
    if detail:
        msg += f" [{detail}]"
    return ModelUnavailableError(msg)


# ----------------------------------------------------------------------------- diffusion
def load_diffusion(source: str, device: torch.device) -> tuple[Any, Any]:
    """Load (UNet2DModel, DDPMScheduler) from a folder or a Hugging Face repo id.

    Both layouts work: ``unet/`` + ``scheduler/`` subfolders, or flat (``config.json`` and
    ``scheduler_config.json`` side by side). Returns the UNet in eval mode with frozen weights.
    """
    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(source)
    if path.is_absolute() or path.exists():
        if not path.is_dir():
            raise UserError(f"diffusion model folder not found: {path}")
        sub = (path / "unet").is_dir()
        sched_sub = "scheduler" if (path / "scheduler").is_dir() else None
        try:
            with _quiet():
                unet = UNet2DModel.from_pretrained(path, subfolder="unet" if sub else None)
                scheduler = DDPMScheduler.from_pretrained(path, subfolder=sched_sub)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the diffusion model in {path}: {_first_line(exc)}") from None
    else:
        unet, scheduler = _load_diffusion_hub(source)
    unet.eval().requires_grad_(False).to(device)
    return unet, scheduler


def _load_diffusion_hub(repo: str) -> tuple[Any, Any]:
    from diffusers import DDPMScheduler, UNet2DModel

    attempts = [True] if hub_offline() else [True, False]
    last: Exception | None = None
    for local_only in attempts:
        for sub in ("unet", None):
            try:
                with _quiet():
                    unet = UNet2DModel.from_pretrained(
                        repo, subfolder=sub, local_files_only=local_only
                    )
                    scheduler = DDPMScheduler.from_pretrained(
                        repo, subfolder="scheduler" if sub else None, local_files_only=local_only
                    )
                return unet, scheduler
            except Exception as exc:  # hub errors come in many types; all mean "not here"
                last = exc
    raise _missing(f"the diffusion model {repo!r}", _first_line(last) if last else "")


# ----------------------------------------------------------------------------- CLIP
def clip_spec_string(clip: dict[str, Any] | str) -> str:
    if isinstance(clip, str):
        return clip
    if "config" in clip:
        return f"{clip['config']}:{clip.get('weights', '')}"
    return f"{clip['model']}:{clip.get('pretrained', '')}"


def parse_clip_spec(spec: str) -> dict[str, Any]:
    """``MODEL:PRETRAINED`` | ``CONFIG.json:WEIGHTS`` | ``local-dir:PATH`` | ``hf-hub:ORG/NAME``."""
    spec = spec.strip()
    if spec.startswith(("local-dir:", "hf-hub:")):
        return {"model": spec}
    if ".json:" in spec or spec.endswith(".json"):
        config, _, weights = spec.partition(".json:")
        return {"config": config + ".json" if _ else config, "weights": weights or None}
    model, _, pretrained = spec.partition(":")
    if not model:
        raise UserError(f"bad CLIP spec {spec!r}: use MODEL:PRETRAINED, e.g. ViT-B-32:openai")
    return {"model": model, "pretrained": pretrained or None}


def load_clip(clip: dict[str, Any] | str, device: torch.device) -> tuple[Any, Any, str]:
    """Load an open_clip model (eval, frozen) and its tokenizer. Returns (model, tokenizer, name)."""
    import open_clip

    spec = parse_clip_spec(clip) if isinstance(clip, str) else dict(clip)
    if "config" in spec:
        config = Path(spec["config"])
        if not config.is_file():
            raise UserError(f"CLIP config not found: {config}")
        name = config.stem
        with _REGISTER_LOCK:
            if name not in open_clip.list_models():
                open_clip.add_model_config(config)
        pretrained = spec.get("weights")
        if pretrained and not Path(pretrained).is_file():
            raise UserError(f"CLIP weights not found: {pretrained}")
    else:
        name = spec["model"]
        pretrained = spec.get("pretrained")
        if not name.startswith(("local-dir:", "hf-hub:")) and name not in open_clip.list_models():
            raise UserError(f"unknown CLIP model {name!r}: see open_clip.list_models()")
    local_file = bool(pretrained) and Path(str(pretrained)).is_file()
    try:
        with _quiet():
            model = open_clip.create_model(
                name, pretrained=pretrained or None, device=device, weights_only=True
            )
        tokenizer = open_clip.get_tokenizer(name)
    except RuntimeError as exc:
        if local_file:
            raise UserError(f"CLIP weights {pretrained} do not fit {name}: {_first_line(exc)}") from None
        raise
    except Exception as exc:
        if local_file or name.startswith("local-dir:"):
            raise UserError(f"cannot load CLIP {name}: {_first_line(exc)}") from None
        raise _missing(f"the CLIP weights {name}:{pretrained}", _first_line(exc)) from None
    model.eval().requires_grad_(False)
    return model, tokenizer, name


# ----------------------------------------------------------------------------- the pack
@dataclass
class LoadedPack:
    """A pack with its models on a device, ready for sampling."""

    spec: PackSpec
    device: torch.device
    unet: Any
    scheduler: Any
    clip: Any
    tokenizer: Any
    clip_name: str
    judge: Any = None
    _text_cache: dict[tuple[str, ...], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def captions(self) -> tuple[str, ...]:
        return self.spec.captions

    @property
    def default_prompt(self) -> str:
        return self.spec.default_prompt

    @property
    def defaults(self) -> dict[str, Any]:
        return self.spec.defaults

    @property
    def image_size(self) -> int:
        size = self.unet.config.sample_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def train_steps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def clip_image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def clip_mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = getattr(self.clip.visual, "preprocess_cfg", {}) or {}
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        mean = torch.tensor(cfg.get("mean", OPENAI_DATASET_MEAN), device=self.device)
        std = torch.tensor(cfg.get("std", OPENAI_DATASET_STD), device=self.device)
        return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return _upcast(self.clip.logit_scale.exp())

    @torch.no_grad()
    def encode_text(self, captions: tuple[str, ...]) -> torch.Tensor:
        """Unit-norm text embeddings [C, D], computed once per caption tuple."""
        if captions not in self._text_cache:
            tokens = self.tokenizer(list(captions)).to(self.device)
            emb = _upcast(self.clip.encode_text(tokens))
            self._text_cache[captions] = F.normalize(emb, dim=-1)
        return self._text_cache[captions]

    def encode_image(self, images01: torch.Tensor) -> torch.Tensor:
        """Unit-norm CLIP embeddings [B, D] of images in [0, 1] at the diffusion resolution.

        Differentiable: resizes to CLIP's resolution (bicubic) and applies CLIP's normalisation.
        """
        return self.encode_clip_input(images01, already_normalised=False)

    def encode_clip_input(self, x: torch.Tensor, already_normalised: bool) -> torch.Tensor:
        size = self.clip_image_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        if not already_normalised:
            mean, std = self.clip_mean_std
            x = (x - mean) / std
        emb = _upcast(self.clip.encode_image(x))
        return F.normalize(emb, dim=-1)


_PACK_CACHE: dict[tuple[str, str], LoadedPack] = {}
_PACK_LOCK = threading.Lock()


def load_pack(
    name_or_path: str = "digits",
    device: str | torch.device = "auto",
    clip: str | None = None,
    cache: bool = True,
) -> LoadedPack:
    """Load a pack's models onto a device. ``clip`` overrides the pack's CLIP (a spec string).

    Loaded packs are cached per (pack, device, clip) in this process.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    spec = get_pack_spec(name_or_path)
    key = (spec.source + "|" + (clip or ""), str(dev))
    if cache:
        with _PACK_LOCK:
            if key in _PACK_CACHE:
                return _PACK_CACHE[key]
    unet, scheduler = load_diffusion(spec.diffusion, dev)
    clip_model, tokenizer, clip_name = load_clip(clip if clip else spec.clip, dev)
    judge = None
    if spec.judge and Path(spec.judge).is_dir():
        from clipterm.judge import load_judge

        judge = load_judge(spec.judge, dev)
    pack = LoadedPack(
        spec=spec,
        device=dev,
        unet=unet,
        scheduler=scheduler,
        clip=clip_model,
        tokenizer=tokenizer,
        clip_name=clip_name,
        judge=judge,
    )
    if cache:
        with _PACK_LOCK:
            _PACK_CACHE[key] = pack
    return pack


def download_pack(name: str) -> list[str]:
    """Fetch a pack's hub weights into the standard caches. Returns what was fetched."""
    spec = get_pack_spec(name)
    fetched: list[str] = []
    if not spec.diffusion_is_local:
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(spec.diffusion)
        except Exception as exc:
            raise ModelUnavailableError(
                f"could not download {spec.diffusion}: {_first_line(exc)}"
            ) from None
        fetched.append(spec.diffusion)
    clip_spec = parse_clip_spec(spec.clip) if isinstance(spec.clip, str) else dict(spec.clip)
    if "config" not in clip_spec and clip_spec.get("pretrained"):
        import open_clip

        try:
            open_clip.create_model(clip_spec["model"], pretrained=clip_spec["pretrained"])
        except Exception as exc:
            raise ModelUnavailableError(
                f"could not download CLIP {clip_spec['model']}:{clip_spec['pretrained']}: "
                f"{_first_line(exc)}"
            ) from None
        fetched.append(f"{clip_spec['model']}:{clip_spec['pretrained']}")
    return fetched


# ----------------------------------------------------------------------------- helpers
def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision results to fp32 (logits, softmax and guidance math stay in fp32)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc else ""
    return (text.splitlines() or [type(exc).__name__])[0][:300]


@contextlib.contextmanager
def _quiet():
    """Silence the libraries' own chatter (progress bars, info logs) while loading.

    Uses the libraries' logging switches, not a redirect of sys.stderr (Textual draws there).
    """
    import diffusers
    import huggingface_hub

    diffusers.utils.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
    yield
