"""Drive a program in a real terminal: tmux, on a private server, at a given size.

Used by the slow terminal tests, the benchmark (scripts/tui_bench.py) and the screenshot
script. ``capture()`` is what the terminal shows (tmux's own screen, after the program's escape
sequences); ``send()`` types keys, all in one tmux call (a burst, as fast as a paste).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def have_tmux() -> bool:
    return shutil.which("tmux") is not None


class Tmux:
    """One program in one tmux window of ``width`` x ``height`` cells."""

    def __init__(self, command: str, width: int = 80, height: int = 24,
                 env: Mapping[str, str] | None = None, cwd: Path = REPO) -> None:
        self.width, self.height = width, height
        self.work = Path(tempfile.mkdtemp(prefix="clipterm-tmux-"))
        self.socket = f"clipterm-{os.getpid()}-{id(self)}"
        self.exit_file = self.work / "exit"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # the program, then its exit status in a file; the window stays for the capture
        # COLUMNS / LINES from the caller would override the window's size
        script = (f"unset COLUMNS LINES; cd {shlex.quote(str(cwd))} && "
                  f"{('export ' + exports + ' && ') if exports else ''}"
                  f"{command}; echo $? > {shlex.quote(str(self.exit_file))}; sleep 3600")
        self._tmux("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height),
                   "bash", "-c", script)
        self._tmux("set-option", "-t", "main", "status", "off")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def capture(self, ansi: bool = False) -> str:
        """The screen now, as text (with SGR colour codes when ``ansi``)."""
        args = ["capture-pane", "-p", "-t", "main"] + (["-e"] if ansi else [])
        return self._tmux(*args)

    def send(self, *keys: str) -> None:
        """Press keys (tmux names: C-r, BSpace, Escape, F2...) in one burst."""
        self._tmux("send-keys", "-t", "main", *keys)

    def type(self, text: str) -> None:
        """Type literal text in one burst."""
        self._tmux("send-keys", "-t", "main", "-l", text)

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "main", "-x", str(width), "-y", str(height))
        self.width, self.height = width, height

    def wait_for(self, condition: str | Callable[[str], bool], timeout: float = 60.0,
                 interval: float = 0.1) -> str:
        """The screen once it shows ``condition`` (text, or a predicate on the screen)."""
        test = (lambda s: condition in s) if isinstance(condition, str) else condition

        def check(screen: str) -> bool:  # a predicate may raise on a half-drawn screen: retry
            try:
                return bool(test(screen))
            except Exception:
                return False

        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if check(screen):
                return screen
            if self.exit_code() is not None and not check(screen):
                break
            time.sleep(interval)
        raise AssertionError(f"not on screen after {timeout:.0f}s: {condition!r}\n"
                             f"--- screen ({self.width}x{self.height}) ---\n{screen}")

    def exit_code(self) -> int | None:
        try:
            return int(self.exit_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                return code
            time.sleep(0.02)
        raise AssertionError(f"the program did not exit in {timeout:.0f}s\n{self.capture()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30)
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> Tmux:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
