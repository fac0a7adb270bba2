"""StatusLine: step i/N, timestep, it/s, elapsed and ETA, device, CUDA memory; loss for optimize."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import Static

from clipterm.events import StepEvent
from clipterm.sanitize import printable

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 16) -> str:
    """The last ``width`` values as block characters scaled between their min and max."""
    vals = [v for v in values if v == v][-width:]  # drop NaN
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo
    if span <= 0:
        return SPARKS[3] * len(vals)
    return "".join(SPARKS[min(7, int((v - lo) / span * 7.999))] for v in vals)


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe_event(
    event: StepEvent, device: str, memory: str | None = None, losses: Sequence[float] = ()
) -> str:
    """The status text for one step event (pure, so it can be tested without a terminal)."""
    done_steps = event.batch_index * event.total + event.step
    rate = done_steps / event.elapsed if event.elapsed > 0 else 0.0
    progress = event.progress
    eta = event.elapsed / progress * (1 - progress) if progress > 0 else 0.0
    parts: list[str] = [event.method]
    if event.phase == "optimize":
        parts.append(f"iter {event.step}/{event.total}")
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f} {sparkline(losses)}".rstrip())
    else:
        parts.append(f"step {event.step}/{event.total}")
        parts.append(f"t={event.timestep}")
    if event.n_batches > 1:
        parts.append(f"batch {event.batch_index + 1}/{event.n_batches}")
    parts.append(f"{rate:.1f} it/s")
    parts.append(f"{clock(event.elapsed)} elapsed")
    parts.append(f"ETA {clock(eta)}")
    parts.append(device)
    if memory:
        parts.append(memory)
    if event.nonfinite_skipped:
        parts.append(f"{event.nonfinite_skipped} NaN grads skipped")
    return " · ".join(parts)


class StatusLine(Static):
    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(text, markup=False, **kwargs)  # type: ignore[arg-type]

    def show_text(self, text: str) -> None:
        self.update(printable(text))

    @property
    def text(self) -> str:
        return str(self.render())
