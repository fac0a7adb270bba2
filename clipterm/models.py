"""Loading: a diffusers UNet2DModel + DDPMScheduler and an open_clip model + tokenizer.

The libraries' own loaders build the models (``from_pretrained`` with ``use_safetensors``,
open_clip's ``create_model`` with ``weights_only=True``), but only from local files clipterm
has checked first (:mod:`clipterm.packs.weights`): a weight file is safetensors, or a PyTorch
file that ``torch.load(weights_only=True)`` reads as plain tensors; a config describes the
architecture its weights fit. Hub models are resolved to a snapshot in the Hugging Face cache
first (:mod:`clipterm.packs.hub`), so the libraries never reach the network themselves.
Problems a user can fix end in one line (:class:`~clipterm.errors.UserError`): missing weights
(with the command that fetches them), a corrupt or truncated file, weights of another
architecture, a pickle where plain weights were expected, a CLIP without weights.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipterm.cutouts import resize_for_clip
from clipterm.errors import DeviceError, UserError
from clipterm.packs import PACKS_DIR, ClipRef, PackSpec, get_pack_spec, hub
from clipterm.packs.availability import OPEN_CLIP_WEIGHTS, diffusers_folder_complete
from clipterm.packs.reading import (
    read_json_object,
    read_scheduler_config,
    retimed,
    scheduler_config_path,
)
from clipterm.packs.weights import (
    SAFETENSORS,
    check_finite,
    count_elements,
    read_pickled_state_dict,
    save_safetensors,
)
from clipterm.sanitize import printable

log = logging.getLogger(__name__)
_REGISTER_LOCK = threading.Lock()
MAX_PARAMETERS = 5_000_000_000
UNET_SAFETENSORS = "diffusion_pytorch_model.safetensors"  # a config describing more is not a model clipterm runs


# ----------------------------------------------------------------------------- devices
def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` prefers CUDA; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked against
    this machine."""
    text = "auto" if name is None else str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index = text.partition(":")[2]
        if text != "cuda" and not (index.isascii() and index.isdigit() and len(index) <= 4):
            raise DeviceError(f"bad device '{printable(name, 40)}': use cuda:N with N a GPU index")
        if not torch.cuda.is_available():
            raise DeviceError(f"device {text!r} asked for, but CUDA is not available on this "
                              "machine: use --device cpu (or auto)")
        if text != "cuda" and int(index) >= torch.cuda.device_count():
            raise DeviceError(f"device {text!r} asked for, but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
        return torch.device(text)
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("device 'mps' asked for, but MPS is not available on this machine")
        return torch.device("mps")
    if not text:
        raise DeviceError("the device is empty: choose auto, cpu, cuda, cuda:N or mps")
    raise DeviceError(f"unknown device '{printable(name, 40)}': choose auto, cpu, cuda, cuda:N or mps")


# ----------------------------------------------------------------------------- hub helpers
def hub_offline() -> bool:
    """Whether huggingface_hub is offline (HF_HUB_OFFLINE, else TRANSFORMERS_OFFLINE)."""
    return hub.offline()


def hub_cache_dir() -> str:
    return str(hub.cache_root())


# ----------------------------------------------------------------------------- diffusion
def load_diffusion(source: str, device: torch.device, get_it: str | None = None) -> tuple[Any, Any]:
    """Load (UNet2DModel, DDPMScheduler) from a folder or a Hugging Face repo id.

    Both layouts work: ``unet/`` + ``scheduler/`` subfolders, or flat (``config.json`` and
    ``scheduler_config.json`` side by side). Returns the UNet in eval mode with frozen weights.
    ``get_it`` is what ``clipterm models --download`` takes to fetch a missing repo.
    """
    path = Path(source)
    if path.is_absolute() or path.exists():
        if not path.is_dir():
            raise UserError(f"diffusion model folder not found: {printable(path)}")
        folder = path
    else:
        folder = hub.resolve_repo(source, diffusers_folder_complete,
                                  what=f"the diffusion model {source!r}", get_it=get_it or source)
    unet_dir = folder / "unet" if (folder / "unet").is_dir() else folder
    unet = _load_unet(unet_dir)
    scheduler = _load_scheduler(folder)
    _check_variance_output(unet, scheduler, folder)
    unet.eval().requires_grad_(False).to(device)
    return unet, scheduler


def _unet_weights(unet_dir: Path) -> Path:
    """The UNet's weights: safetensors where there are any, else the ``.bin`` (read through
    ``weights_only`` and converted); variants (fp16, non_ema) are not picked."""
    for name in (UNET_SAFETENSORS, "diffusion_pytorch_model.bin"):
        if (unet_dir / name).is_file():
            return unet_dir / name
    if (unet_dir / "diffusion_pytorch_model.safetensors.index.json").is_file():
        raise UserError(f"the diffusion model in {printable(unet_dir)} is sharded: clipterm "
                        "loads one diffusion_pytorch_model.safetensors")
    raise UserError(f"no weights in {printable(unet_dir)}: expected "
                    "diffusion_pytorch_model.safetensors (or .bin)")


def _load_unet(unet_dir: Path) -> Any:
    from pydantic import ValidationError

    from clipterm.packs.schema import UNetConfigFile, first_error

    config_path = unet_dir / "config.json"
    config = read_json_object(config_path, "UNet config")
    try:
        UNetConfigFile.model_validate(config)
    except ValidationError as exc:
        raise UserError(f"UNet config {printable(config_path)}: {first_error(exc)}") from None
    n_params = _unet_parameter_count(config, config_path)
    source = _unet_weights(unet_dir)
    with contextlib.ExitStack() as stack:
        load_dir, weights = unet_dir, source
        if source.suffix != SAFETENSORS:
            load_dir, weights = _as_safetensors(unet_dir, source, stack)
        return _load_unet_safetensors(load_dir, weights, source, n_params, config_path)


def _as_safetensors(unet_dir: Path, weights: Path, stack: contextlib.ExitStack
                    ) -> tuple[Path, Path]:
    """A ``.bin`` UNet read with ``weights_only`` (nothing in it runs) and written as
    safetensors: once, next to the original, in the Hugging Face cache (so the next load reads
    safetensors); in a temporary folder for a folder of the user's (left as it is) or a cache
    that cannot be written. Returns (the folder to load from, its safetensors file)."""
    state = read_pickled_state_dict(weights, "diffusion weights")
    if not state:
        raise UserError(f"diffusion weights {printable(weights)} holds no weights")
    if hub.in_cache(weights):
        try:
            return unet_dir, save_safetensors(state, unet_dir / UNET_SAFETENSORS, weights)
        except OSError as exc:  # a read-only cache, a full disk: convert for this load only
            log.info("could not keep the safetensors copy of %s: %s", weights, exc)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clipterm-unet-")))
    shutil.copyfile(unet_dir / "config.json", tmp / "config.json")
    return tmp, save_safetensors(state, tmp / UNET_SAFETENSORS, weights)


def _load_unet_safetensors(unet_dir: Path, weights: Path, source: Path, n_params: int,
                           config_path: Path) -> Any:
    """The UNet of ``unet_dir`` from its safetensors ``weights`` (made from ``source``, the
    file messages name)."""
    from diffusers import UNet2DModel

    n_weights = count_elements(weights, "diffusion weights")
    if n_params > n_weights:
        raise UserError(
            f"the diffusion weights {printable(source)} hold {n_weights:,} numbers but "
            f"{printable(config_path)} describes a model of {n_params:,} parameters: they are "
            "of another architecture"
        )
    try:
        with _quiet():
            unet, info = UNet2DModel.from_pretrained(
                str(unet_dir), use_safetensors=True,
                local_files_only=True, low_cpu_mem_usage=False, output_loading_info=True,
            )
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise UserError(f"the diffusion weights {printable(source)} do not fit the "
                        f"architecture in config.json: {_fit_detail(exc)}") from None
    unfit = list(info.get("missing_keys", [])) + [m[0] if isinstance(m, tuple) else m
                                                 for m in info.get("mismatched_keys", [])]
    if unfit:
        raise UserError(f"the diffusion weights {printable(source)} do not fit the architecture "
                        f"in config.json: {len(unfit)} parameter(s) missing or of another shape "
                        f"(e.g. {printable(sorted(unfit)[0], 80)})")
    check_finite(unet, "the diffusion weights", source)
    return unet


def _unet_parameter_count(config: dict[str, Any], config_path: Path) -> int:
    """Build the UNet a config describes without memory (on the meta device) and count its
    parameters: a config that diffusers cannot build, or that describes an absurd model, is
    refused before anything is allocated."""
    from diffusers import UNet2DModel

    try:
        with _quiet(), torch.device("meta"):
            model = UNet2DModel.from_config(config)
        n = sum(int(p.numel()) for p in model.parameters())
    except Exception as exc:  # noqa: BLE001 - a config from outside can fail in any way
        raise UserError(f"UNet config {printable(config_path)} does not describe a model "
                        f"diffusers can build: {_first_line(exc)}") from None
    if n > MAX_PARAMETERS:
        raise UserError(f"UNet config {printable(config_path)} describes {n:,} parameters, more "
                        "than clipterm loads")
    if int(model.config.in_channels) != 3 or int(model.config.out_channels) not in (3, 6):
        raise UserError(f"UNet config {printable(config_path)}: clipterm guides RGB models that "
                        "predict the noise (in_channels 3; out_channels 3, or 6 with a learned "
                        "variance)")
    return n


def _check_variance_output(unet: Any, scheduler: Any, folder: Path) -> None:
    """A UNet with 6 output channels predicts a learned variance, which its scheduler must
    read (``variance_type: learned_range``); a learned-range scheduler needs those channels."""
    from clipterm.schedule import LEARNED_VARIANCES, SUPPORTED_VARIANCES

    variance = scheduler.config.get("variance_type", "fixed_small")
    if variance not in SUPPORTED_VARIANCES:
        raise UserError(f"the scheduler of {printable(folder)} has variance_type "
                        f"{printable(repr(variance), 40)}: clipterm samples with "
                        f"{', '.join(SUPPORTED_VARIANCES)}")
    learned = variance in LEARNED_VARIANCES
    out = int(unet.config.out_channels)
    if learned and out != 2 * int(unet.config.in_channels):
        raise UserError(f"the scheduler of {printable(folder)} learns the variance "
                        f"(variance_type {scheduler.config.get('variance_type')}), but its UNet "
                        f"has {out} output channels, not {2 * int(unet.config.in_channels)}")
    if not learned and out != int(unet.config.in_channels):
        raise UserError(f"the UNet of {printable(folder)} has {out} output channels (a learned "
                        "variance), but its scheduler's variance_type is "
                        f"{printable(repr(scheduler.config.get('variance_type')), 40)}: "
                        "expected learned_range")


def _load_scheduler(folder: Path) -> Any:
    from diffusers import DDPMScheduler

    path = scheduler_config_path(folder)
    if path is None:
        raise UserError(f"no scheduler config in {printable(folder)}: expected "
                        "scheduler/scheduler_config.json or scheduler_config.json")
    config = read_scheduler_config(path)
    try:
        with _quiet():
            return DDPMScheduler.from_config(config)
    except (ValueError, TypeError, KeyError, NotImplementedError, ZeroDivisionError) as exc:
        raise UserError(f"scheduler config {printable(path)} cannot be used: "
                        f"{_first_line(exc)}") from None


# ----------------------------------------------------------------------------- CLIP specs
def clip_spec_string(clip: ClipRef | Mapping[str, Any] | str) -> str:
    """What ``--clip`` takes for this CLIP."""
    if isinstance(clip, str):
        return clip
    return clip_ref(clip).label


def parse_clip_spec(spec: str) -> dict[str, Any]:
    """``MODEL:PRETRAINED`` | ``CONFIG.json:WEIGHTS`` | ``local-dir:PATH`` | ``hf-hub:ORG/NAME``.

    A spec without weights (``ViT-B-32``, ``ViT-B-32:``, ``cfg.json``) is refused: open_clip
    would build that CLIP with random weights, and guidance by it would be noise."""
    text = str(spec).strip()
    shown = printable(text, 200)
    if not text:
        raise UserError("the CLIP spec is empty: use MODEL:PRETRAINED, e.g. ViT-B-32:openai")
    if "\0" in text:
        raise UserError(f"the CLIP spec {shown!r} holds a NUL character")
    if text.startswith(("local-dir:", "hf-hub:")):
        if not text.partition(":")[2].strip():
            raise UserError(f"the CLIP spec {shown!r} names no folder or repo")
        return {"model": text}
    if ".json:" in text or text.endswith(".json"):
        config, sep, weights = text.partition(".json:")
        if not weights.strip():
            raise UserError(f"the CLIP spec {shown!r} names a config but no weights, which would "
                            "build a CLIP with random weights: use CONFIG.json:WEIGHTS.safetensors")
        return {"config": config + ".json" if sep else config, "weights": weights}
    model, _, pretrained = text.partition(":")
    if not model.strip():
        raise UserError(f"bad CLIP spec {shown!r}: use MODEL:PRETRAINED, e.g. ViT-B-32:openai")
    if not pretrained.strip():
        raise UserError(f"the CLIP spec {shown!r} names no pretrained weights, which would build "
                        "a CLIP with random weights: use MODEL:PRETRAINED, e.g. ViT-B-32:openai")
    return {"model": model.strip(), "pretrained": pretrained.strip()}


def clip_ref(clip: ClipRef | Mapping[str, Any] | str) -> ClipRef:
    """A CLIP spec string, a dict as :func:`parse_clip_spec` returns, or a ClipRef, as a ClipRef."""
    if isinstance(clip, ClipRef):
        return clip
    d = parse_clip_spec(clip) if isinstance(clip, str) else dict(clip)
    model = d.get("model")
    if isinstance(model, str) and model.startswith(("local-dir:", "hf-hub:")):
        scheme, _, rest = model.partition(":")
        return ClipRef(kind=scheme, path=rest)  # type: ignore[arg-type]
    if d.get("config") or d.get("weights"):
        if not d.get("weights"):
            raise UserError("the CLIP config names no weights, which would build a CLIP with "
                            "random weights")
        return ClipRef(kind="files", model=model, config=d.get("config"), weights=str(d["weights"]))
    if not model or not d.get("pretrained"):
        raise UserError(f"the CLIP {printable(d, 200)} names no pretrained weights, which would "
                        "build a CLIP with random weights")
    return ClipRef(kind="pretrained", model=str(model), pretrained=str(d["pretrained"]),
                   hf_hub=d.get("hf_hub"))


# ----------------------------------------------------------------------------- CLIP loading
def load_clip(clip: ClipRef | Mapping[str, Any] | str, device: torch.device,
              get_it: str | None = None) -> tuple[Any, Any, str]:
    """Load an open_clip model (eval, frozen) and its tokenizer. Returns (model, tokenizer, name).

    ``get_it`` is what ``clipterm models --download`` takes to fetch missing weights (default:
    the CLIP spec itself)."""
    import open_clip

    ref = clip_ref(clip)
    get_it = get_it or ref.label
    kwargs: dict[str, Any] = {}
    if ref.kind == "files":
        weights = Path(ref.weights or "").expanduser()
        if ref.config:
            name = _register_clip_config(Path(ref.config).expanduser())
        else:
            name = _builtin_clip(ref.model or "")
        model_name, pretrained, checked = name, str(weights), [weights]
    elif ref.kind == "pretrained":
        name = _builtin_clip(ref.model or "")
        weights, kwargs = _pretrained_weights(ref, name, get_it)
        model_name, pretrained, checked = name, str(weights), [weights]
    else:
        folder = _clip_folder(ref, get_it)
        model_name = name = f"local-dir:{folder}"
        pretrained = None
        checked = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth")]
        if not checked:
            raise UserError(f"no CLIP weights in {printable(folder)} (expected "
                            "open_clip_model.safetensors)")
    for w in checked:
        count_elements(w, "CLIP weights")
    try:
        with _quiet():
            model = open_clip.create_model(model_name, pretrained=pretrained, device="cpu",
                                           weights_only=True, require_pretrained=True, **kwargs)
            tokenizer = open_clip.get_tokenizer(model_name)
    except RuntimeError as exc:
        raise UserError(f"the CLIP weights {printable(checked[0])} do not fit {printable(name)}: "
                        f"{_fit_detail(exc)}") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"cannot load CLIP {printable(name)}: {_first_line(exc)}") from None
    check_finite(model, "the CLIP weights", checked[0])
    model.eval().requires_grad_(False).to(device)
    return model, tokenizer, name.removeprefix("local-dir:") if ref.kind == "local-dir" else name


