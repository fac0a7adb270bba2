"""Every message of the app, as dataclasses in one place.

The run controller's threads post the first group (thread-safe ``App.post_message``); the
widgets post the second. Handlers are ``@on(PackReady)`` etc. in the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from clipterm.config import RunConfig
from clipterm.events import RunResult


# ----------------------------------------------------------------------------- from threads
@dataclass
class PackReady(Message):
    """A model pack is loaded (for a run, or ahead of one)."""

    model: str
    device: str
    pack: Any


@dataclass
class PackFailed(Message):
    """A model pack could not be loaded."""

    model: str
    device: str
    error: BaseException
    preload: bool = False  # loaded ahead of a run: the run reports it again only if it needs it


@dataclass
class ResultReady(Message):
    """One config of a run finished (or stopped) with its result."""

    record_id: int
    index: int
    result: RunResult


@dataclass
class RunFailed(Message):
    record_id: int
    error: BaseException
    config: RunConfig | None
    trace: str


@dataclass
class RunEnded(Message):
    """The sampler thread of a run has returned."""

    record_id: int
    state: str


@dataclass
class DownloadEnded(Message):
    model: str
    error: str | None  # None when the weights are now here


# ----------------------------------------------------------------------------- from widgets
@dataclass
class FormChanged(Message):
    """The form was read again (after the user stopped typing for a moment)."""

    state: Any  # clipterm.tui.form_model.FormState


@dataclass
class RunRequested(Message):
    """Run, from the form (its button, or Enter in a field)."""


@dataclass
class SampleClicked(Message):
    """A thumbnail of the preview grid was clicked."""

    index: int  # flat index over the grid's rows
