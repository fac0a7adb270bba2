"""HelpScreen: what each key does and how a run works."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

INTRO = """\
# clipterm

Generates images with an unconditional diffusion model (DDPM) steered toward a caption by the
gradients of CLIP. Edit the **prompt** (the caption to steer toward) and the **distractors**
(captions to steer away from, for *contrastive*; the others only score the samples), pick a
**method**, and run.

* **uncond**: plain sampling, no guidance (the baseline).
* **spherical**: pull CLIP's image embedding toward the prompt's.
* **contrastive**: raise the prompt's probability against the distractors.
* **optimize**: search the starting noise x_T so the result matches the prompt.

Blank numeric fields use the pack's default (shown in grey). Invalid fields are marked, with
the reason under the form; Run stays disabled until the form is valid.

On a small terminal one pane shows at a time: **ctrl+f** switches between the form and the
results. The trace shows each caption's probability over the steps. Every run of this sitting
is kept (**ctrl+g** lists them, to show or save one); quitting asks about unsaved runs.
"""


def keys_table(rows: Iterable[tuple[str, str]]) -> str:
    lines = ["## Keys", "", "| key | action |", "|---|---|"]
    lines += [f"| `{key}` | {desc} |" for key, desc in rows]
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,f1,q,question_mark", "dismiss_help", "Close help"),
    ]

    def __init__(self, keys: Iterable[tuple[str, str]]) -> None:
        super().__init__()
        self._keys = list(keys)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(INTRO + "\n" + keys_table(self._keys) + "\n\nPress `escape` to close.")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
