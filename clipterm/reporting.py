"""Reporting a run as it goes: rate-limited StepEvents and the probability trace.

The sampler asks :meth:`Reporter.due` at every step; only then does it pay for what a report
needs (CLIP's probabilities of an unguided step, a preview copy). A step is due on a regular grid
of ``trace_points`` steps per chain (the trace of run.json and logs get the same steps on every
run), and, when someone listens, whenever ``interval`` seconds have passed since the last event:
a fast GPU never floods a front end, a slow CPU still shows each step. On CUDA the copies to
the host start without blocking and events are delivered once they have landed, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clipterm.animation import FrameRecorder
from clipterm.events import StepEvent

EventCallback = Callable[[StepEvent], None]


@dataclass(frozen=True)
class Position:
    """Where in the run a chain is: which batch, its first sample's place, its sample indices."""

    batch_index: int
    offset: int
    indices: tuple[int, ...] = ()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] images [B, C, H, W] -> uint8 [B, H, W, 3] on the CPU."""
    return to_uint8_device(x).cpu().numpy()


def to_uint8_device(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images [B, C, H, W] -> uint8 [B, H, W, 3] on their device."""
    img = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if img.shape[1] == 1:
        img = img.expand(-1, 3, -1, -1)
    return img.permute(0, 2, 3, 1).contiguous()


class Reporter:
    """Turns the sampler's steps into StepEvents at a bounded rate and keeps the trace."""

    def __init__(self, on_event: EventCallback | None = None, *, interval: float = 0.1,
                 trace_points: int = 50, clock: Callable[[], float] = time.perf_counter,
                 frames: FrameRecorder | None = None):
        self.on_event = on_event
        self.frames = frames
        self.interval = interval
        self.trace_points = max(1, trace_points)
        self.clock = clock
        self.prob_trace: list[tuple[int, int, list[float]]] = []
        self.last_preview: np.ndarray | None = None
        self.method = ""
        self.captions: tuple[str, ...] = ()
        self.n_samples = 0
        self.n_batches = 1
        self.start = clock()
        self._last_event = -float("inf")
        self._async = False
        self._pending: list[tuple[Any, dict[str, Any]]] = []

    def begin(self, method: str, captions: tuple[str, ...], n_samples: int, n_batches: int,
              async_copies: bool = False) -> None:
        """Called by the sampler when the run starts."""
        self.method, self.captions = method, captions
        self.n_samples, self.n_batches = n_samples, n_batches
        self.start = self._last_event = self.clock()
        self._async = async_copies

    def start_chain(self, where: Position) -> None:
        """A batch's chain starts (again, after an out-of-memory split)."""
        if self.frames is not None:
            self.frames.reset(where.indices)

    @property
    def wants_previews(self) -> bool:
        return self.on_event is not None or self.frames is not None

    def due(self, step: int, total: int) -> bool:
        """Whether step ``step`` (1-based) of a chain of ``total`` is reported."""
        every = max(1, total // self.trace_points)
        if step % every == 0 or step == total:
            return True
        return self.on_event is not None and self.clock() - self._last_event >= self.interval

    def report(self, *, phase: str, step: int, total: int, timestep: int, where: Position,
               x0: torch.Tensor, probs: torch.Tensor | None,
               nonfinite: torch.Tensor | int = 0, loss: float | None = None) -> None:
        """Report a due step: ``x0`` the current predicted clean images in [-1, 1], ``probs``
        CLIP's caption probabilities [B, C] (None if not computed)."""
        self._last_event = self.clock()
        meta = dict(phase=phase, step=step, total=total, timestep=timestep, where=where,
                    loss=loss, elapsed=self._last_event - self.start)
        if not self._async:
            self._deliver(meta, None if probs is None else probs.detach().float().cpu().numpy(),
                          to_uint8(x0) if self.wants_previews else None, int(nonfinite))
            return
        # Start the copies now and hand the event over once they have landed.
        with torch.no_grad():
            host = {"nonfinite": torch.as_tensor(nonfinite, device=x0.device).clone()}
            if probs is not None:
                host["probs"] = probs.detach().float()
            if self.wants_previews:
                host["preview"] = to_uint8_device(x0)
            host = {k: v.to("cpu", non_blocking=True) for k, v in host.items()}
        done = torch.cuda.Event()
        done.record()
        self._pending.append((done, {"meta": meta, **host}))
        self.flush(block=False)

    def flush(self, block: bool) -> None:
        """Deliver the events whose copies have landed (all of them if ``block``), in order."""
        while self._pending:
            done, item = self._pending[0]
            if not block and not done.query():
                return
            done.synchronize()
            self._pending.pop(0)
            nonfinite = int(item["nonfinite"])
            probs = item["probs"].numpy() if "probs" in item else None
            preview = item["preview"].numpy() if "preview" in item else None
            self._deliver(item["meta"], probs, preview, nonfinite)

    def discard_pending(self) -> None:
        """Forget events not yet delivered (a batch that failed and is retried)."""
        self._pending.clear()

    def _deliver(self, meta: dict[str, Any], probs: np.ndarray | None,
                 preview: np.ndarray | None, nonfinite: int) -> None:
        where: Position = meta["where"]
        step, total = meta["step"], meta["total"]
        every = max(1, total // self.trace_points)
        on_grid = step % every == 0 or step == total
        if where.batch_index == 0 and probs is not None and on_grid:
            self.prob_trace.append((step, meta["timestep"], probs.mean(axis=0).round(6).tolist()))
        if self.frames is not None and on_grid and preview is not None:
            self.frames.add(where.indices, preview)
        if self.on_event is None:
            return
        self.last_preview = preview
        self.on_event(StepEvent(
            method=self.method, phase=meta["phase"], step=step, total=total,
            timestep=meta["timestep"], batch_index=where.batch_index, n_batches=self.n_batches,
            sample_offset=where.offset, n_samples=self.n_samples, elapsed=meta["elapsed"],
            captions=self.captions, probs=probs, preview=preview, loss=meta["loss"],
            nonfinite_skipped=nonfinite,
        ))
