"""The ``clipterm`` command (Typer): bare ``clipterm`` opens the app; the batch commands live in
:mod:`clipterm.commands`, one module each. Heavy imports (torch, the TUI) happen inside commands.

Exit codes: 0 done; 2 a usage or input error (one line, no traceback); 1 a failed run or a bug;
130 / 143 / 129 after SIGINT / SIGTERM / SIGHUP (finished samples kept and listed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from clipterm.commands import bench as bench_command
from clipterm.commands import eval as eval_command
from clipterm.commands import sweep as sweep_command
from clipterm.commands.common import (
    METHOD_HELP,
    Stopped,
    err,
    exit_on_signals,
    ignore_stop_signals,
    restore_stop_handlers,
    stop_handlers,
)
from clipterm.commands.compare import compare
from clipterm.commands.generate import generate
from clipterm.commands.models import models
from clipterm.commands.open import open_run
from clipterm.errors import RunFailed, UserError
from clipterm.sanitize import printable

app = typer.Typer(
    name="clipterm",
    help="Text-guided image generation with diffusion models and CLIP, in the terminal.\n\n"
    "Run bare `clipterm` for the interactive app, or a command below for batch work.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Pack to prefill: digits, cifar10, a pack JSON or a model folder."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Target caption to prefill."),
    distractor: list[str] = typer.Option(None, "--distractor", "-d", help="Distractor caption (repeat)."),
    method: str = typer.Option(None, "--method", help=METHOD_HELP),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    steps: int = typer.Option(None, "--steps", help="Sampling steps."),
    scale: float = typer.Option(None, "--scale", help="Guidance scale."),
    n: int = typer.Option(None, "-n", "--n", help="Number of samples."),
    seed: int = typer.Option(None, "--seed", help="Seed."),
    from_path: Path = typer.Option(None, "--from", help="Prefill the form with a run folder's or a sample PNG's settings (options given here override them)."),
    reset: bool = typer.Option(False, "--reset", help="Forget the remembered form values."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Open the interactive app (options prefill its form)."""
    if version:
        from clipterm import __version__

        typer.echo(f"clipterm {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is not None:
        exit_on_signals()
        return
    try:
        from clipterm.tui.app import run_app
    except ImportError:  # the TUI has not been built into this install
        typer.echo(ctx.get_help())
        raise typer.Exit() from None
    settings = None
    if from_path is not None:  # refused in one line before the app starts
        from clipterm.rerun import read_recorded

        settings = read_recorded(from_path)
    prefill = {
        "model": model, "prompt": prompt, "distractors": list(distractor) if distractor else None,
        "method": method, "device": device, "steps": steps, "scale": scale, "n": n, "seed": seed,
    }
    run_app(**{k: v for k, v in prefill.items() if v is not None}, reset=reset,
            settings=settings)


app.command()(generate)
app.command()(compare)
app.command()(models)
app.command("open")(open_run)
eval_command.register(app)
sweep_command.register(app)
bench_command.register(app)


# ----------------------------------------------------------------------------- entry point
def _click_error_types() -> tuple[type[BaseException], ...]:
    """The ClickException classes a usage error can come as: Typer >= 0.26 vendors its own copy
    of Click (``typer.BadParameter`` derives from it), older Typer uses Click itself."""
    found = [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    try:
        import click

        found.append(click.ClickException)
    except ImportError:  # pragma: no cover - Typer without Click
        pass
    return tuple(dict.fromkeys(found))


def quiet_openmp_waits() -> None:
    """Make torch's OpenMP threads sleep, not spin, while they wait (unless the user has chosen
    a policy). With the default policy a waiting thread spins for several milliseconds at every
    barrier: on a machine whose cores other processes share, one preempted thread then keeps its
    partner spinning, and a 4 s run took 40-200 s with 3-5x the CPU time. OpenMP reads the variable
    when torch loads it, so this runs before any command imports torch. ``OMP_NUM_THREADS`` still
    sets the thread count (README, "Busy machines")."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors with exit code 2 for what a user can fix.

    Called with ``argv`` (in-process, e.g. from tests), the signal handlers are put back as
    they were; as the process's entry point the stop signals are ignored from the moment the
    exit code is decided, so a late signal cannot replace it while Python exits."""
    handlers = stop_handlers()
    quiet_openmp_waits()
    try:
        _main(argv)
    finally:
        if argv is None:
            ignore_stop_signals()
        else:
            restore_stop_handlers(handlers)


def _main(argv: list[str] | None) -> None:
    click_errors = _click_error_types()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="clipterm")
    except UserError as exc:
        err(printable(exc))
        sys.exit(2)
    except RunFailed as exc:
        err(printable(exc))
        sys.exit(1)
    except Stopped as exc:
        err(printable(exc))
        sys.exit(exc.code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(130)
    except click_errors as exc:
        if getattr(exc, "ctx", None) is None:  # raised by the parser before a context existed
            args = sys.argv[1:] if argv is None else list(argv)
            cmd = next((a for a in args if not a.startswith("-")), "")
            where = f"clipterm {printable(cmd)}".strip() if cmd else "clipterm"
            sys.stderr.write(f"Usage: {where} [OPTIONS]\nTry '{where} -h' for help.\n\n")
        exc.show()  # Typer's usual short usage message: usage line, hint, "Error: ..."
        usage = any(c.__name__ == "UsageError" for c in type(exc).__mro__)
        sys.exit(2 if usage else getattr(exc, "exit_code", 1))
    if isinstance(code, int) and code:  # typer.Exit(code) comes back as a return value here
        sys.exit(code)
