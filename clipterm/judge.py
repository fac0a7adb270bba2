"""The digit judge: a small CNN classifier used only to evaluate samples, never to guide them.

It differs from the pack's CLIP on purpose (a conv net trained with cross-entropy, not a ViT
trained contrastively), so guidance cannot simply fool its own referee. ``forward`` gives class
logits ("judged class"); ``features`` gives the penultimate activations, the feature space for KID.

Input: float images ``[N, 3, H, W]`` in [0, 1] (white digit on black, as rendered by
:mod:`clipterm.data`); any H, W are resized to the configured ``image_size``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from clipterm.data import DIGIT_NAMES

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class JudgeConfig:
    image_size: int = (
        16  # the digits carry 8x8 of information; 16x16 keeps it at a quarter of the cost
    )
    channels: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 128
    dropout: float = 0.2
    class_names: tuple[str, ...] = field(default=DIGIT_NAMES)


class DigitJudge(nn.Module):
    """Conv stages (conv-BN-ReLU x2, max-pool) -> global average pool -> features -> logits."""

    def __init__(self, config: JudgeConfig | None = None) -> None:
        super().__init__()
        self.config = config or JudgeConfig()
        stages: list[nn.Module] = []
        c_in = 3
        for c_out in self.config.channels:
            stages += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.body = nn.Sequential(*stages)
        self.embed = nn.Sequential(nn.Linear(c_in, self.config.feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(self.config.dropout)
        self.head = nn.Linear(self.config.feature_dim, len(self.config.class_names))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return (x - 0.5) / 0.5

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, feature_dim]`` of images in [0, 1]."""
        h = self.body(self._prepare(x))
        return self.embed(h.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, num_classes]`` of images in [0, 1]."""
        return self.head(self.dropout(self.features(x)))


def save_judge(model: DigitJudge, folder: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder``; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = asdict(model.config)
    cfg["architecture"] = "DigitJudge"
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    return folder


def load_judge(folder: str | Path, device: str | torch.device = "cpu") -> DigitJudge:
    """Load a saved judge in eval mode with gradients off.

    The folder comes from a pack, so nothing in it is trusted: ``config.json`` is checked
    against :class:`clipterm.packs.schema.JudgeConfigFile`, the weights must be a safetensors
    file of exactly that architecture, and every problem is one UserError line."""
    from pydantic import ValidationError
    from safetensors.torch import load_file

    from clipterm.errors import UserError
    from clipterm.packs.reading import read_json_object
    from clipterm.packs.schema import JudgeConfigFile, first_error
    from clipterm.packs.weights import check_finite, count_elements
    from clipterm.sanitize import printable

    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    raw = read_json_object(config_path, "judge config")
    try:
        checked = JudgeConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"judge config {printable(config_path)}: {first_error(exc)}") from None
    config = JudgeConfig(
        image_size=checked.image_size,
        channels=tuple(checked.channels),
        feature_dim=checked.feature_dim,
        dropout=checked.dropout,
        class_names=tuple(checked.class_names),
    )
    weights = folder / WEIGHTS_NAME
    count_elements(weights, "judge weights")
    model = DigitJudge(config)
    try:
        model.load_state_dict(load_file(str(weights), device="cpu"))
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"the judge weights {printable(weights)} do not fit the architecture in "
                        f"{CONFIG_NAME}: {printable(first, 200)}") from None
    check_finite(model, "the judge weights", weights)
    model.eval().requires_grad_(False)
    return model.to(device)