def _builtin_clip(model: str) -> str:
    import open_clip

    if model not in open_clip.list_models():
        raise UserError(f"unknown CLIP model '{printable(model, 80)}': choose one of "
                        "open_clip.list_models(), e.g. ViT-B-32")
    return model


def _register_clip_config(config: Path) -> str:
    """Register an architecture config with open_clip under its file name, refusing one whose
    name is already taken by a different architecture (a built-in or an earlier file)."""
    import open_clip

    data = read_json_object(config, "CLIP config")
    if not all(isinstance(data.get(k), (dict, int)) for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise UserError(f"CLIP config {printable(config)} is not an open_clip model config "
                        "(expected embed_dim, vision_cfg and text_cfg)")
    name = config.stem
    with _REGISTER_LOCK:
        known = open_clip.get_model_config(name)
        if known is None:
            open_clip.add_model_config(config)
        elif known != data:
            raise UserError(f"the CLIP config {printable(config)} is named like another "
                            f"architecture ({printable(name)}): rename the file")
    return name


def _safe_alternatives(filename: str) -> list[str]:
    """Where the weights of a pretrained tag are, best first: safetensors before ``.bin``
    (the names open_clip and the timm repos use)."""
    if filename == "open_clip_pytorch_model.bin":
        return ["open_clip_model.safetensors", filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _pretrained_weights(ref: ClipRef, name: str, get_it: str) -> tuple[Path, dict[str, Any]]:
    """The cached (or, online, downloaded) weights file of MODEL:TAG, and the create_model
    arguments the tag needs (QuickGELU, preprocessing)."""
    import open_clip

    tag = ref.pretrained or ""
    pcfg = open_clip.get_pretrained_cfg(name, tag)
    if not pcfg:
        if Path(tag).expanduser().is_file():  # open_clip also takes a weights file here
            return Path(tag).expanduser(), {}
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise UserError(f"unknown pretrained weights '{printable(tag, 80)}' for {name}: choose "
                        f"one of {', '.join(tags) or '(none)'}, or give a weights file")
    kwargs: dict[str, Any] = {
        "force_quick_gelu": bool(pcfg.get("quick_gelu", False)),
        "force_preprocess_cfg": {k: pcfg[k] for k in ("mean", "std", "interpolation", "resize_mode")
                                 if k in pcfg},
    }
    hub_id = (ref.hf_hub or pcfg.get("hf_hub") or "").rstrip("/")
    if not hub_id:
        raise UserError(f"the CLIP weights {name}:{tag} have no Hugging Face copy: clipterm "
                        "loads pretrained CLIPs from the Hugging Face cache only")
    repo, filename = hub_id, "open_clip_pytorch_model.bin"
    if hub_id.count("/") > 1:
        repo, _, filename = hub_id.rpartition("/")
    candidates = _safe_alternatives(filename)
    for c in candidates:
        found = hub.cached_file(repo, c)
        if found is not None:
            return found, kwargs
    hub.checked_cache_root()
    if hub.offline():
        raise hub.not_downloaded(f"the CLIP weights {name}:{tag}", get_it)
    return hub.download_file(repo, candidates), kwargs


def _clip_folder(ref: ClipRef, get_it: str) -> Path:
    """The folder of a local-dir or hf-hub CLIP, with its open_clip_config.json checked."""
    if ref.kind == "hf-hub":
        def complete(p: Path) -> bool:
            return (p / "open_clip_config.json").is_file() and any(
                (p / w).is_file() for w in OPEN_CLIP_WEIGHTS)

        folder = hub.resolve_repo(ref.path or "", complete, what=f"the CLIP hf-hub:{ref.path}",
                                  get_it=get_it)
    else:
        folder = Path(ref.path or "").expanduser()
        if not folder.is_dir():
            raise UserError(f"CLIP folder not found: {printable(folder)}")
    config = read_json_object(folder / "open_clip_config.json", "CLIP config")
    if not isinstance(config.get("model_cfg"), dict):
        raise UserError(f"CLIP config {printable(folder / 'open_clip_config.json')} has no "
                        "model_cfg object")
    return folder


# ----------------------------------------------------------------------------- the pack
_NOT_LOADED = object()


@dataclass
class LoadedPack:
    """A pack with its models on a device, ready for sampling.

    The judge (evaluation only) is loaded the first time ``pack.judge`` (or
    :meth:`load_judge`) is asked for: generating never loads it.
    """

    spec: PackSpec
    device: torch.device
    unet: Any
    scheduler: Any
    clip: Any
    tokenizer: Any
    clip_name: str
    _text_cache: dict[tuple[str, ...], torch.Tensor] = field(default_factory=dict, repr=False)
    _judge: Any = field(default=_NOT_LOADED, repr=False)
    _judge_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def load_judge(self) -> Any:
        """The pack's judge on this pack's device (None for a pack without one), loaded once."""
        with self._judge_lock:
            if self._judge is _NOT_LOADED:
                judge = None
                if self.spec.judge:
                    from clipterm.judge import load_judge

                    judge = load_judge(self.spec.judge, self.device)
                self._judge = judge
            return self._judge

    @property
    def judge(self) -> Any:
        return self.load_judge()

    @property
    def judge_loaded(self) -> bool:
        return self._judge is not _NOT_LOADED

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
    def defaults(self) -> Any:
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
        """The diffusion model's training steps: the spec's, which loading checked against
        the scheduler (one source)."""
        return self.spec.train_steps

    @property
    def clip_image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def clip_mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP's normalisation, from the model's own preprocessing config (open_clip sets it
        from the pretrained tag, or its defaults: OpenAI's statistics)."""
        cfg = getattr(self.clip.visual, "preprocess_cfg", None) or {}
        if "mean" not in cfg or "std" not in cfg:
            from open_clip.transform import PreprocessCfg

            cfg = {"mean": PreprocessCfg().mean, "std": PreprocessCfg().std, **cfg}
        mean = torch.tensor(cfg["mean"], device=self.device)
        std = torch.tensor(cfg["std"], device=self.device)
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

    def clip_preprocess(self, images01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] as CLIP's image tower takes them: resized to its resolution
        (:func:`resize_for_clip`) and normalised with its mean and std. Differentiable."""
        x = resize_for_clip(images01, self.clip_image_size)
        mean, std = self.clip_mean_std
        return (x - mean.to(x.dtype)) / std.to(x.dtype)

    def encode_image(self, images01: torch.Tensor) -> torch.Tensor:
        """Unit-norm CLIP embeddings [B, D] of images in [0, 1] at the diffusion resolution.

        Differentiable: resizes to CLIP's resolution (bicubic) and applies CLIP's normalisation.
        """
        return self.encode_clip_input(images01, already_normalised=False)

    def encode_clip_input(self, x: torch.Tensor, already_normalised: bool) -> torch.Tensor:
        if already_normalised:
            x = resize_for_clip(x, self.clip_image_size)
        else:
            x = self.clip_preprocess(x)
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

    Loaded packs are cached per (pack, device, clip) in this process. The judge is not loaded
    here (see :attr:`LoadedPack.judge`).
    """
    spec = get_pack_spec(name_or_path)
    clip_override = clip_ref(clip) if clip is not None else None
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    key = (spec.source + "|" + (clip or ""), str(dev))
    if cache:
        with _PACK_LOCK:
            if key in _PACK_CACHE:
                return _PACK_CACHE[key]
    unet, scheduler = load_diffusion(spec.diffusion, dev, get_it=_get_it(spec, name_or_path))
    spec = _checked_train_steps(spec, int(scheduler.config.num_train_timesteps))
    if clip_override is not None:
        clip_model, tokenizer, clip_name = load_clip(clip_override, dev)
    else:
        clip_model, tokenizer, clip_name = load_clip(spec.clip, dev,
                                                     get_it=_get_it(spec, name_or_path))
    pack = LoadedPack(spec=spec, device=dev, unet=unet, scheduler=scheduler, clip=clip_model,
                      tokenizer=tokenizer, clip_name=clip_name)
    if cache:
        with _PACK_LOCK:
            _PACK_CACHE[key] = pack
    return pack


def _get_it(spec: PackSpec, name_or_path: str) -> str:
    """What ``clipterm models --download`` takes to fetch this pack's weights."""
    return spec.name if Path(spec.source).parent == PACKS_DIR else name_or_path


def _checked_train_steps(spec: PackSpec, scheduler_steps: int) -> PackSpec:
    """One source of train_steps: the spec's, checked against the scheduler it describes (or
    corrected, where the spec had to guess before the model was downloaded)."""
    if scheduler_steps == spec.train_steps:
        return spec
    if spec.train_steps_declared:
        raise UserError(f"the pack {spec.name} says train_steps {spec.train_steps}, but its "
                        f"diffusion model's scheduler has {scheduler_steps}")
    return retimed(spec, scheduler_steps)


# ----------------------------------------------------------------------------- downloads
def download_pack(name: str) -> list[str]:
    """Fetch a pack's Hub weights (or one CLIP, given as MODEL:PRETRAINED) into the Hugging
    Face cache: only what loading needs. Returns what was fetched (empty for an embedded pack)."""
    try:
        spec = get_pack_spec(name)
    except UserError:
        if ":" not in name:
            raise
        ref = clip_ref(name)
        if ref.kind != "pretrained":
            raise UserError(f"'{printable(name, 200)}' is neither a pack nor MODEL:PRETRAINED") from None
        return [_download_clip(ref)]
    fetched: list[str] = []
    if not spec.diffusion_is_local:
        hub.download_repo(spec.diffusion)
        fetched.append(spec.diffusion)
    if spec.clip.kind == "pretrained":
        fetched.append(_download_clip(spec.clip))
    elif spec.clip.kind == "hf-hub":
        hub.download_repo(spec.clip.path or "")
        fetched.append(spec.clip.label)
    return fetched


def _download_clip(ref: ClipRef) -> str:
    """Fetch the weights of MODEL:PRETRAINED (safetensors where the repo has them)."""
    _pretrained_weights(ref, _builtin_clip(ref.model or ""), get_it=ref.label)
    return ref.label


# ----------------------------------------------------------------------------- helpers
def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision results to fp32 (logits, softmax and guidance math stay in fp32)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc else ""
    return printable((text.splitlines() or [type(exc).__name__])[0], 300)


def _fit_detail(exc: BaseException) -> str:
    """The telling line of a state-dict mismatch (torch puts a header line first)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(("size mismatch for", "Missing key(s)", "Unexpected key(s)")):
            return printable(line, 200)
    return _first_line(exc)


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

