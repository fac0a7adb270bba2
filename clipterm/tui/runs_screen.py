"""RunsScreen: this sitting's runs; show one again, or save it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from clipterm.sanitize import printable


class RunsScreen(ModalScreen[tuple[str, int] | None]):
    """Dismisses with ("show", id), ("save", id), or None."""

    BINDINGS = [
        Binding("escape,ctrl+g", "close", "Close"),
        Binding("s,ctrl+s", "save", "Save"),
    ]

    def __init__(self, runs: list[tuple[int, str]], shown: int | None = None) -> None:
        super().__init__()
        self.runs = runs  # (record id, description), oldest first
        self.shown = shown

    def compose(self) -> ComposeResult:
        with Vertical(id="runs-body"):
            yield Label("Runs of this sitting: enter shows one, s saves it, esc closes",
                        id="runs-title")
            options = [Option(Text(("▶ " if rid == self.shown else "  ") + printable(text)),
                              id=str(rid)) for rid, text in reversed(self.runs)]
            yield OptionList(*options, id="runs-list")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def _highlighted(self) -> int | None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return None
        return int(options.get_option_at_index(options.highlighted).id or 0)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(("show", int(event.option.id or 0)))

    def action_save(self) -> None:
        rid = self._highlighted()
        self.dismiss(None if rid is None else ("save", rid))

    def action_close(self) -> None:
        self.dismiss(None)
