"""PreviewGrid: rows of sample thumbnails (one row per run; several when comparing methods).

Thumbnails use the largest size that lets every row fit the widget: pixel-exact (1 cell per
pixel pair) when there is room, else box-filtered halves / quarters. When even the smallest does
not fit, the view pages to keep the selected sample visible. Under each thumbnail: its sample
index and the target's probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from clipterm.tui.halfblock import halfblock_lines, scaled


@dataclass(frozen=True)
class PreviewRow:
    label: str
    images: np.ndarray  # [B, H, W, 3] uint8
    probs: np.ndarray | None = None  # [B, C] softmax over captions, target first
    first_index: int = 0  # sample index of images[0]
    captions: tuple[str, ...] = ()

    @property
    def target_probs(self) -> np.ndarray | None:
        return None if self.probs is None or not len(self.probs) else self.probs[:, 0]


class PreviewGrid(Widget):
    COMPONENT_CLASSES = {"preview-grid--title", "preview-grid--label", "preview-grid--selected"}

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rows: list[PreviewRow] = []
        self.selected = 0  # flat index over all rows
        self._strips: list[Strip] = []
        self._built_for: Size | None = None
        self.thumb_factor = 1.0

    # ---------------------------------------------------------------- data
    @property
    def count(self) -> int:
        return sum(len(r.images) for r in self.rows)

    def set_rows(self, rows: list[PreviewRow], selected: int | None = None) -> None:
        self.rows = rows
        if selected is not None:
            self.selected = selected
        self.selected = min(self.selected, max(self.count - 1, 0))
        self._built_for = None
        self.refresh()

    def select(self, index: int) -> None:
        if self.count:
            self.selected = index % self.count
            self._built_for = None
            self.refresh()

    def locate(self, flat: int) -> tuple[PreviewRow, int] | None:
        """(row, index within the row) of a flat index."""
        for row in self.rows:
            if flat < len(row.images):
                return row, flat
            flat -= len(row.images)
        return None

    # -------------------------------------------------------------- layout
    def _layout(self, width: int, height: int) -> tuple[float, int]:
        """(scale factor, thumbnails per line) of the largest thumbnails that fit."""
        h, w = self.rows[0].images.shape[1:3]
        factors = [1.0, 0.5, 0.25] if w >= 16 else [2.0, 1.0, 0.5]
        for f in factors:
            cw, ch = max(1, round(w * f)), (max(1, round(h * f)) + 1) // 2 + 1
            per_line = max(1, (width + 1) // (cw + 1))
            needed = sum(1 + -(-len(r.images) // per_line) * ch for r in self.rows)
            if needed <= height:
                return f, per_line
        f = factors[-1]
        return f, max(1, (width + 1) // (max(1, round(w * f)) + 1))

    def _build(self) -> None:
        size = self.content_size
        self._built_for = size
        width, height = size.width, size.height
        strips: list[Strip] = []
        if not self.rows or width <= 0 or not self.count:
            self._strips = [
                Strip(
                    [
                        Segment(
                            "samples appear here during a run",
                            self.get_component_rich_style("preview-grid--label"),
                        )
                    ]
                )
            ]
            return
        title_style = self.get_component_rich_style("preview-grid--title")
        label_style = self.get_component_rich_style("preview-grid--label")
        selected_style = self.get_component_rich_style("preview-grid--selected")
        factor, per_line = self._layout(width, height)
        self.thumb_factor = factor
        selected_line = 0
        flat = 0
        for row in self.rows:
            target_probs = row.target_probs
            strips.append(Strip([Segment(row.label[:width], title_style)]))
            thumbs = [halfblock_lines(scaled(img, factor)) for img in row.images]
            cw = len(thumbs[0][0]) if thumbs else 1
            for start in range(0, len(thumbs), per_line):
                group = range(start, min(start + per_line, len(thumbs)))
                n_lines = max(len(thumbs[i]) for i in group)
                for y in range(n_lines):
                    segs: list[Segment] = []
                    for j, i in enumerate(group):
                        if j:
                            segs.append(Segment(" "))
                        line = thumbs[i][y] if y < len(thumbs[i]) else [Segment(" " * cw)]
                        segs.extend(line)
                    strips.append(Strip(segs))
                segs = []
                for j, i in enumerate(group):
                    if j:
                        segs.append(Segment(" "))
                    index = row.first_index + i
                    text = f"#{index}"
                    if target_probs is not None and cw >= len(text) + 4:
                        text += f" {target_probs[i] * 100:.0f}%"
                    is_selected = flat + i == self.selected
                    if is_selected:
                        selected_line = len(strips)
                        text = ("▶" + text) if cw > len(text) else text
                    segs.append(
                        Segment(text[:cw].ljust(cw), selected_style if is_selected else label_style)
                    )
                strips.append(Strip(segs))
            flat += len(row.images)
        if len(strips) > height > 0:  # page so the selected thumbnail stays in view
            top = min(max(0, selected_line - height + 1), len(strips) - height)
            strips = strips[top : top + height]
        self._strips = strips

    def render_line(self, y: int) -> Strip:
        if self._built_for != self.content_size:
            self._build()
        width = self.content_size.width
        if y < len(self._strips):
            return self._strips[y].crop_extend(0, width, Style())
        return Strip.blank(width)

    def text_lines(self) -> list[str]:
        """The grid as plain text (tests)."""
        if self._built_for != self.content_size:
            self._build()
        return [s.text for s in self._strips]
