"""The interactive Textual app opened by bare ``clipterm`` (see :mod:`clipterm.tui.app`)."""
