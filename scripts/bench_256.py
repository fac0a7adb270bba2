"""Seconds and peak memory per guided step of a 256x256 DDPM: a benchmark, not a test.

The architecture of the church / bedroom / cat / celebahq packs (google/ddpm-ema-*-256: the
DDPM paper's 113.7M-parameter UNet, from clipterm/packs/architectures/ddpm_256_unet.json) and
open_clip's ViT-B-32, both with random weights (nothing is downloaded; the time and memory of a
step do not depend on the weights). One guided step is what the sampler does per step:
contrastive guidance through the predicted x0 (UNet forward and backward, CLIP on the views,
the objective), the DDIM step and the guidance shift. Each configuration is timed with and
without the UNet's gradient checkpointing, with CLIP fed one resize (0 cutouts) or the whole
image plus 1, 8 or 32 cutouts.

    python scripts/bench_256.py                       # CPU, batch 1 (minutes per configuration)
    python scripts/bench_256.py --device cuda --batch 8 --timed 5 --out bench_256.json

Memory: on CUDA, torch's peak allocated memory during the timed steps, and that peak less what
was allocated before the first step (the models, x_t: the step's own working memory). On the
CPU each configuration runs in a fresh process (a freed heap is not returned to the system, so
one process would hide the later configurations' peaks); its peak resident set is reset after the
models are built (Linux: /proc/self/clear_refs), so the number is the step's own high-water mark
above the models. ``--tiny`` runs the same on a tiny 64x64 architecture, to test this script.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

ARCHITECTURE = ROOT / "clipterm" / "packs" / "architectures" / "ddpm_256_unet.json"
TINY_UNET = {
    "sample_size": 64, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
    "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 4,
    "scheduler": {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001,
                  "beta_end": 0.02, "variance_type": "fixed_small", "clip_sample": True},
}
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 4, "head_width": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
SCALE = 0.1  # the packs' untuned default; the cost of a step does not depend on it
CHAIN_STEPS = 100  # the packs' DDIM default: the timed steps are its first ones


# ----------------------------------------------------------------------------- the models
def build_pack(device: Any, tiny: bool, seed: int = 0) -> Any:
    """The church pack's spec over the 256x256 architectures with random weights."""
    import open_clip
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    from clipterm.models import LoadedPack
    from clipterm.packs import get_pack_spec

    if tiny:
        cfg = json.loads(json.dumps(TINY_UNET))
    else:
        cfg = {k: v for k, v in json.loads(ARCHITECTURE.read_text()).items()
               if not k.startswith("_")}
    sched_cfg = cfg.pop("scheduler")
    torch.manual_seed(seed)
    with _quiet():
        unet = UNet2DModel(**cfg).eval().requires_grad_(False).to(device)
        scheduler = DDPMScheduler(**sched_cfg)
        clip_name = "ViT-B-32"
        if tiny:
            clip_name = _register_tiny_clip()
        clip = open_clip.create_model(clip_name, pretrained=None, device=device)
    clip.eval().requires_grad_(False)
    spec = replace(get_pack_spec("church"), description="256x256 architectures, random weights")
    return LoadedPack(spec=spec, device=device, unet=unet, scheduler=scheduler, clip=clip,
                      tokenizer=open_clip.get_tokenizer(clip_name),
                      clip_name=f"{clip_name} (random weights)")


def _register_tiny_clip() -> str:
    import open_clip

    name = "bench-256-tiny-clip"
    if open_clip.get_model_config(name) is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.json"
            path.write_text(json.dumps(TINY_CLIP))
            open_clip.add_model_config(path)
    return name


