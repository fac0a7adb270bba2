"""QuitScreen: asked on quit while runs of this sitting are not saved."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from clipterm.sanitize import printable


class QuitScreen(ModalScreen[str]):
    """Dismisses with "save" (save them, then quit), "quit" (quit anyway) or "stay"."""

    BINDINGS = [
        Binding("s", "choose('save')", "Save and quit"),
        Binding("q,ctrl+q", "choose('quit')", "Quit without saving", priority=True),
        Binding("escape,n", "choose('stay')", "Stay"),
    ]

    def __init__(self, unsaved: list[str], running: bool = False) -> None:
        super().__init__()
        self.unsaved = unsaved
        self.running = running

    def compose(self) -> ComposeResult:
        n = len(self.unsaved)
        what = f"{n} run{'s' if n != 1 else ''} of this sitting {'are' if n != 1 else 'is'} not saved"
        with Vertical(id="quit-body"):
            yield Label(f"Quit? {what}:", id="quit-question")
            for line in self.unsaved[:6]:
                yield Label(f"  {printable(line)}", classes="quit-run", markup=False)
            if n > 6:
                yield Label(f"  … and {n - 6} more", classes="quit-run")
            if self.running:
                yield Label("A run is going: quitting stops it (what is finished is kept).")
            with Horizontal(id="quit-buttons"):
                yield Button("s  Save and quit", id="save", variant="success", compact=True)
                yield Button("q  Quit", id="quit", variant="error", compact=True)
                yield Button("esc  Stay", id="stay", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "stay")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
