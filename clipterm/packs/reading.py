"""Reading packs: a pack JSON (checked against :mod:`clipterm.packs.schema`), a bare diffusers
folder, or a Hub repo id, into a typed :class:`~clipterm.packs.spec.PackSpec`.

Nothing read here is trusted: a file is read as UTF-8 with a size cap, JSON with duplicate keys
or NaN is refused, every path a pack names must lie inside the pack's folder, and every problem
ends in one :class:`~clipterm.errors.UserError` line that names the file and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from clipterm.errors import UserError
from clipterm.packs import hub
from clipterm.packs.schema import (
    ClipFile,
    DefaultsFile,
    PackFile,
    SchedulerConfigFile,
    first_error,
)
from clipterm.packs.spec import (
    METHOD_NAMES,
    ClipRef,
    MethodDefaults,
    PackDefaults,
    PackSpec,
)
from clipterm.sanitize import printable

PACKS_DIR = Path(__file__).resolve().parent
MAX_JSON_BYTES = 1 << 20
FALLBACK_TRAIN_STEPS = 1000
# A Hugging Face repo id, as huggingface_hub validates it: ORG/NAME, no "--" or "..".
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
# What the JSON may leave out: the settings every pack had before defaults were typed.
BASE_DEFAULTS = {"sampler": "ddpm", "batch": 100, "scale": 0.0, "opt_iters": 20, "lr": 0.05,
                 "grad_norm": "rms", "cutouts": 0, "cut_pow": 1.0, "augment": False,
                 "grad_checkpointing": False}


def is_repo_id(text: str) -> bool:
    return bool(REPO_ID.match(text)) and "--" not in text and ".." not in text


# ----------------------------------------------------------------------------- JSON files
def read_json_file(path: Path, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in ``path``: UTF-8 text (a BOM is allowed), at most ``max_bytes``, no
    duplicate keys, no NaN or Infinity. Raises one-line UserErrors that name ``what``."""
    shown = printable(path)
    try:
        if not path.is_file():
            raise UserError(f"{what} {shown} is not a file" if path.exists()
                            else f"{what} not found: {shown}")
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UserError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UserError(f"{what} {shown} is larger than {max_bytes // 1024} KiB: not a config file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {shown} is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                        f"offset {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {shown} is not valid JSON: {exc.msg} at line {exc.lineno} "
                        f"column {exc.colno}") from None
    except _BadJSON as exc:
        raise UserError(f"{what} {shown} is not valid JSON: {exc}") from None
    except RecursionError:
        raise UserError(f"{what} {shown} is nested too deeply to be a config file") from None


class _BadJSON(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _BadJSON(f"the key '{printable(key, 60)}' appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _BadJSON(f"{name} is not a JSON number")


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    data = read_json_file(path, what)
    if not isinstance(data, dict):
        raise UserError(f"{what} {printable(path)} must hold a JSON object, not {_json_type(data)}")
    return data


def _json_type(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


# ----------------------------------------------------------------------------- pack JSON
def spec_from_json(path: Path) -> PackSpec:
    """Read and check a pack JSON; every path it names is resolved inside its folder."""
    path = Path(path)
    data = read_json_object(path, "pack file")
    where = f"pack file {printable(path)}"
    try:
        pf = PackFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{where}: {first_error(exc)}") from None
    base = path.parent.resolve()
    diffusion = _diffusion_source(pf.diffusion, base, where)
    clip = clip_ref_from_file(pf.clip, base, where)
    judge = None
    if pf.judge is not None:
        judge_dir = _inside(pf.judge, base, "judge", where, want="folder")
        if not (judge_dir / "config.json").is_file():
            raise UserError(f"{where}: judge: the folder '{printable(pf.judge)}' has no config.json")
        judge = str(judge_dir)
    if pf.train_steps is not None:
        train_steps, declared = pf.train_steps, True
    else:
        train_steps, declared = train_steps_of(diffusion)
    defaults = typed_defaults(pf.defaults, train_steps, where)
    return PackSpec(
        name=pf.name or printable(path.stem, 64),
        description=pf.description,
        diffusion=diffusion,
        clip=clip,
        captions=tuple(pf.captions),
        default_prompt=pf.default_prompt or pf.captions[0],
        defaults=defaults,
        train_steps=train_steps,
        judge=judge,
        real_data=pf.real_data,
        tuned=pf.tuned,
        embedded=pf.embedded,
        vocabulary=pf.vocabulary,
        download_mb=pf.download_mb,
        source=str(path),
        train_steps_declared=declared,
    )


def _inside(value: str, base: Path, field: str, where: str, want: str) -> Path:
    """``value`` as a path inside ``base`` (the pack's folder) that exists as ``want``."""
    shown = printable(value, 200)
    rel = Path(value)
    if rel.is_absolute() or value.startswith("~"):
        raise UserError(f"{where}: {field}: {shown!r} must be a path relative to the pack's folder")
    try:
        target = (base / rel).resolve()
        inside = target == base or target.is_relative_to(base)
        exists = target.is_dir() if want == "folder" else target.is_file()
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{where}: {field}: cannot use {shown!r}: {exc}") from None
    if not inside:
        raise UserError(f"{where}: {field}: {shown!r} lies outside the pack's folder")
    if not exists:
        raise UserError(f"{where}: {field}: {want} {shown!r} not found in the pack's folder")
    return target


def _diffusion_source(value: str, base: Path, where: str) -> str:
    """A folder inside the pack's folder, or a Hugging Face repo id (ORG/NAME) where no such
    folder exists."""
    if is_repo_id(value):
        try:
            local = (base / value).resolve()
            if local.is_relative_to(base) and local.is_dir():
                return str(local)
        except (OSError, ValueError, RuntimeError):
            pass
        return value
    return str(_inside(value, base, "diffusion", where, want="folder"))


def clip_ref_from_file(clip: ClipFile | str, base: Path, where: str) -> ClipRef:
    if isinstance(clip, str):
        scheme, _, rest = clip.partition(":")
        if scheme == "hf-hub":
            if not is_repo_id(rest):
                raise UserError(f"{where}: clip: '{printable(rest)}' is not a repo id like org/name")
            return ClipRef(kind="hf-hub", path=rest)
        return ClipRef(kind="local-dir", path=str(_inside(rest, base, "clip", where, "folder")))
    if clip.pretrained is not None:
        hf_hub = clip.hf_hub.rstrip("/") if clip.hf_hub else None
        if hf_hub is not None and not is_repo_id(hf_hub):
            raise UserError(f"{where}: clip.hf_hub: '{printable(hf_hub)}' is not a repo id like org/name")
        return ClipRef(kind="pretrained", model=clip.model, pretrained=clip.pretrained, hf_hub=hf_hub)
    weights = str(_inside(clip.weights or "", base, "clip.weights", where, want="file"))
    if clip.config is not None:
        config = str(_inside(clip.config, base, "clip.config", where, want="file"))
        return ClipRef(kind="files", config=config, weights=weights)
    return ClipRef(kind="files", model=clip.model, weights=weights)


def typed_defaults(d: DefaultsFile, train_steps: int, where: str) -> PackDefaults:
    """Concrete defaults per method: the method's own, else the pack's, else BASE_DEFAULTS."""
    pack_level = {k: v for k, v in d.model_dump(exclude={"methods"}).items() if v is not None}
    base_values = {**BASE_DEFAULTS, "steps": train_steps, **pack_level}
    methods: dict[str, MethodDefaults] = {}
    for name in METHOD_NAMES:
        own = d.methods.get(name)
        values = dict(base_values)
        if own is not None:
            values.update({k: v for k, v in own.model_dump().items() if v is not None})
        if values["steps"] > train_steps:
            field = f"defaults.methods.{name}.steps" if own and own.steps else "defaults.steps"
            raise UserError(f"{where}: {field}: {values['steps']} is more than the model's "
                            f"{train_steps} training steps")
        methods[name] = MethodDefaults(**values)
    return PackDefaults(base=MethodDefaults(**base_values), methods=methods,
                        train_steps=train_steps)


def retimed(spec: PackSpec, train_steps: int) -> PackSpec:
    """``spec`` for a model with ``train_steps`` training steps (when the spec had to guess),
    its default steps capped to that."""
    def cap(d: MethodDefaults) -> MethodDefaults:
        return replace(d, steps=min(d.steps, train_steps))

    defaults = PackDefaults(base=cap(spec.defaults.base),
                            methods={k: cap(v) for k, v in spec.defaults.methods.items()},
                            train_steps=train_steps)
    return replace(spec, train_steps=train_steps, defaults=defaults, train_steps_declared=True)


# ----------------------------------------------------------------------------- train steps
def scheduler_config_path(folder: Path) -> Path | None:
    for cfg in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if cfg.is_file():
            return cfg
    return None


def read_scheduler_config(path: Path) -> dict[str, Any]:
    """A scheduler config, checked (training steps, betas, prediction type)."""
    data = read_json_object(path, "scheduler config")
    try:
        SchedulerConfigFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"scheduler config {printable(path)}: {first_error(exc)}") from None
    return data


def train_steps_of(diffusion: str) -> tuple[int, bool]:
    """(training steps, whether known) of a diffusion model, read without loading it: from its
    scheduler config in the folder, or in the Hub cache for a repo id (a guess otherwise)."""
    if Path(diffusion).is_absolute():
        cfg = scheduler_config_path(Path(diffusion))
    else:
        snapshot = hub.cached_snapshot(diffusion)
        cfg = scheduler_config_path(snapshot) if snapshot is not None else None
    if cfg is None:
        return FALLBACK_TRAIN_STEPS, False
    return int(read_scheduler_config(cfg).get("num_train_timesteps", 1000)), True


# ----------------------------------------------------------------------------- other forms
def adhoc_spec(diffusion: str, source: str) -> PackSpec:
    """A bare diffusion model (folder or repo id): the cifar10 pack's CLIP, captions and
    defaults."""
    cifar = spec_from_json(PACKS_DIR / "cifar10.json")
    train_steps, declared = train_steps_of(diffusion)
    spec = replace(
        cifar,
        name=printable(Path(source).name or source, 64),
        description=f"diffusion model {printable(source)} with {cifar.clip.label}",
        diffusion=diffusion,
        real_data=None,
        tuned=False,
        download_mb=None,
        source=source,
    )
    return replace(retimed(spec, train_steps), train_steps_declared=declared)
