"""The adversarial matrix's harness: run the CLI as a user would and check how it ends.

Every case asserts the exit code, the message (one line for a user error, Typer's short usage
block for a mistyped command line), that no traceback was printed, and what is on disk
afterwards (nothing half-written, nothing existing changed).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from clipterm.cli import main


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(args: list[str], capsys) -> Outcome:
    """``clipterm ARGS`` in this process (imports are paid once per test session)."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return Outcome(code, out, err)


def assert_user_error(o: Outcome, *needles: str) -> str:
    """Exit 2, no traceback, exactly one line on stderr ``clipterm: error: ...`` holding every
    needle (case-insensitive); nothing raw from outside (no ESC) in it. Returns the line."""
    assert o.code == 2, f"exit {o.code}, expected 2\nstdout: {o.out[-800:]}\nstderr: {o.err[-1500:]}"
    assert "Traceback" not in o.text, o.text[-1500:]
    lines = [ln for ln in o.err.splitlines() if ln.strip() and "warning:" not in ln]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{o.err}"
    line = lines[0]
    assert line.startswith("clipterm: error: "), line
    assert "\x1b" not in o.text, repr(o.text)
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


def assert_usage_error(o: Outcome, *needles: str) -> str:
    """A mistyped command line: exit 2, no traceback, Typer's short usage message ending in an
    ``Error: ...`` line that holds every needle."""
    assert o.code == 2, f"exit {o.code}, expected 2\n{o.text[-1500:]}"
    assert "Traceback" not in o.text, o.text[-1500:]
    errors = [ln for ln in o.err.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, o.err
    assert "Usage: clipterm" in o.err, o.err
    for needle in needles:
        assert needle.lower() in errors[0].lower(), f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def assert_ok(o: Outcome) -> None:
    assert o.code == 0, f"exit {o.code}\nstdout: {o.out[-800:]}\nstderr: {o.err[-1500:]}"
    assert "Traceback" not in o.text, o.text[-1500:]


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` (and ``root`` itself) with (size, mtime_ns, mode)."""
    root = Path(root)
    if not root.exists():
        return {}
    paths = [root, *root.rglob("*")]
    out = {}
    for p in paths:
        st = p.lstat()
        out[str(p.relative_to(root.parent))] = (st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return out


def assert_unchanged(before: dict[str, tuple[int, int, int]], root: Path) -> None:
    """Nothing under ``root`` was created, removed or modified."""
    after = snapshot(root)
    assert after == before, {
        "created": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(k for k in set(after) & set(before) if after[k] != before[k]),
    }


def no_temp_files(root: Path) -> list[str]:
    """Leftover temporary files of atomic writes (``.NAME.*.tmp``) under ``root``."""
    return [str(p) for p in Path(root).rglob(".*.tmp")] if Path(root).exists() else []


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)
