"""DistractorList: the distractor captions, one per line, in an editable text area.

Add a caption with a new line, edit it in place, remove it by deleting the line (ctrl+shift+k),
and reorder with alt+up / alt+down. Blank lines are ignored. Editing keys keep their order in a
burst (:class:`~clipterm.tui.field_input.OwnKeysFirst`).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.binding import Binding
from textual.widgets import TextArea

from clipterm.tui.field_input import OwnKeysFirst


class DistractorList(OwnKeysFirst, TextArea):
    BINDINGS = [
        Binding("alt+up", "move_line(-1)", "Move up", show=False),
        Binding("alt+down", "move_line(1)", "Move down", show=False),
    ]

    def __init__(self, distractors: Iterable[str] = (), **kwargs: object) -> None:
        super().__init__(
            "\n".join(distractors),
            soft_wrap=False,
            show_line_numbers=False,
            compact=True,
            tab_behavior="focus",
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def distractors(self) -> tuple[str, ...]:
        """The non-blank lines, stripped, in order."""
        return tuple(line.strip() for line in self.text.splitlines() if line.strip())

    def set_distractors(self, distractors: Iterable[str]) -> None:
        self.load_text("\n".join(distractors))

    def action_move_line(self, delta: int) -> None:
        """Swap the cursor's line with the one above (-1) or below (+1)."""
        lines = self.text.split("\n")
        row, col = self.cursor_location
        other = row + delta
        if not (0 <= row < len(lines) and 0 <= other < len(lines)):
            return
        lines[row], lines[other] = lines[other], lines[row]
        end = (len(lines) - 1, len(self.document.get_line(len(lines) - 1)))
        self.replace("\n".join(lines), (0, 0), end)
        self.cursor_location = (other, min(col, len(lines[other])))
