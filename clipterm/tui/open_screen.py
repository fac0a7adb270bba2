"""OpenRunScreen: asks for a path: a run folder to show (the app's Open action), or a run folder
or sample PNG whose settings fill the form (Load settings)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from clipterm.tui.field_input import FieldInput

OPEN_RUN = "Open a run folder (enter opens, esc closes):"
LOAD_SETTINGS = "Load settings from a run folder or a sample PNG (enter loads, esc closes):"


class OpenRunScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, start: str = "", purpose: str = OPEN_RUN) -> None:
        super().__init__()
        self.start = start
        self.purpose = purpose

    def compose(self) -> ComposeResult:
        with Vertical(id="open-body"):
            yield Label(self.purpose, markup=False)
            yield FieldInput(self.start, id="open-path", placeholder="out/20260101-120000-…")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_close(self) -> None:
        self.dismiss(None)
