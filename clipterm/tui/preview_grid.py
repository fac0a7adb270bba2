"""PreviewGrid: rows of sample thumbnails (one row per run; several when comparing methods).

Thumbnails use the largest size that lets every row fit the widget: pixel-exact (1 cell per
pixel pair) when there is room, else area-averaged halves / quarters. When even the smallest
does not fit, the view scrolls to keep the selected sample visible (and with the mouse wheel).
Under each thumbnail: its sample index and the target's probability. A click selects a sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from clipterm.sanitize import printable
from clipterm.tui.halfblock import halfblock_lines, scaled
from clipterm.tui.messages import SampleClicked

PLAIN = Style()


@dataclass(frozen=True)
class PreviewRow:
    label: str
    images: np.ndarray  # [B, H, W, 3] uint8
    probs: np.ndarray | None = None  # [B, C] softmax over captions, target first
    first_index: int = 0  # sample index of images[0]
    captions: tuple[str, ...] = ()
    indices: tuple[int, ...] | None = None  # sample index of each image (default: consecutive)
    config_index: int = 0  # which config of the run (a row per method when comparing)

    @property
    def target_probs(self) -> np.ndarray | None:
        return None if self.probs is None or not len(self.probs) else self.probs[:, 0]

    def index_of(self, i: int) -> int:
        """The sample index (seed-derived id) of image ``i``."""
        return self.indices[i] if self.indices is not None else self.first_index + i


@dataclass(frozen=True)
class HitBox:
    y0: int
    y1: int
    x0: int
    x1: int
    flat: int


class PreviewGrid(Widget):
    COMPONENT_CLASSES = {"preview-grid--title", "preview-grid--label", "preview-grid--selected"}

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rows: list[PreviewRow] = []
        self.selected = 0  # flat index over all rows
        self.top = 0  # first strip shown (scrolling)
        self._strips: list[Strip] = []
        self._hits: list[HitBox] = []
        self._built_for: Size | None = None
        self._follow = True  # keep the selected thumbnail in view (until the wheel scrolls)
        self.thumb_factor = 1.0
        # (id of an image array, factor, palette) -> (the array, its thumbnails); holding the
        # array keeps its id from being reused by a new one while the entry lives
        self._thumbs: dict[tuple[int, float, str], tuple[np.ndarray, list[Any]]] = {}
        self.empty_text = "samples appear here during a run"

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
            self._follow = True
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
    def _layout(self, width: int, height: int, titles: bool) -> tuple[float, int]:
        """(scale factor, thumbnails per line) of the largest thumbnails that fit."""
        h, w = self.rows[0].images.shape[1:3]
        factors = [1.0, 0.5, 0.25] if w >= 16 else [2.0, 1.0, 0.5]
        for f in factors:
            cw, ch = max(1, round(w * f)), (max(1, round(h * f)) + 1) // 2 + 1
            per_line = max(1, (width + 1) // (cw + 1))
            needed = sum(titles + -(-len(r.images) // per_line) * ch for r in self.rows)
            if needed <= height:
                return f, per_line
        f = factors[-1]
        return f, max(1, (width + 1) // (max(1, round(w * f)) + 1))

    def _colours(self) -> str:
        try:
            return "256" if self.app.console.color_system == "256" else "truecolor"
        except Exception:  # no app (tests of the widget alone)
            return "truecolor"

    def _build(self) -> None:
        size = self.content_size
        self._built_for = size
        width, height = size.width, size.height
        strips: list[Strip] = []
        hits: list[HitBox] = []
        label_style = self.get_component_rich_style("preview-grid--label") or PLAIN
        if not self.rows or width <= 0 or not self.count:
            self._strips = [Strip([Segment(self.empty_text[:width], label_style)])]
            self._hits = []
            return
        title_style = self.get_component_rich_style("preview-grid--title") or PLAIN
        selected_style = self.get_component_rich_style("preview-grid--selected") or PLAIN
        # row titles when there is room for them, or several rows to tell apart
        titles = len(self.rows) > 1 or height > 6
        factor, per_line = self._layout(width, height, titles)
        self.thumb_factor = factor
        colours = self._colours()
        selected_lines = (0, 0)
        flat = 0
        for row in self.rows:
            target_probs = row.target_probs
            if titles:
                strips.append(Strip([Segment(printable(row.label)[:width], title_style)]))
            thumbs = self._row_thumbs(row, factor, colours)
            cw = len(thumbs[0][0]) if thumbs else 1
            blank = Segment(" " * cw, PLAIN)
            for start in range(0, len(thumbs), per_line):
                group = range(start, min(start + per_line, len(thumbs)))
                n_lines = max(len(thumbs[i]) for i in group)
                first_y = len(strips)
                for y in range(n_lines):
                    segs: list[Segment] = []
                    for j, i in enumerate(group):
                        if j:
                            segs.append(Segment(" ", PLAIN))
                        segs.extend(thumbs[i][y] if y < len(thumbs[i]) else [blank])
                    strips.append(Strip(segs))
                segs = []
                for j, i in enumerate(group):
                    if j:
                        segs.append(Segment(" ", PLAIN))
                    text = f"#{row.index_of(i)}"
                    if target_probs is not None and cw >= len(text) + 4:
                        text += f" {target_probs[i] * 100:.0f}%"
                    is_selected = flat + i == self.selected
                    if is_selected:
                        selected_lines = (first_y, len(strips))
                        text = ("▶" + text) if cw > len(text) else text
                    segs.append(
                        Segment(text[:cw].ljust(cw), selected_style if is_selected else label_style)
                    )
                    x0 = j * (cw + 1)
                    hits.append(HitBox(first_y, len(strips) + 1, x0, x0 + cw, flat + i))
                strips.append(Strip(segs))
            flat += len(row.images)
        self._strips, self._hits = strips, hits
        if self._follow:
            self._scroll_to(*selected_lines)
        self.top = max(0, min(self.top, len(strips) - height))

    def _row_thumbs(self, row: PreviewRow, factor: float, colours: str
                    ) -> list[list[list[Segment]]]:
        """The row's thumbnails, drawn once per image array, size and palette (selecting,
        scrolling and new steps of other rows reuse them)."""
        key = (id(row.images), factor, colours)
        cached = self._thumbs.get(key)
        if cached is not None and cached[0] is row.images:
            return cached[1]
        thumbs = [halfblock_lines(scaled(img, factor), colours) for img in row.images]
        live = {id(r.images) for r in self.rows}
        self._thumbs = {k: v for k, v in self._thumbs.items() if k[0] in live}
        self._thumbs[key] = (row.images, thumbs)
        return thumbs

    def _scroll_to(self, first: int, last: int) -> None:
        height = self.content_size.height
        if last >= self.top + height:
            self.top = last - height + 1
        if first < self.top:
            self.top = first

    def render_line(self, y: int) -> Strip:
        if self._built_for != self.content_size:
            self._build()
        width = self.content_size.width
        line = y + self.top
        if line < len(self._strips):
            return self._strips[line].crop_extend(0, width, PLAIN)
        return Strip.blank(width, PLAIN)

    def text_lines(self) -> list[str]:
        """The grid as plain text, every line of it (tests)."""
        if self._built_for != self.content_size:
            self._build()
        return [s.text for s in self._strips]

    def visible_lines(self) -> list[str]:
        """The lines on screen now."""
        lines = self.text_lines()
        return lines[self.top : self.top + self.content_size.height]

    # --------------------------------------------------------------- mouse
    def hit(self, x: int, y: int) -> int | None:
        """The flat index of the thumbnail at content cell (x, y), if any."""
        line = y + self.top
        for box in self._hits:
            if box.y0 <= line < box.y1 and box.x0 <= x < box.x1:
                return box.flat
        return None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        index = None if offset is None else self.hit(offset.x, offset.y)
        if index is not None:
            event.stop()
            self.post_message(SampleClicked(index))

    def _scroll_by(self, lines: int) -> None:
        limit = max(0, len(self._strips) - self.content_size.height)
        top = max(0, min(self.top + lines, limit))
        if top != self.top:
            self.top = top
            self._follow = False
            self.refresh()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self._scroll_by(3)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self._scroll_by(-3)
