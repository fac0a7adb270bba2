"""LogPanel: a timestamped record of what happened (runs, saves, errors) below the previews."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog


def wall_clock() -> str:
    return time.strftime("%H:%M:%S")


class LogPanel(RichLog):
    clock = staticmethod(wall_clock)  # replaced in snapshot tests for deterministic output

    def __init__(self, **kwargs: object) -> None:
        super().__init__(wrap=True, markup=False, max_lines=500, **kwargs)  # type: ignore[arg-type]
        self.lines_written: list[str] = []

    def _stamp(self, message: str, style: str) -> None:
        line = Text(self.clock() + " ", style="dim")
        line.append(message, style=style)
        self.lines_written.append(message)
        self.write(line)

    def info(self, message: str) -> None:
        self._stamp(message, "")

    def warn(self, message: str) -> None:
        self._stamp(message, "yellow")

    def error(self, message: str) -> None:
        self._stamp(message, "bold red")
