"""TraceView: the per-caption probability over the steps, drawn as the run goes.

The poster's last figure, live: one curve per caption (the colours of the bars' swatches, the
target bold), for the batch mean and for the selected sample, side by side when there is room,
else the one chosen with f3. Drawn by :func:`clipterm.trace_plot.draw_trace`, the drawing of
``clipterm plot``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from clipterm.sanitize import printable
from clipterm.trace_plot import draw_trace

AXIS_WIDTH = 5  # the y labels ("0.5") and the axis line
MIN_PLOT_WIDTH = 12


class TraceView(Widget):
    COMPONENT_CLASSES = {"trace-view--dim"}

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.captions: tuple[str, ...] = ()
        self.mean: tuple[list[float], np.ndarray] | None = None
        self.mean_label = "batch mean"
        self.sample: tuple[list[float], np.ndarray] | None = None
        self.sample_label = ""
        self.show_sample = False  # when only one plot fits: the selected sample's (f3)
        self.xlabel = "sampling step"

    def set_trace(self, captions: Sequence[str], mean: tuple[list[float], np.ndarray] | None,
                  sample: tuple[list[float], np.ndarray] | None = None, *,
                  mean_label: str = "batch mean", sample_label: str = "",
                  xlabel: str = "sampling step") -> None:
        self.captions = tuple(printable(c) for c in captions)
        self.mean, self.sample = mean, sample
        self.mean_label, self.sample_label, self.xlabel = mean_label, sample_label, xlabel
        self.refresh()

    def clear(self) -> None:
        self.set_trace((), None)

    def toggle(self) -> str:
        self.show_sample = not self.show_sample
        self.refresh()
        return self.sample_label if self.show_sample else self.mean_label

    def plots(self) -> list[tuple[str, tuple[list[float], np.ndarray]]]:
        """The plots to draw now, (title, (steps, probs)) each, for the widget's width."""
        width = self.content_size.width
        both = [(f"p(caption) · {self.mean_label}", self.mean),
                (f"p(caption) · {self.sample_label}", self.sample)]
        available = [(t, d) for t, d in both if d is not None and len(d[0])]
        if len(available) == 2 and width >= 2 * (AXIS_WIDTH + MIN_PLOT_WIDTH * 2) + 2:
            return available  # type: ignore[return-value]
        if self.show_sample and both[1][1] is not None and len(both[1][1][0]):
            return [both[1]]  # type: ignore[list-item]
        return available[:1]  # type: ignore[return-value]

    def render(self) -> RenderableType:
        dim = self.get_component_rich_style("trace-view--dim")
        plots = self.plots() if self.captions else []
        if not plots:
            return Text("probability of each caption over the steps appears here", style=dim)
        width, height = self.content_size.width, self.content_size.height
        col_w = (width - (len(plots) - 1) * 2) // len(plots)
        rows = max(2, height - 3)  # the title, the x axis and its labels
        texts = [draw_trace(self.captions, steps, probs, max(4, col_w - AXIS_WIDTH), rows,
                            title=title, xlabel=self.xlabel, legend=False)
                 for title, (steps, probs) in plots]
        for t in texts:
            t.no_wrap = True
            t.overflow = "crop"
            t.rstrip()
        if len(texts) == 1:
            return texts[0]
        grid = Table.grid(padding=(0, 2))
        for _ in texts:
            grid.add_column(width=col_w, no_wrap=True)
        grid.add_row(*texts)
        return grid
