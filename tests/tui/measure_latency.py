"""Measure the TUI's responsiveness with a real pack, and save the README screenshots.

    python -m tests.tui.measure_latency [--model digits] [--n 16] [--shots docs/img]

Reports (headless Textual app, real sampler, this machine):
  * Run -> first preview: from the ctrl+r key event to the first preview drawn into the grid,
    with the pack already loaded (the app preloads it while the user edits the form), and cold.
  * key latency during a run: from posting a key event (ctrl+n, select next sample) to its
    action having run, sampled every 50 ms throughout the run.
With --shots it writes tui-idle.svg, tui-running.svg and tui-finished.svg (120x40).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from textual import events

from clipterm.tui.app import ClipTermApp
from clipterm.tui.log_panel import LogPanel
from clipterm.tui.themes import repo_themes_dir


async def press_and_wait(
    app: ClipTermApp, key: str, changed: callable, timeout: float = 5.0
) -> float:
    t0 = time.perf_counter()
    app.post_message(events.Key(key, None))
    while not changed():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(key)
        await asyncio.sleep(0.001)
    return t0


async def measure(
    model: str, device: str, n: int, steps: int | None, shots: Path | None, preload: bool
) -> dict:
    cfg = Path(tempfile.mkdtemp())
    LogPanel.clock = staticmethod(lambda: "12:00:00")
    app = ClipTermApp(
        model=model,
        device=device,
        n=n,
        steps=steps,
        config_dir=cfg,
        reset=True,
        theme_dirs=[repo_themes_dir()],
        preload=preload,
    )
    out: dict = {}
    async with app.run_test(size=(120, 40)) as pilot:
        for widget in app.query("Input"):
            widget.cursor_blink = False  # type: ignore[attr-defined]
        if preload:
            t = time.perf_counter()
            while app._packs.peek(model, device) is None:
                await asyncio.sleep(0.05)
                if time.perf_counter() - t > 300:
                    raise TimeoutError("pack load")
            out["pack_load_s"] = time.perf_counter() - t
        await pilot.pause()
        if shots:
            app.save_screenshot(str(shots / "tui-idle.svg"))
        ended = app.runs_ended
        t0 = await press_and_wait(app, "ctrl+r", lambda: app.first_preview_at > 0, timeout=300)
        out["run_to_first_preview_s"] = app.first_preview_at - t0
        latencies = []
        shot_taken = False
        while app.runs_ended == ended:
            before = app.selection_changed_at
            try:
                t = await press_and_wait(
                    app, "ctrl+n", lambda b=before: app.selection_changed_at != b
                )
            except TimeoutError:
                break
            if app.runs_ended != ended:
                break
            latencies.append(app.selection_changed_at - t)
            ev = app.last_event
            if shots and not shot_taken and ev is not None and ev.step >= ev.total // 2:
                await pilot.pause()
                app.save_screenshot(str(shots / "tui-running.svg"))
                shot_taken = True
            await asyncio.sleep(0.05)
        while app.runs_ended == ended:
            await asyncio.sleep(0.05)
        await pilot.pause()
        result = app.results[0][0]
        out.update(
            steps=result.config.steps,
            n=n,
            run_s=result.seconds,
            key_samples=len(latencies),
            key_median_ms=statistics.median(latencies) * 1000 if latencies else None,
            key_p95_ms=sorted(latencies)[int(0.95 * (len(latencies) - 1))] * 1000
            if latencies
            else None,
            key_max_ms=max(latencies) * 1000 if latencies else None,
            events=app._slot.counts,
        )
        if shots:
            app.grid.select(0)
            app._show_selection()
            await pilot.pause()
            app.save_screenshot(str(shots / "tui-finished.svg"))
        await pilot.press("ctrl+q")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="digits")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--shots", type=Path, default=None)
    args = ap.parse_args()
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    warm = asyncio.run(measure(args.model, args.device, args.n, args.steps, args.shots, True))
    print("preloaded:", {k: round(v, 3) if isinstance(v, float) else v for k, v in warm.items()})
    cold = asyncio.run(measure(args.model, args.device, args.n, args.steps, None, False))
    print("cold:     ", {k: round(v, 3) if isinstance(v, float) else v for k, v in cold.items()})


if __name__ == "__main__":
    main()
