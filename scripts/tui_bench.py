"""How the app feels in a real terminal: timings measured in tmux, printed, never asserted.

    python scripts/tui_bench.py [--model digits] [--device cpu] [--sizes 80x24,120x40]
                                [--n 16] [--steps 50] [--keys 30] [--repeat 2]

For each terminal size, ``clipterm`` runs in a fresh tmux window (throwaway config folder) and
the script watches the screen the user sees (``tmux capture-pane``, polled every few ms):

* launch to form: from starting the process to the form on screen;
* Run to first preview: from ctrl+r to the first step on screen (status line and previews),
  cold (right after launch: torch and the pack load in that time) and warm (a second run);
* key to screen under a running sampler: ctrl+n (next sample) until the sample view shows the
  newly selected sample, repeated ``--keys`` times during a run: median, p95 and max;
* quit to shell prompt: with a sampler running, from the key that quits (q in the "not saved"
  question) until the shell has the terminal back.

Times include tmux and the polling (a few ms). Run it on a quiet machine, or repeat and read
the spread: the numbers move with the load.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.tui.tmux import Tmux  # noqa: E402

POLL = 0.005


def wait(term: Tmux, check, timeout: float) -> tuple[float, str]:
    """(time when ``check(screen)`` first held, that screen); polls as fast as tmux answers."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        screen = term.capture()
        if check(screen):
            return time.perf_counter(), screen
        time.sleep(POLL)
    raise TimeoutError(f"not on screen in {timeout:.0f}s:\n{term.capture()}")


def caption_index(screen: str) -> int | None:
    """The sample index in the sample view's caption ("#3 contrastive · ...")."""
    for line in screen.splitlines():
        m = re.search(r"(?:^|▕ )#(\d+) (?:uncond|spherical|contrastive|optimize)", line)
        if m:
            return int(m.group(1))
    return None


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def measure(size: tuple[int, int], args: argparse.Namespace) -> dict[str, float | str]:
    config = tempfile.mkdtemp(prefix="clipterm-bench-")
    command = (f"{sys.executable} -m clipterm --reset --model {args.model} --device {args.device}"
               f" -n {args.n} --steps {args.steps}")
    env = {"TERM": "xterm-256color", "XDG_CONFIG_HOME": config, "HF_HUB_OFFLINE": "1"}
    out: dict[str, float | str] = {"size": f"{size[0]}x{size[1]}"}
    t0 = time.perf_counter()
    with Tmux(command, *size, env=env, cwd=Path(config)) as term:
        t_form, _ = wait(term, lambda s: "Run  ctrl+r" in s, 300)
        out["launch_to_form_s"] = t_form - t0
        # cold: ctrl+r at once (the pack loads in this time)
        t_run = time.perf_counter()
        term.send("C-r")
        t_first, _ = wait(term, lambda s: "· step " in s and "▀" in s, 600)
        out["run_to_first_preview_cold_s"] = t_first - t_run
        # key to screen while the sampler runs
        latencies: list[float] = []
        for _ in range(args.keys):
            screen = term.capture()
            if "finished:" in screen or "cancelled" in screen:
                break
            before = caption_index(screen)
            if before is None:
                time.sleep(0.1)
                continue
            expected = (before + 1) % args.n
            t_key = time.perf_counter()
            term.send("C-n")
            t_seen, _ = wait(term, lambda s, e=expected: caption_index(s) == e, 30)
            latencies.append(t_seen - t_key)
            time.sleep(0.15)
        if latencies:
            out["keys"] = len(latencies)
            out["key_median_ms"] = statistics.median(latencies) * 1000
            out["key_p95_ms"] = pct(latencies, 0.95) * 1000
            out["key_max_ms"] = max(latencies) * 1000
        # warm: cancel, then run again with the pack loaded
        term.send("Escape")
        wait(term, lambda s: "cancelled" in s, 600)
        t_run = time.perf_counter()
        term.send("C-r")
        t_first, _ = wait(term, lambda s: "· step " in s and "▀" in s and "cancelled" not in s,
                          600)
        out["run_to_first_preview_warm_s"] = t_first - t_run
        # quit during the run: the first run's unfinished batch is unsaved, so ctrl+q asks;
        # "q" quits without saving: from that key until the shell has the terminal back
        time.sleep(0.5)
        term.send("C-q")
        wait(term, lambda s: "not saved" in s, 60)
        t_quit = time.perf_counter()
        term.send("q")
        while term.exit_code() is None:
            if time.perf_counter() - t_quit > 120:
                raise TimeoutError("the app did not quit")
            time.sleep(POLL)
        out["quit_to_shell_s"] = time.perf_counter() - t_quit
        out["exit_code"] = str(term.exit_code())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="digits")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="80x24,120x40")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--keys", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} model={args.model} "
          f"device={args.device} n={args.n} steps={args.steps}", flush=True)
    for r in range(args.repeat):
        for size in sizes:
            result = measure(size, args)  # type: ignore[arg-type]
            shown = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in result.items())
            print(f"run {r + 1}: {shown} load={os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
