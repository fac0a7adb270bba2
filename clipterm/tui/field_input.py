"""FieldInput: a one-line input that never loses or reorders a key, however fast they come.

Textual hands a key to the focused widget; the widget inserts printable characters itself, but
its other keys (backspace, delete, home...) are bindings, run only after the key has bubbled up
through every parent to the app. In a burst the app forwards the next letters before that
round trip ends, so ``seven`` + six backspaces + ``three`` could come out as ``sthr``. Here the
widget runs its own bindings as the key arrives, in its own queue, in the order typed
(:class:`OwnKeysFirst`, shared with the distractor list).
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.widgets import Input


class OwnKeysFirst:
    """Mixin for a text widget: run the widget's own key bindings as soon as the key arrives."""

    _own_key_actions: dict[str, str] | None = None

    @classmethod
    def own_key_actions(cls) -> dict[str, str]:
        """key -> action of the bindings this widget class declares (its own and inherited)."""
        if cls.__dict__.get("_own_key_actions") is None:
            actions: dict[str, str] = {}
            for klass in reversed(cls.__mro__):
                bindings = klass.__dict__.get("BINDINGS")
                if not bindings:
                    continue
                for binding in Binding.make_bindings(bindings):
                    if not binding.priority:
                        actions[binding.key] = binding.action
            cls._own_key_actions = actions
        return cls._own_key_actions  # type: ignore[return-value]

    async def handle_key(self, event: events.Key) -> bool:
        action = self.own_key_actions().get(event.key)
        if action is None:
            return await super().handle_key(event)  # type: ignore[misc]
        event.stop()
        event.prevent_default()
        await self.run_action(action)  # type: ignore[attr-defined]
        return True


class FieldInput(OwnKeysFirst, Input):
    """An :class:`~textual.widgets.Input` whose editing keys keep their order in a burst."""
