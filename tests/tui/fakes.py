"""Deterministic stand-ins for the model pack and the sampler, injected into ClipTermApp."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipterm.config import RunConfig
from clipterm.events import RunResult, StepEvent

CAPTIONS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


FAKE_PACK_JSON = Path(__file__).with_name("fakepack.json")


@dataclass
class FakePack:
    name: str = "fakepack"
    captions: tuple[str, ...] = CAPTIONS
    default_prompt: str = "seven"
    defaults: dict[str, Any] = field(
        default_factory=lambda: {
            "sampler": "ddim",
            "steps": 10,
            "batch": 100,
            "scale": 0.0,
            "opt_iters": 3,
            "lr": 0.05,
            "methods": {"contrastive": {"scale": 2.0}, "spherical": {"scale": 5.0}},
        }
    )
    device: str = "cpu"
    image_size: int = 16
    train_steps: int = 1000


class FakeLoader:
    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.error = error

    def __call__(self, model: str, device: str) -> FakePack:
        self.calls.append((model, device))
        if self.error is not None:
            raise self.error
        return FakePack()


def fake_images(
    seed: int, indices: range | list[int], step: int, total: int, size: int
) -> np.ndarray:
    """Smooth deterministic pictures that sharpen as the run goes."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    out = []
    for i in indices:
        phase = (seed * 7 + i * 3) % 10 / 10
        t = step / max(total, 1)
        r = (np.sin((xx + phase) * 6.28) * 0.5 + 0.5) * t
        g = yy * (1 - t) + t * (1 - yy)
        b = np.full_like(xx, phase)
        out.append(np.stack([r, g, b], axis=-1))
    return (np.stack(out) * 255).round().astype(np.uint8)


def fake_probs(n_captions: int, batch: int, step: int, total: int, first: int) -> np.ndarray:
    logits = np.zeros((batch, n_captions), dtype=np.float32)
    logits[:, 0] = 3.0 * step / max(total, 1)
    logits += (np.arange(batch)[:, None] + first) % 3 * 0.1
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class FakeRunner:
    """Emits ``cfg.steps`` events per batch; honours cancel between steps.

    ``delay``: seconds per step. ``pause_at``: block at that step until ``release`` is set
    (mid-run snapshots), only in batch ``pause_batch`` if given. ``fail_at``: raise ``error`` at that step.
    ``pause_method``: pause only that method's run. ``partial_preview``: a cancelled run keeps its last preview (as the real sampler does);
    ``run_started`` / ``run_finished``: the run's wall-clock times.
    """

    def __init__(
        self,
        delay: float = 0.0,
        pause_at: int | None = None,
        pause_batch: int | None = None,
        fail_at: int | None = None,
        error: BaseException | None = None,
        size: int = 16,
        partial_preview: bool = False,
        run_started: str = "",
        run_finished: str = "",
        pause_method: str | None = None,
    ) -> None:
        self.delay = delay
        self.pause_at = pause_at
        self.pause_batch = pause_batch
        self.fail_at = fail_at
        self.error = error or RuntimeError("boom")
        self.size = size
        self.partial_preview = partial_preview
        self.run_started, self.run_finished = run_started, run_finished
        self.pause_method = pause_method
        self.paused = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.started = threading.Event()
        self.configs: list[RunConfig] = []
        self.thread_names: list[str] = []

    def __call__(
        self,
        pack: Any,
        cfg: RunConfig,
        on_event: Callable[[StepEvent], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        self.configs.append(cfg)
        self.thread_names.append(threading.current_thread().name)
        self.started.set()
        try:
            return self._run(cfg, on_event, cancel)
        finally:
            self.finished.set()

    def _run(
        self,
        cfg: RunConfig,
        on_event: Callable[[StepEvent], None] | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        captions = (
            cfg.captions
            if cfg.distractors
            else (cfg.prompt, *[c for c in CAPTIONS if c != cfg.prompt][:2])
        )
        batch = cfg.batch or cfg.n
        steps = cfg.steps or 10
        n_batches = cfg.n_batches
        images, probs, indices = [], [], []
        completed = True
        last_preview = None
        for b in range(n_batches):
            first = b * batch
            idx = list(range(first, min(cfg.n, first + batch)))
            for step in range(1, steps + 1):
                if cancel is not None and cancel.is_set():
                    completed = False
                    break
                if self.fail_at == step:
                    raise self.error
                if (self.pause_at == step and self.pause_batch in (None, b)
                        and self.pause_method in (None, cfg.method)):
                    self.paused.set()
                    while not self.release.wait(0.05):
                        if cancel is not None and cancel.is_set():
                            break
                if self.delay:
                    time.sleep(self.delay)
                last_preview = fake_images(cfg.seed, idx, step, steps, self.size)
                if on_event is not None:
                    on_event(
                        StepEvent(
                            method=cfg.method,
                            phase="sample",
                            step=step,
                            total=steps,
                            timestep=1000 - step * 1000 // steps,
                            batch_index=b,
                            n_batches=n_batches,
                            sample_offset=first,
                            n_samples=cfg.n,
                            elapsed=0.1 * (b * steps + step),
                            captions=captions,
                            probs=fake_probs(len(captions), len(idx), step, steps, first),
                            preview=fake_images(cfg.seed, idx, step, steps, self.size),
                        )
                    )
            if not completed:
                break
            images.append(fake_images(cfg.seed, idx, steps, steps, self.size))
            probs.append(fake_probs(len(captions), len(idx), steps, steps, first))
            indices.extend(idx)
        size = self.size
        return RunResult(
            config=cfg,
            images=np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8),
            probs=np.concatenate(probs) if probs else np.zeros((0, len(captions)), np.float32),
            indices=np.array(indices, dtype=np.int64),
            completed=completed,
            seconds=0.1 * steps * n_batches,
            device="cpu",
            started=self.run_started,
            finished=self.run_finished,
            partial_preview=last_preview if self.partial_preview and not completed else None,
        )
