"""Strings from outside (files, prompts, paths, run folders, themes) made safe for a terminal.

A caption in a pack JSON, a prompt remembered by the app or a path can carry escape sequences
that retitle the terminal, clear the screen or move the cursor. :func:`printable` keeps every
printable character and shows every other one (C0/C1 controls, ESC, DEL, bidi overrides,
zero-width and other format characters, line and paragraph separators) as a visible escape such
as ``\\x1b`` or ``\\u200b``, so the text stays readable and nothing reaches the terminal raw.
"""

from __future__ import annotations

from typing import Any


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: Any, limit: int | None = None) -> str:
    """``str(value)`` with every non-printable character escaped; one line, optionally cut to
    ``limit`` characters (with an ellipsis)."""
    text = value if isinstance(value, str) else str(value)
    out = "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
    if limit is not None and len(out) > limit:
        out = out[: max(limit - 1, 0)] + "…"
    return out


def is_invisible(text: str) -> bool:
    """True when ``text`` shows nothing: empty, or only whitespace, control and format
    characters (zero-width spaces, joiners, bidi marks)."""
    import unicodedata

    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def quoted(value: Any, limit: int | None = None) -> str:
    """``printable(value)`` between single quotes, for messages: ``'seven'``."""
    return f"'{printable(value, limit)}'"
