"""ProbabilityBars: one bar per caption with its CLIP probability, the target highlighted.

Each line shows the mean over the shown samples as a bar and a percentage, and the selected
sample's probability beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.text import Text
from textual.widget import Widget

EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int) -> str:
    """A bar of ``width`` cells filled to ``fraction`` in eighths of a cell."""
    if width <= 0:
        return ""
    fraction = min(max(float(fraction), 0.0), 1.0) if np.isfinite(fraction) else 0.0
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[part] if part else "")
    return text.ljust(width)


class ProbabilityBars(Widget):
    COMPONENT_CLASSES = {
        "bars--target",
        "bars--other",
        "bars--caption",
        "bars--target-caption",
        "bars--dim",
    }

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.captions: tuple[str, ...] = ()
        self.mean: np.ndarray | None = None
        self.selected: np.ndarray | None = None
        self.selected_index: int | None = None

    def set_probs(
        self,
        captions: Sequence[str],
        mean: np.ndarray | None,
        selected: np.ndarray | None = None,
        selected_index: int | None = None,
    ) -> None:
        self.captions = tuple(captions)
        self.mean = mean
        self.selected = selected
        self.selected_index = selected_index
        self.refresh()

    def render(self) -> Text:
        if not self.captions:
            return Text(
                "CLIP probabilities appear here", style=self.get_component_rich_style("bars--dim")
            )
        width = self.content_size.width or 40
        label_w = min(max(len(c) for c in self.captions) + 1, 16)
        sel_w = 8 if self.selected is not None else 0
        bar_w = max(4, width - label_w - 1 - 7 - sel_w)
        target = self.get_component_rich_style("bars--target")
        other = self.get_component_rich_style("bars--other")
        caption_style = self.get_component_rich_style("bars--caption")
        target_caption = self.get_component_rich_style("bars--target-caption")
        dim = self.get_component_rich_style("bars--dim")
        head = Text(" " * (label_w + 1 + bar_w) + "   mean", style=dim)
        if self.selected is not None:
            head.append(f"#{self.selected_index}".rjust(sel_w), style=dim)
        lines = [head]
        for i, caption in enumerate(self.captions):
            is_target = i == 0
            mean = float(self.mean[i]) if self.mean is not None and i < len(self.mean) else 0.0
            line = Text(no_wrap=True, overflow="crop")
            name = ("▸" if is_target else " ") + caption
            style = target_caption if is_target else caption_style
            line.append(name[:label_w].ljust(label_w), style=style)
            line.append(" ")
            line.append(bar(mean, bar_w), style=target if is_target else other)
            line.append(f"{mean * 100:6.1f}%")
            if self.selected is not None and i < len(self.selected):
                line.append(f"{float(self.selected[i]) * 100:7.1f}%", style=dim)
            lines.append(line)
        text = Text("\n", no_wrap=True, overflow="crop").join(lines)
        text.no_wrap = True
        return text

    def text_lines(self) -> list[str]:
        return self.render().plain.splitlines()
