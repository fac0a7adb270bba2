"""What a front end knows about a run: step events while it goes, a RunResult when it ends.

Everything here is plain data on the CPU (numpy arrays, numbers, strings), safe to hand to
another thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clipterm.config import RunConfig


@dataclass(frozen=True)
class StepEvent:
    """One reported step of a run.

    ``probs`` is the softmax over ``captions`` (target first) for each sample of the current batch,
    computed on the image CLIP saw at this step. ``preview`` holds the current predicted clean
    images of the batch as uint8 RGB, shape [B, H, W, 3]. For ``optimize`` the phase is
    ``"optimize"``, ``step`` counts Adam iterations and ``loss`` is the mean CLIP cosine distance.
    """

    method: str
    phase: str  # "sample" | "optimize"
    step: int  # 1-based index within the current chain (or optimisation iteration)
    total: int  # steps (or iterations) in the current chain
    timestep: int  # model timestep of this step (0 for optimisation iterations)
    batch_index: int  # 0-based
    n_batches: int
    sample_offset: int  # index of this batch's first sample in the run
    n_samples: int  # samples in the whole run
    elapsed: float  # seconds since the run started
    captions: tuple[str, ...]
    probs: np.ndarray | None  # [B, C] float32
    preview: np.ndarray | None  # [B, H, W, 3] uint8
    loss: float | None = None
    nonfinite_skipped: int = 0  # guidance gradients dropped so far in this run

    @property
    def progress(self) -> float:
        """Fraction of the whole run done, in [0, 1]."""
        per_batch = 1.0 / self.n_batches
        return min(1.0, self.batch_index * per_batch + per_batch * self.step / max(self.total, 1))

    @property
    def mean_probs(self) -> np.ndarray | None:
        return None if self.probs is None else self.probs.mean(axis=0)


@dataclass(frozen=True)
class RankPart:
    """One process's share of a multi-process run."""

    rank: int
    device: str
    n: int
    seconds: float


@dataclass
class RunResult:
    """What a run produced. A stopped run holds the samples of the batches that finished."""

    config: RunConfig
    images: np.ndarray  # [N, H, W, 3] uint8, finished samples only
    probs: np.ndarray  # [N, C] float32, final per-caption probabilities
    indices: np.ndarray  # [N] sample indices (the seed-derived ids)
    completed: bool
    seconds: float
    device: str
    started: str = ""  # wall-clock ISO times of the run itself (not of saving it)
    finished: str = ""
    nonfinite_skipped: int = 0  # guidance gradients dropped (NaN/inf), over all steps
    nonfinite_samples: list[int] = field(default_factory=list)  # indices whose x0 was not finite
    losses: list[float] = field(default_factory=list)  # optimize: mean loss per iteration
    # (step, timestep, mean probs over the first batch) at the reported steps of batch 0
    prob_trace: list[tuple[int, int, list[float]]] = field(default_factory=list)
    oom_splits: int = 0
    runtime: str = "fp32"
    partial_preview: np.ndarray | None = None  # last preview of an unfinished batch
    ranks: list[RankPart] = field(default_factory=list)  # multi-process runs

    @property
    def captions(self) -> tuple[str, ...]:
        return self.config.captions

    def subset(self, keep: set[int]) -> RunResult:
        """The same result holding only the samples whose index is in ``keep``."""
        from dataclasses import replace

        mask = np.isin(self.indices, sorted(keep))
        return replace(self, images=self.images[mask], probs=self.probs[mask],
                       indices=self.indices[mask],
                       nonfinite_samples=[i for i in self.nonfinite_samples if i in keep])

    @property
    def target_probs(self) -> np.ndarray:
        return self.probs[:, 0] if len(self.probs) else np.zeros(0, dtype=np.float32)

    @property
    def mean_target_prob(self) -> float | None:
        """Mean final p(target); None when no sample finished."""
        return float(self.target_probs.mean()) if len(self.probs) else None
