"""Several processes, one run: ``torchrun`` / ``accelerate launch`` shard the sample indices.

Each rank makes the samples ``indices[rank::world_size]`` (strided, so ranks get equal shares
whatever n is) with the per-sample seeds, so every image is the one a single process would
make. Rank 0 creates the run folder and broadcasts its path; every rank writes its own sample
PNGs into it as its batches finish; rank 0 gathers the ranks' results (indices, probabilities,
images for the grid, timings) and writes grid.png and run.json once all have finished.

The launchers' environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) is all we
read; the process group uses gloo on the CPU and NCCL on CUDA.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from clipterm.config import SamplingConfig
from clipterm.events import RunResult, StepEvent


@dataclass(frozen=True)
class DistContext:
    """This process's place in a multi-process run."""

    rank: int
    world_size: int
    local_rank: int
    device: str
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> DistContext | None:
        """Join the process group when launched by torchrun or accelerate (WORLD_SIZE > 1);
        ``None`` for a plain single-process run. ``device`` auto/cuda becomes cuda:LOCAL_RANK."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1 or "RANK" not in os.environ:
            return None
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        name = (device or "auto").strip().lower()
        use_cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
        if use_cuda:
            name = f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}" if name in ("auto", "cuda") else name
            torch.cuda.set_device(torch.device(name))
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        return cls(rank=rank, world_size=world, local_rank=local_rank, device=name, backend=backend)

    def shard(self, indices: Sequence[int]) -> list[int]:
        return shard(indices, self.rank, self.world_size)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on rank 0 (None elsewhere)."""
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def close(self) -> None:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def shard(indices: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This rank's share of the sample indices: every world_size-th, from position rank."""
    return list(indices)[rank::world_size]


def merge_results(cfg: SamplingConfig, parts: Sequence[dict[str, Any]], size: int) -> RunResult:
    """One RunResult from the ranks' parts, samples in index order."""
    indices = np.concatenate([p["indices"] for p in parts]).astype(np.int64)
    order = np.argsort(indices, kind="stable")
    images = np.concatenate([p["images"] for p in parts]) if len(indices) else np.zeros((0, size, size, 3), np.uint8)
    probs = np.concatenate([p["probs"] for p in parts]) if len(indices) else np.zeros((0, len(cfg.captions)), np.float32)
    main = parts[0]
    result = RunResult(
        config=cfg, captions=cfg.captions, images=images[order], probs=probs[order],
        indices=indices[order], completed=all(p["completed"] for p in parts),
        seconds=max(p["seconds"] for p in parts), device=",".join(sorted({p["device"] for p in parts})),
        nonfinite_skipped=sum(p["nonfinite"] for p in parts), losses=main["losses"],
        prob_trace=main["prob_trace"],
    )
    result.extra["world_size"] = len(parts)
    result.extra["ranks"] = [
        {"rank": r, "device": p["device"], "n": len(p["indices"]), "seconds": round(p["seconds"], 4)}
        for r, p in enumerate(parts)
    ]
    return result


def sharded_run(
    pack: Any,
    cfg: SamplingConfig,
    out_root: Path,
    pack_name: str,
    ctx: DistContext,
    on_event: Callable[[StepEvent], None] | None = None,
    cancel: threading.Event | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[RunResult, Path]:
    """Make this rank's share of ``cfg``'s samples into one run folder shared by all ranks.

    Returns (the merged result on rank 0, this rank's own result elsewhere; the run folder).
    """
    from clipterm.output import RunWriter
    from clipterm.sampling import sample

    writer = RunWriter(out_root, cfg, pack_name, extra=extra) if ctx.is_main else None
    run_dir = Path(ctx.broadcast(str(writer.dir) if writer else None))
    if writer is None:
        writer = _RankWriter(cfg, pack_name, run_dir)
    t0 = time.perf_counter()
    result = sample(pack, cfg, on_event=on_event, cancel=cancel, indices=ctx.shard(range(cfg.n)),
                    on_batch=writer.add_batch)
    part = {
        "indices": result.indices, "images": result.images, "probs": result.probs,
        "completed": result.completed, "seconds": time.perf_counter() - t0,
        "device": result.device, "nonfinite": result.nonfinite_skipped, "losses": result.losses,
        "prob_trace": result.prob_trace, "samples": writer.samples,
        "extra": {k: v for k, v in result.extra.items() if k != "partial_preview"},
    }
    parts = ctx.gather(part)
    if parts is None:
        return result, run_dir
    merged = merge_results(cfg, parts, pack.image_size)
    for p in parts:
        merged.extra.update({k: v for k, v in p["extra"].items() if k not in merged.extra})
    writer.samples = [s for p in parts for s in p["samples"]]
    writer.finish(merged)
    return merged, run_dir


class _RankWriter:
    """A rank other than 0: writes its sample PNGs into the shared folder, never run.json."""

    def __init__(self, cfg: SamplingConfig, pack_name: str, run_dir: Path):
        from clipterm.output import RunWriter

        self._writer = RunWriter.__new__(RunWriter)  # the PNG writing of RunWriter, no JSON
        self._writer.cfg, self._writer.pack_name, self._writer.dir = cfg, pack_name, run_dir
        self._writer.samples = []

    @property
    def samples(self) -> list[dict[str, Any]]:
        return self._writer.samples

    def add_batch(self, indices: Sequence[int], images: np.ndarray, probs: np.ndarray) -> None:
        self._writer.add_batch(indices, images, probs)
