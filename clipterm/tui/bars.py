"""ProbabilityBars: one bar per caption with its CLIP probability, the target highlighted.

Each line: the caption's colour in the probability trace (a swatch), the caption, a bar of the
mean over the shown samples with its percentage, and the selected sample's percentage. When
there are more captions than lines, the target and the most probable others are shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from clipterm.sanitize import printable
from clipterm.trace_plot import caption_style

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
        self.captions = tuple(printable(c) for c in captions)
        self.mean = mean
        self.selected = selected
        self.selected_index = selected_index
        self.refresh()

    def clear(self) -> None:
        self.set_probs((), None)

    def _shown(self, rows: int) -> list[int]:
        """The caption indices to draw in ``rows`` lines: all, or the target and the likeliest."""
        n = len(self.captions)
        if rows >= n or rows <= 0:
            return list(range(n))
        order = list(range(1, n))
        if self.mean is not None and len(self.mean) == n:
            order.sort(key=lambda i: -float(self.mean[i]))  # type: ignore[index]
        return [0, *sorted(order[: max(rows - 2, 0)])]

    def render(self) -> Text:
        dim = self.get_component_rich_style("bars--dim")
        if not self.captions:
            return Text("CLIP probabilities appear here", style=dim)
        width = self.content_size.width or 40
        height = self.content_size.height or len(self.captions) + 1
        heading = height > len(self.captions)
        shown = self._shown(height - heading)
        hidden = len(self.captions) - len(shown)
        label_w = min(max(len(self.captions[i]) for i in shown) + 1, 16)
        sel_w = 7 if self.selected is not None else 0
        bar_w = max(3, width - 2 - label_w - 1 - 7 - sel_w)
        target = self.get_component_rich_style("bars--target")
        other = self.get_component_rich_style("bars--other")
        caption_style_ = self.get_component_rich_style("bars--caption")
        target_caption = self.get_component_rich_style("bars--target-caption")
        lines = []
        if heading:
            head = Text(" " * (2 + label_w + 1 + bar_w) + "   mean", style=dim)
            if self.selected is not None:
                head.append(f"#{self.selected_index}".rjust(sel_w), style=dim)
            lines.append(head)
        for i in shown:
            is_target = i == 0
            mean = float(self.mean[i]) if self.mean is not None and i < len(self.mean) else 0.0
            line = Text(no_wrap=True, overflow="crop")
            line.append("■ ", style=Style.parse(caption_style(i)))
            name = ("▸" if is_target else " ") + self.captions[i]
            line.append(name[:label_w].ljust(label_w), style=target_caption if is_target
                        else caption_style_)
            line.append(" ")
            line.append(bar(mean, bar_w), style=target if is_target else other)
            line.append(f"{mean * 100:6.1f}%")
            if self.selected is not None and i < len(self.selected):
                line.append(f"{float(self.selected[i]) * 100:6.1f}%", style=dim)
            lines.append(line)
        if hidden and lines:
            lines[-1].append(f" +{hidden} more", style=dim)
        text = Text("\n", no_wrap=True, overflow="crop").join(lines)
        text.no_wrap = True
        return text

    def text_lines(self) -> list[str]:
        return self.render().plain.splitlines()
