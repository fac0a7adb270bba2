"""A pack as typed data: what its JSON says, checked and resolved, before anything is loaded.

:class:`PackSpec` is made only by :mod:`clipterm.packs.reading` (from a pack JSON, a diffusers
folder or a Hub repo id); every field is concrete. Paths are absolute and lie inside the pack's
folder; strings are visible text; numbers lie in sane ranges.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from clipterm.errors import ConfigError

METHOD_NAMES = ("uncond", "spherical", "contrastive", "optimize")
Vocabulary = Literal["open", "closed"]


# ----------------------------------------------------------------------------- CLIP
@dataclass(frozen=True)
class ClipRef:
    """Which CLIP a pack uses, in one of four forms (``kind``):

    - ``pretrained``: an open_clip architecture and a pretrained tag (``ViT-B-32`` + ``openai``),
      fetched from the Hugging Face repo ``hf_hub`` where the pack names it;
    - ``files``: an architecture config JSON (or a built-in ``model`` name) and a weights file;
    - ``local-dir``: a folder with ``open_clip_config.json`` and weights;
    - ``hf-hub``: a Hugging Face repo holding the same.
    """

    kind: Literal["pretrained", "files", "local-dir", "hf-hub"]
    model: str | None = None
    pretrained: str | None = None
    hf_hub: str | None = None
    config: str | None = None
    weights: str | None = None
    path: str | None = None  # local-dir folder or hf-hub repo id

    @property
    def label(self) -> str:
        """What a user would type as ``--clip`` for this CLIP."""
        if self.kind == "pretrained":
            return f"{self.model}:{self.pretrained}"
        if self.kind == "files":
            return f"{self.config or self.model}:{self.weights}"
        return f"{self.kind}:{self.path}"

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# ----------------------------------------------------------------------------- defaults
@dataclass(frozen=True)
class MethodDefaults:
    """The settings a method runs with when the user gives none: every field concrete."""

    sampler: Literal["ddpm", "ddim"]
    steps: int
    batch: int
    scale: float
    opt_iters: int
    lr: float
    grad_norm: Literal["rms", "none"]
    cutouts: int = 0  # CLIP's views of a guided sample: the whole image + this many crops
    cut_pow: float = 1.0
    augment: bool = False
    grad_checkpointing: bool = False  # the UNet's, for guidance through the predicted x0


@dataclass(frozen=True)
class PackDefaults(Mapping[str, Any]):
    """A pack's default settings, typed per method (:meth:`for_method`).

    It is also a read-only mapping shaped like the JSON's ``defaults`` (``sampler``, ``steps``,
    ..., ``methods: {name: {...}}``, plus ``train_steps``), so code that reads the defaults as
    a dict keeps working; prefer :meth:`for_method`.
    """

    base: MethodDefaults
    methods: Mapping[str, MethodDefaults]
    train_steps: int

    def for_method(self, method: str) -> MethodDefaults:
        """The concrete defaults of ``method`` (the base defaults for an unknown method)."""
        return self.methods.get(method, self.base)

    # ---- the JSON-shaped, read-only mapping view
    def _view(self) -> dict[str, Any]:
        view: dict[str, Any] = asdict(self.base)
        view["methods"] = {name: asdict(d) for name, d in self.methods.items()}
        view["train_steps"] = self.train_steps
        return view

    def __getitem__(self, key: str) -> Any:
        return self._view()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())


METHOD_DEFAULT_FIELDS = tuple(f.name for f in fields(MethodDefaults))


# ----------------------------------------------------------------------------- the pack
@dataclass(frozen=True)
class PackSpec:
    """A pack as described by its JSON, checked and resolved, before anything is loaded."""

    name: str
    description: str
    diffusion: str  # an absolute folder path, or a Hugging Face repo id
    clip: ClipRef
    captions: tuple[str, ...]
    default_prompt: str
    defaults: PackDefaults
    train_steps: int
    judge: str | None = None  # absolute folder path
    real_data: str | None = None
    tuned: bool = False
    embedded: bool = False
    vocabulary: Vocabulary = "open"
    download_mb: int | None = None  # approximate download size where known
    source: str = ""  # the JSON file, or what --model named
    # False where train_steps is a guess (a Hub repo not yet downloaded): loading corrects it
    train_steps_declared: bool = field(default=True, compare=False)

    def distractors_for(self, prompt: str) -> tuple[str, ...]:
        """The pack's captions other than ``prompt``: the poster's contrastive setting."""
        p = prompt.strip().casefold()
        return tuple(c for c in self.captions if c.casefold() != p)

    @property
    def diffusion_is_local(self) -> bool:
        return Path(self.diffusion).is_absolute()

    def knows(self, caption: str) -> bool:
        """Whether this pack's CLIP can read ``caption``: any text for an open vocabulary, one
        of the captions (case-insensitive) for a closed one."""
        if self.vocabulary == "open":
            return True
        key = caption.strip().casefold()
        return any(c.casefold() == key for c in self.captions)

    def check_vocabulary(self, prompt: str, distractors: tuple[str, ...] = ()) -> None:
        """Refuse, in one line, a prompt or distractor a closed-vocabulary pack cannot read,
        naming the pack that fits instead and how to get it."""
        for role, text in (("prompt", prompt), *(("distractor", d) for d in distractors)):
            if text.strip() and not self.knows(text):
                from clipterm.packs import vocabulary_suggestion

                raise ConfigError(
                    f"the {self.name} pack only knows its {len(self.captions)} captions "
                    f"({', '.join(self.captions)}), not the {role} {text.strip()!r}: "
                    + vocabulary_suggestion(self, text),
                    field="prompt" if role == "prompt" else "distractors",
                )
