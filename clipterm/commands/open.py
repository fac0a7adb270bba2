"""``clipterm open RUN_DIR``: a past run in the app, as if it had just finished."""

from __future__ import annotations

from pathlib import Path

import typer


def open_run(
    run_dir: Path = typer.Argument(..., help="A run folder (with run.json) written by clipterm."),
) -> None:
    """Show a past run in the app: its samples, CLIP probability bars and probability trace."""
    from clipterm.tui.past_run import load_past_run

    past = load_past_run(run_dir)  # a folder that cannot be shown ends here, before the app
    from clipterm.tui.app import run_app

    run_app(open_run=past)
