"""SampleView: the selected sample, as large as its box allows (whole-pixel upscales)."""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from clipterm.sanitize import printable
from clipterm.tui.halfblock import fit_factor, halfblock_lines, scaled

PLAIN = Style()


class SampleView(Widget):
    COMPONENT_CLASSES = {"sample-view--caption"}

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._image: np.ndarray | None = None
        self._caption = "no sample yet: ctrl+r runs"
        self._strips: list[Strip] = []
        self._built_for: Size | None = None
        self.factor = 1.0

    def show(self, image: np.ndarray | None, caption: str) -> None:
        self._image = image
        self._caption = printable(caption)
        self._built_for = None
        self.refresh()

    @property
    def caption(self) -> str:
        return self._caption

    @property
    def image(self) -> np.ndarray | None:
        return self._image

    def _build(self) -> None:
        size = self.content_size
        self._built_for = size
        width = size.width
        caption_style = self.get_component_rich_style("sample-view--caption") or PLAIN
        strips = [Strip([Segment(self._caption[:width], caption_style)])]
        if self._image is not None and width > 0 and size.height > 1:
            h, w = self._image.shape[:2]
            self.factor = fit_factor(w, h, width, size.height - 1)
            img = scaled(self._image, self.factor)
            pad = max(0, (width - img.shape[1]) // 2)
            lead = [Segment(" " * pad, PLAIN)] if pad else []
            try:
                colours = "256" if self.app.console.color_system == "256" else "truecolor"
            except Exception:
                colours = "truecolor"
            strips += [Strip(lead + line) for line in halfblock_lines(img, colours)]
        self._strips = strips

    def render_line(self, y: int) -> Strip:
        if self._built_for != self.content_size:
            self._build()
        width = self.content_size.width
        if y < len(self._strips):
            return self._strips[y].crop_extend(0, width, PLAIN)
        return Strip.blank(width, PLAIN)
