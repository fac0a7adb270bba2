"""Where things go for a terminal size: a pure function, so every size can be tested.

Two arrangements:

* **wide** (at least ``WIDE_SIZE``): the form on the left, the results on the right;
* **narrow** (smaller): one pane at a time, the form or the results (ctrl+f switches; a run
  shows the results). At 80x24 the results pane holds the selected sample pixel-exact, every
  caption's bar with its percentage, the probability trace and a strip of thumbnails.

Below ``MIN_SIZE`` the app shows a notice instead (the keys still work). The selected sample
gets the largest whole-pixel upscale that leaves the bars room; on a large terminal it grows.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_SIZE = (60, 20)  # columns, rows
WIDE_SIZE = (120, 34)
FORM_WIDTH = 48
BARS_MIN_WIDTH = 36  # caption, a short bar, the mean and the selected sample's percentage
GRID_MIN_ROWS = 5  # one line of quarter-size thumbnails with their labels
TRACE_MIN_ROWS = 5  # a plot of 3 rows, its axis and its labels


@dataclass(frozen=True)
class Layout:
    mode: str  # "wide" | "narrow" | "too-small"
    width: int
    height: int
    header: bool = False
    form_width: int = 0  # 0: the form is not beside the results
    top_rows: int = 0  # the selected sample, the bars and the trace
    sample_width: int = 0
    sample_rows: int = 0
    bars_rows: int = 0
    trace_rows: int = 0  # 0: no trace
    grid_rows: int = 0

    @property
    def too_small(self) -> bool:
        return self.mode == "too-small"


def sample_box(image_px: int, factor: float) -> tuple[int, int]:
    """(columns, rows) of the sample view for a factor: the image plus a caption line."""
    cols = max(1, round(image_px * factor))
    return cols + 2, (cols + 1) // 2 + 1


def plan(width: int, height: int, n_captions: int = 10, image_px: int = 32,
         form_shown: bool = True) -> Layout:
    """The layout for a terminal of ``width`` x ``height`` cells."""
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        return Layout("too-small", width, height)
    wide = width >= WIDE_SIZE[0] and height >= WIDE_SIZE[1]
    header = wide
    main = height - 2 - header  # the status line and the footer
    results_w = width - FORM_WIDTH if wide and form_shown else width
    bars = n_captions + 1  # a heading and one line per caption
    # the largest sample that leaves the bars their width and the grid its rows
    room_rows = main - (max(GRID_MIN_ROWS, main // 3) if wide else GRID_MIN_ROWS)
    factor = 0.25
    for k in (4.0, 3.0, 2.0, 1.0, 0.5, 0.25):
        w, h = sample_box(image_px, k)
        if w + BARS_MIN_WIDTH <= results_w and h <= room_rows:
            factor = k
            break
    sample_w, sample_h = sample_box(image_px, factor)
    top = max(sample_h, min(bars, room_rows))
    if wide:  # the rows the grid does not need go to the trace, under the bars
        top = max(top, room_rows)
    trace = top - min(bars, top)  # under the bars, beside the sample
    if trace < TRACE_MIN_ROWS:
        trace = 0
    grid = main - top
    return Layout("wide" if wide else "narrow", width, height, header=header,
                  form_width=FORM_WIDTH if wide and form_shown else 0, top_rows=top,
                  sample_width=sample_w, sample_rows=top, bars_rows=min(bars, top),
                  trace_rows=trace, grid_rows=grid)
