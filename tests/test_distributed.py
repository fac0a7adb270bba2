"""Multi-process generation: sharing out the batches, merging, and torchrun with 2 gloo processes
on the CPU giving the same images as one process with the same thread count."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipterm.distributed import merge_results, rank_share
from clipterm.sampling import batches


def test_ranks_take_whole_batches_of_the_one_process_partition():
    for n, batch, world in ((10, 3, 3), (5, 2, 2), (1, 1, 4), (10000, 100, 8), (7, 7, 2)):
        parts = [rank_share(n, batch, r, world) for r in range(world)]
        assert sorted(i for p in parts for i in p) == list(range(n))
        one_process = batches(range(n), batch)
        for p in parts:  # each rank's batches are batches of the one-process run
            assert all(b in one_process for b in batches(p, batch))
    assert rank_share(5, 2, 0, 2) == [0, 1, 4] and rank_share(5, 2, 1, 2) == [2, 3]


def test_merge_puts_samples_in_index_order():
    from clipterm.config import RunConfig

    cfg = RunConfig(method="uncond", prompt="one", distractors=("two",), n=5, batch=2, steps=2,
                    seed=0)
    parts = []
    for rank in range(2):
        idx = np.array(rank_share(5, 2, rank, 2))
        parts.append({"indices": idx, "images": np.stack([np.full((2, 2, 3), i, np.uint8) for i in idx]),
                      "probs": np.stack([[i / 10, 1 - i / 10] for i in idx]).astype(np.float32),
                      "completed": True, "seconds": 1.0 + rank, "device": "cpu", "nonfinite": rank,
                      "nonfinite_samples": [], "started": f"t{rank}", "finished": f"u{rank}",
                      "losses": [], "prob_trace": [], "oom_splits": 0, "runtime": "fp32"})
    merged = merge_results(cfg, parts, 2)
    assert merged.indices.tolist() == [0, 1, 2, 3, 4]
    assert [int(im[0, 0, 0]) for im in merged.images] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(merged.probs[:, 0], [0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)
    assert merged.seconds == 2.0 and merged.nonfinite_skipped == 1
    assert [r.n for r in merged.ranks] == [3, 2]
    assert (merged.started, merged.finished) == ("t0", "u1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pixels(run_dir: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(run_dir.glob("sample-*.png"))}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed")
def test_torchrun_two_processes_match_one_process(tiny_pack, tmp_path):
    """Like with like: the one-process run is a process of its own with the ranks' thread
    count (CPU kernels are bit-identical only for the same number of threads)."""
    args = ["generate", "--model", str(tiny_pack), "--method", "contrastive", "-n", "5",
            "--batch", "2", "--steps", "3", "--seed", "11", "--device", "cpu", "-q"]
    bindir = Path(sys.executable).parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [str(bindir / "torchrun"), "--nproc_per_node=2", f"--master_port={_free_port()}",
         "-m", "clipterm", *args, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, "-m", "clipterm", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    (two,) = list((tmp_path / "two").iterdir())  # one run folder for both ranks
    (one,) = list((tmp_path / "one").iterdir())
    a, b = _pixels(one), _pixels(two)
    assert list(a) == [f"sample-{i:05d}.png" for i in range(5)] == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(np.asarray(Image.open(one / "grid.png")),
                                  np.asarray(Image.open(two / "grid.png")))
    info = json.loads((two / "run.json").read_text())
    assert info["status"] == "complete" and info["n_done"] == 5
    assert info["world_size"] == 2 and [r["n"] for r in info["ranks"]] == [3, 2]
    assert [s["index"] for s in info["samples"]] == [0, 1, 2, 3, 4]
    single = json.loads((one / "run.json").read_text())
    for s1, s2 in zip(single["samples"], info["samples"], strict=True):
        assert s1["probs"] == s2["probs"]
