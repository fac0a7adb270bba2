"""The schemas of the JSON files a pack is made of, as pydantic models.

pydantic (v2; Typer already installs it) checks types strictly (``"steps": "50"`` or ``true`` is
not a number), rejects unknown keys, and reports where a value is wrong
(``defaults.methods.spherical.scale``); :func:`first_error` turns that into one line. The models
here only describe files: :mod:`clipterm.packs.reading` resolves them into a typed
:class:`~clipterm.packs.spec.PackSpec`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from clipterm.sanitize import is_invisible, printable

MAX_STEPS = 100_000
MAX_BATCH = 4096
MAX_SCALE = 1e6
MAX_ITERS = 10_000
MAX_LR = 10.0
MAX_CAPTIONS = 1000
MAX_CAPTION_CHARS = 200
MAX_CUTOUTS = 256
MAX_CUT_POW = 10.0

STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


def _visible(value: str) -> str:
    """One line of text that shows: not empty, not only invisible characters, no control,
    format or other characters that do not print (escape sequences, zero-width spaces)."""
    if is_invisible(value):
        raise ValueError("is empty or invisible")
    if not value.isprintable():
        bad = next(ch for ch in value if not ch.isprintable())
        raise ValueError(f"holds a character that does not print ({printable(bad)})")
    if value != value.strip():
        raise ValueError("starts or ends with whitespace")
    return value


def _printable(value: str) -> str:
    """Text that may be empty but holds nothing that does not print."""
    return _visible(value) if value else value


Text = Annotated[str, AfterValidator(_visible)]
ShortText = Annotated[str, Field(max_length=MAX_CAPTION_CHARS), AfterValidator(_visible)]
PathText = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_visible)]
PackName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class MethodDefaultsFile(BaseModel):
    """Settings in ``defaults`` (and ``defaults.methods.METHOD``); all optional."""

    model_config = STRICT

    sampler: Literal["ddpm", "ddim"] | None = None
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = None
    batch: Annotated[int, Field(ge=1, le=MAX_BATCH)] | None = None
    scale: Annotated[float, Field(ge=0, le=MAX_SCALE)] | None = None
    opt_iters: Annotated[int, Field(ge=1, le=MAX_ITERS)] | None = None
    lr: Annotated[float, Field(gt=0, le=MAX_LR)] | None = None
    grad_norm: Literal["rms", "none"] | None = None
    # what CLIP sees of a guided sample, and the memory of its gradient (clipterm.cutouts)
    cutouts: Annotated[int, Field(ge=0, le=MAX_CUTOUTS)] | None = None
    cut_pow: Annotated[float, Field(gt=0, le=MAX_CUT_POW)] | None = None
    augment: bool | None = None
    grad_checkpointing: bool | None = None


class DefaultsFile(MethodDefaultsFile):
    methods: dict[Literal["uncond", "spherical", "contrastive", "optimize"], MethodDefaultsFile] = {}


class ClipFile(BaseModel):
    """``{"config": ..., "weights": ...}`` | ``{"model": ..., "weights": ...}`` |
    ``{"model": ..., "pretrained": ..., "hf_hub": ...}``."""

    model_config = STRICT

    model: Annotated[str, Field(max_length=200), AfterValidator(_visible)] | None = None
    pretrained: Annotated[str, Field(max_length=200), AfterValidator(_visible)] | None = None
    hf_hub: Annotated[str, Field(max_length=200), AfterValidator(_visible)] | None = None
    config: PathText | None = None
    weights: PathText | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ClipFile:
        if self.config is not None:
            if self.model is not None or self.pretrained is not None:
                raise ValueError("give either config and weights, or model and pretrained")
            if self.weights is None:
                raise ValueError("config needs weights (a CLIP without weights would be random)")
        elif self.model is None:
            raise ValueError("give config and weights, or model and pretrained")
        elif self.weights is not None and self.pretrained is not None:
            raise ValueError("give either weights or pretrained, not both")
        elif self.weights is None and self.pretrained is None:
            raise ValueError("model needs pretrained (a CLIP without weights would be random)")
        if self.hf_hub is not None and self.pretrained is None:
            raise ValueError("hf_hub goes with model and pretrained")
        return self


ClipScheme = Annotated[
    str, Field(pattern=r"^(local-dir|hf-hub):.+$", max_length=1000), AfterValidator(_visible)
]
ClipField = Annotated[
    Annotated[ClipFile, Tag("files")] | Annotated[ClipScheme, Tag("scheme")],
    Discriminator(lambda v: "scheme" if isinstance(v, str) else "files"),
]


class PackFile(BaseModel):
    """A pack JSON (``clipterm/packs/*.json``, or a user's ``pack.json``)."""

    model_config = STRICT

    name: PackName | None = None
    description: Annotated[str, Field(max_length=1000), AfterValidator(_printable)] = ""
    diffusion: PathText
    clip: ClipField = ClipFile(model="ViT-B-32", pretrained="openai")
    judge: PathText | None = None
    captions: Annotated[list[ShortText], Field(min_length=1, max_length=MAX_CAPTIONS)]
    default_prompt: ShortText | None = None
    vocabulary: Literal["open", "closed"] = "open"
    real_data: Literal["sklearn-digits", "digits", "cifar10"] | None = None
    tuned: bool = False
    embedded: bool = False
    train_steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = None
    download_mb: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    defaults: DefaultsFile = DefaultsFile()

    @model_validator(mode="after")
    def _captions(self) -> PackFile:
        seen: dict[str, int] = {}
        for i, caption in enumerate(self.captions):
            key = caption.casefold()
            if key in seen:
                raise ValueError(f"captions[{i}] {caption!r} repeats captions[{seen[key]}]")
            seen[key] = i
        if (self.default_prompt is not None and self.vocabulary == "closed"
                and self.default_prompt.casefold() not in seen):
            raise ValueError(
                f"default_prompt {self.default_prompt!r} is not one of the captions of this "
                "closed-vocabulary pack"
            )
        return self


class JudgeConfigFile(BaseModel):
    """A judge folder's ``config.json`` (see :mod:`clipterm.judge`)."""

    model_config = STRICT

    architecture: Literal["DigitJudge"] | None = None
    image_size: Annotated[int, Field(ge=4, le=512)]
    channels: Annotated[list[Annotated[int, Field(ge=1, le=2048)]], Field(min_length=1, max_length=8)]
    feature_dim: Annotated[int, Field(ge=1, le=65536)]
    dropout: Annotated[float, Field(ge=0, le=1)] = 0.0
    class_names: Annotated[list[ShortText], Field(min_length=1, max_length=MAX_CAPTIONS)]


class SchedulerConfigFile(BaseModel):
    """The parts of a diffusers scheduler config clipterm relies on (others pass through)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    num_train_timesteps: Annotated[int, Field(ge=2, le=MAX_STEPS)] = 1000
    beta_start: Annotated[float, Field(gt=0, lt=1)] = 0.0001
    beta_end: Annotated[float, Field(gt=0, lt=1)] = 0.02
    beta_schedule: Annotated[str, Field(max_length=100)] = "linear"
    prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon"


class UNetConfigFile(BaseModel):
    """The head of a diffusers UNet config: the class it names (the rest is checked by building
    the model without memory)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    class_name: Literal["UNet2DModel"] = Field("UNet2DModel", alias="_class_name")


# ----------------------------------------------------------------------------- messages
def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def first_error(exc: ValidationError) -> str:
    """One line naming the field and what is wrong with it (plus how many more errors)."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p in _TAGS or "[" in p)))
    where = _where(loc)
    msg = _PLAIN.get(err["type"], str(err["msg"]).removeprefix("Value error, "))
    if err["type"] == "string_pattern_mismatch":
        msg = _PATTERNS.get(where, msg)
    if err["type"] == "extra_forbidden":
        line = f"unknown key '{printable(where, 80)}'"
    elif err["type"] == "missing":
        line = f"{where}: required"
    else:
        got = ""
        if err["type"] not in ("value_error", "assertion_error") and "input" in err:
            got = f" (got {printable(repr(err['input']), 60)})"
        line = f"{where}: {msg}{got}" if where else msg
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more)"
    return line


_PLAIN = {
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a list",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "finite_number": "must be a finite number",
}
_PATTERNS = {
    "name": "must be letters, digits, '.', '_' or '-' (a name, not a path)",
    "clip": "must be an object, or 'local-dir:FOLDER' or 'hf-hub:ORG/NAME'",
}
_TAGS = {"files", "scheme"}  # the tags of the clip field's two forms
