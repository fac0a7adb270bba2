"""Several processes, one run: ``torchrun`` / ``accelerate launch`` share out the batches.

The run's samples are partitioned into batches exactly as a one-process run partitions them
(:func:`clipterm.sampling.batches`), and rank r makes batches r, r + world, r + 2 world... So
every batch holds the same sample indices as in a one-process run and, with the per-sample seeds,
every image is the one a single process would make (on the same kind of device with the same
number of threads: CPU kernels are bit-identical only for a fixed thread count).

Rank 0 creates the run folder and broadcasts its path; every rank writes its own sample PNGs into
it as its batches finish; rank 0 gathers the ranks' results and writes grid.png and run.json.
The launchers' environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) is all we
read; the process group uses gloo on the CPU and NCCL on CUDA.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from clipterm.config import RunConfig
from clipterm.events import RankPart, RunResult, StepEvent


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
            if name in ("auto", "cuda"):
                name = f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}"
            torch.cuda.set_device(torch.device(name))
        else:
            name = "cpu"
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        return cls(rank=rank, world_size=world, local_rank=local_rank, device=name, backend=backend)

    def share(self, n: int, batch: int) -> list[int]:
        return rank_share(n, batch, self.rank, self.world_size)

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


def rank_share(n: int, batch: int, rank: int, world_size: int) -> list[int]:
    """The sample indices of rank ``rank``: the whole batches rank, rank + world_size, ... of the
    one-process partition of 0..n-1 into batches of ``batch``."""
    from clipterm.sampling import batches

    mine = batches(range(n), batch)[rank::world_size]
    return [i for b in mine for i in b]


def merge_results(cfg: RunConfig, parts: Sequence[dict[str, Any]], size: int) -> RunResult:
    """One RunResult from the ranks' parts, samples in index order."""
    indices = np.concatenate([p["indices"] for p in parts]).astype(np.int64)
    order = np.argsort(indices, kind="stable")
    c = len(cfg.captions)
    images = (np.concatenate([p["images"] for p in parts]) if len(indices)
              else np.zeros((0, size, size, 3), np.uint8))
    probs = np.concatenate([p["probs"] for p in parts]) if len(indices) else np.zeros((0, c), np.float32)
    main = parts[0]
    return RunResult(
        config=cfg, images=images[order], probs=probs[order], indices=indices[order],
        completed=all(p["completed"] for p in parts), seconds=max(p["seconds"] for p in parts),
        device=",".join(sorted({p["device"] for p in parts})),
        started=min(p["started"] for p in parts), finished=max(p["finished"] for p in parts),
        nonfinite_skipped=sum(p["nonfinite"] for p in parts),
        nonfinite_samples=sorted(i for p in parts for i in p["nonfinite_samples"]),
        losses=main["losses"], prob_trace=main["prob_trace"],
        oom_splits=sum(p["oom_splits"] for p in parts), runtime=main["runtime"],
        ranks=[RankPart(rank=r, device=p["device"], n=len(p["indices"]),
                        seconds=round(p["seconds"], 4)) for r, p in enumerate(parts)],
    )


def sharded_run(
    pack: Any,
    cfg: RunConfig,
    out_root: Path,
    pack_name: str,
    ctx: DistContext,
    on_event: Callable[[StepEvent], None] | None = None,
    cancel: threading.Event | None = None,
    header: dict[str, Any] | None = None,
) -> tuple[RunResult, Path]:
    """Make this rank's batches of ``cfg``'s samples into one run folder shared by all ranks.

    Returns (the merged result on rank 0, this rank's own result elsewhere; the run folder).
    """
    from clipterm.output import RunWriter
    from clipterm.sampling import sample

    main_writer = RunWriter.create(out_root, cfg, pack_name, header) if ctx.is_main else None
    run_dir = Path(ctx.broadcast(str(main_writer.dir) if main_writer else None))
    writer = main_writer or RunWriter(run_dir, cfg, pack_name, record=False)
    result = sample(pack, cfg, on_event=on_event, cancel=cancel,
                    indices=ctx.share(cfg.n, cfg.batch), on_batch=writer.add_batch)
    part = {
        "indices": result.indices, "images": result.images, "probs": result.probs,
        "completed": result.completed, "seconds": result.seconds, "device": result.device,
        "started": result.started, "finished": result.finished,
        "nonfinite": result.nonfinite_skipped, "nonfinite_samples": result.nonfinite_samples,
        "losses": result.losses, "prob_trace": result.prob_trace,
        "oom_splits": result.oom_splits, "runtime": result.runtime, "samples": writer.samples,
    }
    parts = ctx.gather(part)
    if parts is None or main_writer is None:
        return result, run_dir
    merged = merge_results(cfg, parts, pack.image_size)
    for p in parts[1:]:
        main_writer.add_samples(p["samples"])
    main_writer.finish(merged)
    return merged, run_dir