@contextlib.contextmanager
def _quiet():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# ----------------------------------------------------------------------------- memory
def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set to its current one (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_kib(field: str) -> int | None:
    """VmRSS / VmHWM of this process in KiB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


# ----------------------------------------------------------------------------- one configuration
def run_one(device_name: str, batch: int, cutouts: int, checkpointing: bool, warmup: int,
            timed: int, tiny: bool) -> dict[str, Any]:
    """Time ``warmup + timed`` guided steps of one configuration in this process."""
    import torch

    from clipterm.config import resolve
    from clipterm.guide import CaptionScorer, Guide
    from clipterm.models import resolve_device
    from clipterm.runtime import Runtime, set_gradient_checkpointing
    from clipterm.schedule import make_schedule
    from clipterm.seeds import initial_noise

    device = resolve_device(device_name)
    pack = build_pack(device, tiny)
    cfg = resolve(pack.spec, method="contrastive", n=batch, batch=batch, steps=CHAIN_STEPS,
                  sampler="ddim", scale=SCALE, seed=0, cutouts=cutouts,
                  grad_checkpointing=checkpointing)
    runtime = Runtime.for_device(device, cfg.method)
    runtime.prepare(pack.unet, device)
    set_gradient_checkpointing(pack.unet, checkpointing)
    guide = Guide(pack, cfg, CaptionScorer(pack, cfg.captions, runtime), runtime)
    guide = guide.bind(range(batch))
    schedule = make_schedule(pack.scheduler, "ddim", CHAIN_STEPS, device)
    shape = (pack.channels, pack.image_size, pack.image_size)
    x = initial_noise(0, range(batch), shape, device)

    def step(k: int, x: torch.Tensor) -> torch.Tensor:
        t = schedule.timesteps[k]
        eps, grad, _ = guide(x, t, schedule.abar[k])
        x, _ = schedule.step(k, x, eps, None)
        return x + schedule.guidance_shift(k, grad, SCALE)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        for k in range(warmup):
            x = step(k, x)
        sync()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            reset = _reset_peak_rss()
            base = (_rss_kib("VmRSS") or 0) * 1024
        seconds = []
        for k in range(warmup, warmup + timed):
            t0 = time.perf_counter()
            x = step(k, x)
            sync()
            seconds.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        memory = "cuda max_memory_allocated"
    else:
        hwm = _rss_kib("VmHWM")
        if reset and hwm is not None:
            peak, memory = hwm * 1024, "peak RSS (reset after the models were built)"
        else:  # no reset: the whole process's peak, models and building included
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            memory = "peak RSS of the process (could not be reset)"
    return {
        "checkpointing": checkpointing, "cutouts": cutouts, "views": 1 + cutouts if cutouts else 1,
        "batch": batch, "seconds": seconds, "s_per_step": sum(seconds) / len(seconds),
        "peak_bytes": int(peak), "base_bytes": int(base), "step_bytes": int(peak - base),
        "memory": memory, "runtime": runtime.describe(), "finite": bool(torch.isfinite(x).all()),
    }


def run_isolated(args: argparse.Namespace, cutouts: int, checkpointing: bool) -> dict[str, Any]:
    """:func:`run_one` in a fresh Python process (the CPU's memory numbers need one)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one",
           json.dumps({"cutouts": cutouts, "checkpointing": checkpointing}),
           "--device", args.device, "--batch", str(args.batch), "--warmup", str(args.warmup),
           "--timed", str(args.timed), "--threads", str(args.threads)]
    if args.tiny:
        cmd.append("--tiny")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"configuration cutouts={cutouts} checkpointing={checkpointing} "
                           f"failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the report
def unet_flops(device_name: str, tiny: bool) -> dict[str, int]:
    """Counted forward FLOPs (2 per multiply-add) of the UNet per image and CLIP per view."""
    from clipterm.bench import model_flops
    from clipterm.models import resolve_device

    return model_flops(build_pack(resolve_device(device_name), tiny))


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| UNet checkpointing | cutouts | CLIP views | s / step | (each timed step) | peak MiB "
             "above the models | per sample | process peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        each = ", ".join(f"{s:.2f}" for s in r["seconds"])
        lines.append(
            f"| {'on' if r['checkpointing'] else 'off'} | {r['cutouts']} | {r['views']} | "
            f"{r['s_per_step']:.2f} | {each} | {r['step_bytes'] / 2**20:,.0f} | "
            f"{r['step_bytes'] / r['batch'] / 2**20:,.0f} | {r['peak_bytes'] / 2**20:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--cutouts", default="0,1,8,32", help="comma-separated cutout counts")
    p.add_argument("--checkpointing", default="off,on", help="off,on | off | on")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--timed", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--no-flops", action="store_true", help="skip counting the FLOPs")
    p.add_argument("--in-process", action="store_true",
                   help="run every configuration in this process (CUDA does by default)")
    p.add_argument("--tiny", action="store_true", help="a tiny 64x64 architecture (tests)")
    p.add_argument("--out", type=Path, help="write the results as JSON (and a .md table)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        one = json.loads(args.one)
        row = run_one(args.device, args.batch, int(one["cutouts"]), bool(one["checkpointing"]),
                      args.warmup, args.timed, args.tiny)
        print(json.dumps(row))
        return 0
    counts = [int(c) for c in args.cutouts.split(",") if c.strip()]
    modes = [m.strip() == "on" for m in args.checkpointing.split(",") if m.strip()]
    isolate = not args.in_process and not args.device.startswith("cuda")
    info: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
        "device": (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                   else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "batch": args.batch,
        "warmup": args.warmup, "timed": args.timed, "architecture": "tiny" if args.tiny else
        "google/ddpm-ema-*-256 UNet2DModel + open_clip ViT-B-32, random weights",
    }
    if not args.no_flops:
        info["flops"] = unet_flops(args.device, args.tiny)
    rows = []
    for checkpointing in modes:
        for n in counts:
            t0 = time.perf_counter()
            row = (run_isolated(args, n, checkpointing) if isolate else
                   run_one(args.device, args.batch, n, checkpointing, args.warmup, args.timed,
                           args.tiny))
            rows.append(row)
            print(f"[bench_256] checkpointing={'on' if checkpointing else 'off'} cutouts={n}: "
                  f"{row['s_per_step']:.2f} s/step, {row['step_bytes'] / 2**20:,.0f} MiB above "
                  f"the models ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    text = table(rows)
    print(json.dumps(info))
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
