"""The real-terminal check (scripts/tui_tmux_check.sh) on the tiny pack: slow, needs tmux."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_app_in_tmux_draws_and_quits(tiny_pack: Path) -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "tui_tmux_check.sh"), str(tiny_pack), "cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(Path.home())},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
