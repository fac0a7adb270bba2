"""Mistyped command lines end in Typer's short usage message and exit 2, never a traceback."""

from __future__ import annotations

import pytest

from tests.adversarial.harness import assert_ok, assert_usage_error, run_cli

CASES = [
    (["generate", "--bogus"], "no such option"),
    (["generate", "--steps", "abc"], "--steps"),
    (["generate", "-n", "1.5"], "-n"),
    (["generate", "--seed", "x"], "--seed"),
    (["generate", "--scale", "fast"], "--scale"),
    (["generat"], "no such command"),
    (["eval"], "missing argument"),
    (["plot"], "missing argument"),
    (["generate", "--prompt"], "requires an argument"),
    (["compare", "--methods"], "requires an argument"),
    (["sweep", "--bogus"], "no such option"),
    (["models", "--download"], "requires an argument"),
    (["bench", "--batch", "two"], "--batch"),
    (["--bogus"], "no such option"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_mistyped_command_line(args, needle, capsys):
    assert_usage_error(run_cli(args, capsys), needle)


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("command", ["", "generate", "compare", "eval", "plot", "sweep", "bench", "models"])
def test_help_flags(command, flag, capsys):
    o = run_cli([c for c in (command, flag) if c], capsys)
    assert_ok(o)
    assert "Usage: clipterm" in o.out
