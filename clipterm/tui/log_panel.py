"""LogPanel: a timestamped record of what happened (runs, saves, errors), toggled with ctrl+l.

Lines wrap at the panel's width whenever it is drawn (a long path or error is never cut off),
and the newest line stays in view.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from clipterm.sanitize import printable

MAX_LINES = 500


def wall_clock() -> str:
    return time.strftime("%H:%M:%S")


class LogPanel(VerticalScroll, can_focus=False):
    clock = staticmethod(wall_clock)  # replaced in snapshot tests for deterministic output

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.lines_written: list[str] = []
        self._lines: list[Text] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="log-text", markup=False)

    def _stamp(self, message: str, style: str) -> None:
        message = printable(message)
        line = Text(self.clock() + " ", style="dim")
        line.append(message, style=style)
        self.lines_written.append(message)
        self._lines = [*self._lines[-(MAX_LINES - 1):], line]
        if self.is_mounted:
            self.query_one("#log-text", Static).update(Text("\n").join(self._lines))
            self.scroll_end(animate=False)

    def on_mount(self) -> None:
        if self._lines:
            self.query_one("#log-text", Static).update(Text("\n").join(self._lines))

    def info(self, message: str) -> None:
        self._stamp(message, "")

    def warn(self, message: str) -> None:
        self._stamp(message, "yellow")

    def error(self, message: str) -> None:
        self._stamp(message, "bold red")
