"""Benchmarks: the sampler's methods per step, against the seed's step and a plain fp32 loop.

What is timed (see docs/PERFORMANCE.md):

- **ours**: the public :func:`clipterm.sampling.sample` with the run's :class:`Runtime`, events off.
  Per step = (time of a run with ``warmup + timed`` steps - time of a run with ``warmup``
  steps) / ``timed``, after an untimed warm-up run (which pays any compilation). The per-run
  costs (x_T, text embeddings, final CLIP scores, the copy to the CPU) cancel in the difference.
  For ``optimize`` a "step" is one DDIM step of the chain, forward and backward (with
  per-step checkpointing): per step = (run with 2 Adam iterations - run with 1) / chain length.
- **seed-faithful step**: the seed code's guided DDPM step re-implemented for timing: fp32 UNet,
  fp16 CLIP (fp32 on the CPU), CLIP fed x_t resized to 224 without mapping [-1, 1] to [0, 1],
  the captions re-tokenised and re-encoded at every step, the poster's update with raw
  gradients; spherical encodes the image twice (once for the loss, once for the logged score).
- **plain fp32 loop**: diffusers' DDPMPipeline style: ``unet(x, t).sample`` then
  ``DDPMScheduler.step`` under ``no_grad``.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add) on the
eager fp32 path with the math attention kernel (so attention is counted on every device), never
hard-coded. Achieved TFLOP/s = counted FLOPs per step / measured seconds per step.

Every timing is repeated (``repeats``, after one warm-up) and reported as min / median / max;
``s_per_step`` is the median. A ratio to a baseline is the ratio of medians, and it is marked
not meaningful when the two sides' ranges overlap (the ratio of some run of one side to some
run of the other lies on the other side of 1): on a shared machine that is common.
Guidance every K-th step / from timestep T (``guide_every``, ``guide_from``) is timed like the
method itself, with the timed chain a whole number of K-step cycles, and reported relative to
guiding every step, with the share of the timed steps that were guided.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import logging
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipterm import guidance
from clipterm.config import GUIDED_METHODS as GUIDED
from clipterm.config import METHODS, RunConfig, resolve
from clipterm.errors import UserError
from clipterm.guide import CaptionScorer
from clipterm.models import LoadedPack, resolve_device
from clipterm.optimize import optimize_iteration
from clipterm.packs import PACKS_DIR, get_pack_spec
from clipterm.reporting import Reporter
from clipterm.runtime import DEFAULT_CPU_RUNTIME as REFERENCE_RUNTIME
from clipterm.runtime import Runtime, is_out_of_memory
from clipterm.sampling import sample
from clipterm.sanitize import printable
from clipterm.schedule import make_schedule
from clipterm.seeds import initial_noise

CIFAR10_UNET_CONFIG = PACKS_DIR / "architectures" / "cifar10_unet.json"
# The seed's guidance scales (reference-facts.md): raw gradients, gamma 100 / 1000.
SEED_SCALES = {"contrastive": 100.0, "spherical": 1000.0}
# Extrapolation target of every row: 100 samples x 1000 steps.
TARGET_SAMPLES = 100
TARGET_STEPS = 1000
# Dense bf16 tensor-core peaks (vendor data sheets, SXM parts), for the FLOP-floor fraction only.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12,
                   "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


# ----------------------------------------------------------------------------- models
def cifar10_unet_config() -> dict[str, Any]:
    """google/ddpm-cifar10-32's UNet2DModel config (kwargs) and its scheduler config."""
    data = json.loads(CIFAR10_UNET_CONFIG.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def build_random_cifar10(device: torch.device, seed: int = 0) -> LoadedPack:
    """The real cifar10 architectures with random weights: the 35.7M-parameter DDPM UNet and
    open_clip ViT-B-32 (no pretrained weights, nothing downloaded)."""
    import open_clip
    from diffusers import DDPMScheduler, UNet2DModel

    cfg = cifar10_unet_config()
    sched_cfg = cfg.pop("scheduler")
    torch.manual_seed(seed)
    unet = UNet2DModel(**cfg).eval().requires_grad_(False).to(device)
    scheduler = DDPMScheduler(**sched_cfg)
    with _quiet_logging():
        clip = open_clip.create_model("ViT-B-32", pretrained=None, device=device)
    clip.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    spec = replace(get_pack_spec("cifar10"), description="cifar10 architectures, random weights")
    return LoadedPack(spec=spec, device=device, unet=unet, scheduler=scheduler, clip=clip,
                      tokenizer=tokenizer, clip_name="ViT-B-32 (random weights)")


def load_bench_pack(model: str, random_weights: bool, device: torch.device) -> LoadedPack:
    if random_weights:
        if get_pack_spec(model).name != "cifar10":
            raise UserError("--random-weights builds the cifar10 architectures only: use --model cifar10")
        return build_random_cifar10(device)
    from clipterm.models import load_pack

    return load_pack(model, device=device, cache=False)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# ----------------------------------------------------------------------------- FLOPs
def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 per multiply-add) of running ``fn`` once, forward and any backward inside it."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # Only the global total is wanted: replace the per-module tracker, whose backward hooks
    # do not support torch.autograd.grad with a leaf input (the guided step's x_t).
    counter.mod_tracker = _GlobalOnly()
    # nn.MultiheadAttention's inference fast path (open_clip's towers without grad) is one
    # fused op the counter has no formula for: count the ordinary path's matmuls instead.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]), counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


class _GlobalOnly:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP goes to "Global"."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def model_flops(pack: LoadedPack) -> dict[str, int]:
    """Forward FLOPs of the networks: UNet per image, CLIP image tower per image at CLIP's
    resolution, CLIP text tower per caption."""
    dev = pack.device
    x = torch.zeros(1, pack.channels, pack.image_size, pack.image_size, device=dev)
    t = torch.full((1,), 500, device=dev, dtype=torch.long)
    img = torch.zeros(1, 3, pack.clip_image_size, pack.clip_image_size, device=dev)
    tokens = pack.tokenizer(["a photo"]).to(dev)
    with torch.no_grad():
        return {
            "unet_forward_per_image": count_flops(lambda: pack.unet(x, t)),
            "clip_image_per_image": count_flops(lambda: pack.clip.encode_image(img)),
            "clip_text_per_caption": count_flops(lambda: pack.clip.encode_text(tokens)),
        }


# ----------------------------------------------------------------------------- timing helpers
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _timed(device: torch.device, fn: Callable[[], Any]) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def spread(values: Sequence[float]) -> dict[str, Any]:
    """min / median / max of repeated timings (and the runs themselves)."""
    v = sorted(float(x) for x in values)
    return {"s_per_step": statistics.median(v), "s_per_step_min": v[0], "s_per_step_max": v[-1],
            "s_per_step_runs": [float(x) for x in values]}


def compare_rows(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Ratio of medians ours / base, the range the runs allow (ours' min over base's max to
    ours' max over base's min), and whether the ratio means anything: it does when that range
    stays on one side of 1 (None with a single run on either side, which shows no spread)."""
    ratio = ours["s_per_step"] / base["s_per_step"]
    lo = ours["s_per_step_min"] / base["s_per_step_max"]
    hi = ours["s_per_step_max"] / base["s_per_step_min"]
    runs = min(len(ours["s_per_step_runs"]), len(base["s_per_step_runs"]))
    meaningful = None if runs < 2 else bool(hi < 1 or lo > 1)
    return {"ratio": ratio, "ratio_range": [lo, hi], "meaningful": meaningful}


def _difference(t_long: float, t_short: float, n: int, t_total_steps: int) -> float:
    """Per-step time from two runs; if noise made the difference useless, the plain average."""
    d = (t_long - t_short) / n
    return d if d > 0 else t_long / t_total_steps


# ----------------------------------------------------------------------------- ours
def bench_config(pack: LoadedPack, method: str, batch: int, clip_input: str,
                 guide_every: int | None = None, guide_from: int | None = None) -> RunConfig:
    guided = method in GUIDED
    return resolve(pack.spec, method=method, n=batch, batch=batch, steps=1, seed=0,
                   sampler="ddpm" if method != "optimize" else None,
                   clip_input=clip_input if guided else None, scale=1.0 if guided else None,
                   guide_every=guide_every if guided else None,
                   guide_from=guide_from if guided else None,
                   opt_iters=1 if method == "optimize" else None,
                   lr=0.05 if method == "optimize" else None)


def quiet_reporter() -> Reporter:
    """Nobody listens, and the trace grid is one point per chain: reporting costs ~nothing."""
    return Reporter(None, trace_points=1)


def time_method(pack: LoadedPack, method: str, runtime: Runtime, batch: int, warmup: int,
                timed: int, clip_input: str = "x0", repeats: int = 1,
                guide_every: int | None = None, guide_from: int | None = None) -> dict[str, Any]:
    """Seconds per step of ``method`` through ``sample()`` (see the module docstring), from
    ``repeats`` timed pairs of runs after one warm-up run."""
    dev = pack.device
    base = bench_config(pack, method, batch, clip_input, guide_every, guide_from)
    if method == "optimize":
        def run(n: int) -> None:
            sample(pack, replace(base, steps=timed, opt_iters=n), runtime=runtime,
                   reporter=quiet_reporter())
        short, long_, per = 1, 2, timed
    else:
        def run(n: int) -> None:
            sample(pack, replace(base, steps=n), runtime=runtime, reporter=quiet_reporter())
        short, long_, per = warmup, warmup + timed, timed
    t0 = time.perf_counter()
    run(short)  # warm-up: allocator, cuDNN autotune, compilation
    synchronize(dev)
    warmup_s = time.perf_counter() - t0
    reset_peak(dev)
    per_step, runs_s = [], []
    for _ in range(repeats):
        t_short = _timed(dev, lambda: run(short))
        t_long = _timed(dev, lambda: run(long_))
        per_step.append(_difference(t_long, t_short, per,
                                    long_ * (per if method == "optimize" else 1)))
        runs_s.append([t_short, t_long])
    return {**spread(per_step), "warmup_s": warmup_s, "peak_mem_bytes": peak_bytes(dev),
            "runs_s": runs_s}


def guided_share(pack: LoadedPack, cfg: RunConfig, short: int, long_: int) -> float:
    """The share of the steps a chain of ``long_`` steps adds to one of ``short`` steps that
    are guided (``Guide.active_at``'s rule: t < guide_from and k % guide_every == 0)."""
    def guided(n: int) -> int:
        ts = make_schedule(pack.scheduler, cfg.sampler, n, torch.device("cpu")).timesteps
        return sum(1 for k, t in enumerate(ts)
                   if int(t) < cfg.guide_from and k % cfg.guide_every == 0)
    return (guided(long_) - guided(short)) / (long_ - short)


def time_guidance_options(pack: LoadedPack, method: str, runtime: Runtime, opts: BenchOptions,
                          every_step: dict[str, Any]) -> list[dict[str, Any]]:
    """``method`` guided every K-th step and from timestep T, per step relative to guiding
    every step (``every_step``, the method's own row). The warm-up and the timed chain are
    whole numbers of K-step cycles, so the timed steps hold the share 1/K of guided steps."""
    rows = []
    for every, from_ in [(k, None) for k in opts.guide_every] + [(None, t) for t in opts.guide_from]:
        k = every or 1
        warm, timed = k * math.ceil(opts.warmup / k), k * math.ceil(opts.steps_timed / k)
        timing = time_method(pack, method, runtime, opts.batch, warm, timed, opts.clip_input,
                             opts.repeats, guide_every=every, guide_from=from_)
        cfg = bench_config(pack, method, opts.batch, opts.clip_input, every, from_)
        row = {"method": method, "guide_every": cfg.guide_every, "guide_from": cfg.guide_from,
               "warmup": warm, "steps_timed": timed,
               "guided_share": guided_share(pack, cfg, warm, warm + timed), **timing}
        cmp = compare_rows(row, every_step)
        row.update(relative_to_every_step=cmp["ratio"], relative_range=cmp["ratio_range"],
                   relative_meaningful=cmp["meaningful"])
        rows.append(row)
    return rows


def flops_of_method(pack: LoadedPack, method: str, batch: int, timed: int,
                    clip_input: str = "x0") -> int:
    """Counted FLOPs of one step of ``method`` (difference of two runs, like the timing)."""
    base = bench_config(pack, method, batch, clip_input)
    pack.encode_text(base.captions)  # cached from here on, so neither run counts it
    if method == "optimize":
        steps = min(timed, 2)
        a = count_flops(lambda: sample(pack, replace(base, steps=steps, opt_iters=1), runtime=REFERENCE_RUNTIME,
                                        reporter=quiet_reporter()))
        b = count_flops(lambda: sample(pack, replace(base, steps=steps, opt_iters=2), runtime=REFERENCE_RUNTIME,
                                        reporter=quiet_reporter()))
        return (b - a) // steps
    a = count_flops(lambda: sample(pack, replace(base, steps=1), runtime=REFERENCE_RUNTIME,
                                        reporter=quiet_reporter()))
    b = count_flops(lambda: sample(pack, replace(base, steps=2), runtime=REFERENCE_RUNTIME,
                                        reporter=quiet_reporter()))
    return b - a


# ----------------------------------------------------------------------------- baselines
class SeedFaithfulStep:
    """The seed code's guided DDPM step, re-implemented for timing (not for use).

    fp32 UNet; fp16 CLIP on CUDA (fp32 on the CPU, where fp16 kernels are slow emulations);
    CLIP sees x_t in [-1, 1] resized bicubic to CLIP's size and CLIP-normalised; captions are
    tokenised and encoded at every step; contrastive = log softmax at the target; spherical =
    minus the spherical distance, with a second image encoding for the logged similarity;
    update mean = (x - beta/sqrt(1-abar) eps + gamma beta grad) / sqrt(alpha), plus sqrt(beta) z.
    """

    def __init__(self, pack: LoadedPack, method: str, captions: Sequence[str]):
        self.pack = pack
        self.method = method
        self.captions = list(captions)
        dev = pack.device
        self.clip_dtype = torch.float16 if dev.type == "cuda" else torch.float32
        self.clip = copy.deepcopy(pack.clip).to(self.clip_dtype) if dev.type == "cuda" else pack.clip
        self.scale = SEED_SCALES[method]
        betas = pack.scheduler.betas.to(dev, torch.float32)
        self.betas = betas
        self.abar = torch.cumprod(1 - betas, 0)
        self.mean, self.std = pack.clip_mean_std
        self.size = pack.clip_image_size

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)
        x = (x - self.mean) / self.std
        return F.normalize(self.clip.encode_image(x.to(self.clip_dtype)).float(), dim=-1)

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        pack = self.pack
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        with torch.no_grad():
            eps = pack.unet(x, tt).sample
        tokens = pack.tokenizer(self.captions).to(x.device)
        text = F.normalize(self.clip.encode_text(tokens).float(), dim=-1)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            emb = self.encode_image(x_in)
            if self.method == "contrastive":
                obj = guidance.contrastive_log_prob(emb, text, pack.logit_scale)
            else:
                obj = guidance.spherical_objective(emb, text[0])
                with torch.no_grad():
                    _logged = self.encode_image(x_in) @ text[0]  # noqa: F841 - the seed's second pass
            (grad,) = torch.autograd.grad(obj.sum(), x_in)
        beta, abar = self.betas[t], self.abar[t]
        with torch.no_grad():
            mean = (x - beta / (1 - abar).sqrt() * eps + self.scale * beta * grad) / (1 - beta).sqrt()
            if t > 0:
                mean = mean + beta.sqrt() * torch.randn_like(x)
        return mean


class PlainFp32Step:
    """diffusers' DDPMPipeline loop body: fp32 ``unet(x, t).sample`` then ``scheduler.step``."""

    def __init__(self, pack: LoadedPack):
        from diffusers import DDPMScheduler

        self.pack = pack
        self.scheduler = DDPMScheduler.from_config(pack.scheduler.config)
        self.scheduler.set_timesteps(pack.train_steps)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        eps = self.pack.unet(x, t).sample
        return self.scheduler.step(eps, t, x).prev_sample


def time_loop(step: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor,
              warmup: int, timed: int, repeats: int = 1) -> dict[str, Any]:
    """Seconds per step of a baseline loop: ``repeats`` timed stretches after one warm-up."""
    dev = x.device
    ts = list(range(999, 999 - warmup - timed, -1))
    t0 = time.perf_counter()
    x0 = x
    for t in ts[:warmup]:
        x = step(x, t)
    synchronize(dev)
    warmup_s = time.perf_counter() - t0
    reset_peak(dev)
    per_step = []
    for _ in range(repeats):
        x = x0
        t0 = time.perf_counter()
        for t in ts[warmup:]:
            x = step(x, t)
        synchronize(dev)
        per_step.append((time.perf_counter() - t0) / timed)
    return {**spread(per_step), "warmup_s": warmup_s, "peak_mem_bytes": peak_bytes(dev)}


# ----------------------------------------------------------------------------- optimize memory
def optimize_memory(pack: LoadedPack, batch: int, steps: int, use_checkpoint: bool,
                    runtime: Runtime = REFERENCE_RUNTIME) -> dict[str, Any]:
    """Peak memory of one x_T-optimisation iteration (DDIM chain forward + backward).

    CUDA: ``torch.cuda.max_memory_allocated`` (absolute, weights included) and its rise over
    the memory held before the iteration. CPU: the peak of the bytes torch allocated during the
    iteration (the profiler's allocation events summed in time order), so weights and anything
    alive before are excluded: the memory the iteration itself needs.
    """
    dev = pack.device
    cfg = replace(bench_config(pack, "optimize", batch, "x0"), steps=steps, n=batch, batch=batch)
    scorer = CaptionScorer(pack, cfg.captions, runtime)
    schedule = make_schedule(pack.scheduler, "ddim", steps, dev)
    x_T = initial_noise(0, list(range(batch)), (pack.channels, pack.image_size, pack.image_size), dev)
    param = x_T.clone().requires_grad_(True)
    row: dict[str, Any] = {"steps": steps, "batch": batch, "checkpoint": use_checkpoint,
                           "precision": runtime.precision}

    def one() -> None:
        optimize_iteration(pack, scorer, param, schedule, use_checkpoint)

    try:
        if dev.type == "cuda":
            synchronize(dev)
            torch.cuda.empty_cache()
            start = torch.cuda.memory_allocated(dev)
            reset_peak(dev)
            t0 = time.perf_counter()
            one()
            synchronize(dev)
            peak = torch.cuda.max_memory_allocated(dev)
            row.update(measure="torch.cuda.max_memory_allocated", peak_bytes=int(peak),
                       peak_above_start_bytes=int(peak - start), seconds=time.perf_counter() - t0)
        else:
            t0 = time.perf_counter()
            rise = _cpu_peak_alloc(one)
            row.update(measure="cpu: peak bytes allocated during the iteration (profiler)",
                       peak_bytes=None, peak_above_start_bytes=rise,
                       seconds=time.perf_counter() - t0)
        row["oom"] = False
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        row.update(oom=True, measure="torch.cuda.max_memory_allocated", peak_bytes=None,
                   peak_above_start_bytes=None)
    finally:
        param.grad = None
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return row


def _cpu_peak_alloc(fn: Callable[[], Any]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return int(peak)


# ----------------------------------------------------------------------------- agreement
def precision_agreement(pack: LoadedPack, method: str, n: int, steps: int, fast: Runtime,
                        seed: int = 236) -> dict[str, Any]:
    """Final images of the fp32 reference and of ``fast`` for the same seed: uint8 differences."""
    cfg = replace(bench_config(pack, method, n, "x0"), steps=steps, seed=seed,
                  opt_iters=2 if method == "optimize" else None)
    ref = sample(pack, cfg, runtime=REFERENCE_RUNTIME)
    got = sample(pack, cfg, runtime=fast)
    diff = (ref.images.astype("int16") - got.images.astype("int16"))
    absd = abs(diff)
    return {
        "method": method, "n": n, "steps": steps, "seed": seed, "fast": fast.describe(),
        "max_abs_uint8": int(absd.max()), "mean_abs_uint8": float(absd.mean()),
        "frac_pixels_over_8": float((absd > 8).mean()),
        "max_abs_target_prob": float(abs(ref.target_probs - got.target_probs).max()),
    }


# ----------------------------------------------------------------------------- the bench
@dataclass(frozen=True)
class BenchOptions:
    model: str = "cifar10"
    random_weights: bool = False
    methods: tuple[str, ...] = METHODS
    batch: int = 100
    steps_timed: int = 30
    warmup: int = 3
    device: str = "auto"
    compile: bool | None = None  # None: the device's default runtime
    precision: str | None = None
    channels_last: bool | None = None
    compile_mode: str = "reduce-overhead"
    clip_input: str = "x0"
    baselines: bool = True
    count_flops: bool = True
    optimize_memory_steps: tuple[int, ...] = ()
    optimize_memory_batch: int = 8
    optimize_memory_no_checkpoint_max: int = 100  # chains longer than this only with checkpointing
    agreement_steps: int = 0  # > 0: compare fp32 and the fast runtime's final images
    agreement_n: int = 16
    repeats: int = 3  # each timing, for min / median / max
    guide_every: tuple[int, ...] = ()  # rows: guided methods every K-th step only
    guide_from: tuple[int, ...] = ()  # rows: guided methods at timesteps below T only

    def validate(self) -> BenchOptions:
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise UserError(f"unknown method(s) {', '.join(bad)}: choose from {', '.join(METHODS)}")
        if not self.methods and not self.optimize_memory_steps and not self.agreement_steps:
            raise UserError("nothing to do: give --methods, --optimize-memory or --agreement-steps")
        for name in ("batch", "steps_timed", "warmup", "optimize_memory_batch", "agreement_n",
                     "repeats"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if self.agreement_steps < 0:
            raise UserError("--agreement-steps must be >= 0")
        if self.random_weights and get_pack_spec(self.model).name != "cifar10":
            raise UserError("--random-weights builds the cifar10 architectures only: use "
                            "--model cifar10")
        if self.precision is not None and self.precision not in ("fp32", "bf16"):
            raise UserError("--precision must be fp32 or bf16")
        if self.clip_input not in ("x0", "xt"):
            raise UserError("--clip-input must be x0 or xt")
        if (self.guide_every or self.guide_from) and not set(self.methods) & set(GUIDED):
            raise UserError("--guide-every and --guide-from time the guided methods: add "
                            "contrastive or spherical to --methods")
        train_steps = get_pack_spec(self.model).train_steps
        for flag, values, top in (("--guide-every", self.guide_every, train_steps),
                                  ("--guide-from", self.guide_from, train_steps)):
            bad = [v for v in values if not 1 <= v <= top]
            if bad:
                raise UserError(f"{flag} takes whole numbers in 1..{top} (got {bad[0]})")
        return self

    def runtime(self, device: torch.device) -> Runtime:
        rt = Runtime.for_device(device)
        changes: dict[str, Any] = {"compile_mode": self.compile_mode}
        if self.compile is not None:
            changes["compile"] = self.compile
        if self.precision is not None:
            changes["precision"] = self.precision
        if self.channels_last is not None:
            changes["channels_last"] = self.channels_last
        return replace(rt, **changes)


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__,
                            "python": platform.python_version()}
    if device.type == "cuda":
        info.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    else:
        info.update(device_name=platform.processor() or platform.machine(),
                    cpu_threads=torch.get_num_threads())
    return info


def peak_flops_for(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value
    return None


def _row(timing: dict[str, Any], flops: int | None, batch: int, peak: float | None) -> dict[str, Any]:
    s = timing["s_per_step"]
    n_batches = math.ceil(TARGET_SAMPLES / batch)
    extrapolated = s * TARGET_STEPS * n_batches
    row = dict(timing)
    row.update(
        extrapolated_s=extrapolated,
        samples_per_s=TARGET_SAMPLES / extrapolated,
        flops_per_step=flops,
        tflops=(flops / s / 1e12) if flops else None,
    )
    if flops and peak:
        floor = flops * TARGET_STEPS * n_batches / peak
        row.update(floor_s=floor, floor_fraction=floor / extrapolated)
    return row


def run_bench(opts: BenchOptions, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-able report (see docs/PERFORMANCE.md for the fields)."""
    opts = opts.validate()
    say = log or (lambda _msg: None)
    dev = resolve_device(opts.device)
    runtime = opts.runtime(dev)
    say(f"loading {opts.model}{' (random weights)' if opts.random_weights else ''} on {dev}")
    pack = load_bench_pack(opts.model, opts.random_weights, dev)
    peak = peak_flops_for(dev)
    report: dict[str, Any] = {
        "clipterm": "bench",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        **device_info(dev),
        "model": opts.model + (" (random weights)" if opts.random_weights else ""),
        "params": {"unet": n_params(pack.unet), "clip": n_params(pack.clip)},
        "image_size": pack.image_size, "clip_image_size": pack.clip_image_size,
        "batch": opts.batch, "warmup": opts.warmup, "steps_timed": opts.steps_timed,
        "repeats": opts.repeats,
        "runtime": runtime.describe(), "clip_input": opts.clip_input,
        "extrapolated_to": f"{TARGET_SAMPLES} samples x {TARGET_STEPS} steps",
        "peak_bf16_flops": peak,
    }
    if opts.count_flops:
        say("counting FLOPs")
        report["flops"] = model_flops(pack)
    x = torch.randn(opts.batch, pack.channels, pack.image_size, pack.image_size, device=dev)
    baselines: dict[str, Any] = {}
    if opts.baselines and opts.methods:
        say("baseline: plain fp32 loop")
        plain = PlainFp32Step(pack)
        flops = count_flops(lambda: plain(x, 999)) if opts.count_flops else None
        baselines["plain_fp32_uncond"] = _row(
            time_loop(plain, x, opts.warmup, opts.steps_timed, opts.repeats), flops, opts.batch,
            peak)
        captions = (pack.spec.default_prompt, *pack.spec.distractors_for(pack.spec.default_prompt))
        for method in GUIDED:
            if method not in opts.methods:
                continue
            say(f"baseline: seed-faithful {method} step")
            step = SeedFaithfulStep(pack, method, captions)
            flops = count_flops(lambda s=step: s(x, 999)) if opts.count_flops else None
            row = _row(time_loop(step, x, opts.warmup, opts.steps_timed, opts.repeats), flops,
                       opts.batch, peak)
            row["clip_dtype"] = str(step.clip_dtype).replace("torch.", "")
            baselines[f"seed_faithful_{method}"] = row
            del step
    report["baselines"] = baselines
    methods: dict[str, Any] = {}
    for method in opts.methods:
        say(f"ours: {method} ({runtime.describe()})")
        timing = time_method(pack, method, runtime, opts.batch, opts.warmup, opts.steps_timed,
                             opts.clip_input, opts.repeats)
        flops = (flops_of_method(pack, method, opts.batch, opts.steps_timed, opts.clip_input)
                 if opts.count_flops else None)
        row = _row(timing, flops, opts.batch, peak)
        seed_key = f"seed_faithful_{method if method in GUIDED else 'contrastive'}"
        for name, key in (("seed_faithful", seed_key), ("plain_fp32", "plain_fp32_uncond")):
            base = baselines.get(key)
            if base is None or method == "optimize":
                continue
            cmp = compare_rows(row, base)
            row[f"ratio_to_{name}"] = cmp["ratio"]
            row[f"ratio_to_{name}_range"] = cmp["ratio_range"]
            row[f"ratio_to_{name}_meaningful"] = cmp["meaningful"]
            row[f"speedup_vs_{name}"] = 1 / cmp["ratio"]
            row[f"{name}_baseline"] = key
        methods[method] = row
    report["methods"] = methods
    if opts.guide_every or opts.guide_from:
        rows = []
        for method in (m for m in opts.methods if m in GUIDED):
            say(f"ours: {method} guided every K-th step / from T")
            rows += time_guidance_options(pack, method, runtime, opts, methods[method])
        report["guidance_options"] = rows
    if opts.optimize_memory_steps:
        rows = []
        for steps in opts.optimize_memory_steps:
            for ckpt in (True, False):
                if not ckpt and steps > opts.optimize_memory_no_checkpoint_max:
                    continue
                say(f"optimize memory: {steps} steps, batch {opts.optimize_memory_batch}, "
                    f"checkpoint {ckpt}")
                rows.append(optimize_memory(pack, opts.optimize_memory_batch, steps, ckpt, runtime))
        report["optimize_memory"] = rows
    if opts.agreement_steps:
        fast = replace(runtime, precision="bf16")
        rows = []
        for method in ("uncond", "contrastive", "spherical"):
            say(f"agreement fp32 vs {fast.describe()}: {method}")
            rows.append(precision_agreement(pack, method, opts.agreement_n, opts.agreement_steps, fast))
        report["agreement"] = rows
    return report


# ----------------------------------------------------------------------------- the report file
def check_report_path(path: str | Path) -> Path:
    """Check, before the benchmark runs, that its JSON report can be written at ``path``: a new
    file (nothing is ever replaced) in a folder that exists and is writable."""
    import tempfile

    target = Path(path).expanduser()
    shown = printable(target)
    if target.is_dir():
        raise UserError(f"--out {shown} is a folder: give a file name, e.g. {shown}/bench.json")
    if target.exists() or target.is_symlink():
        raise UserError(f"--out {shown} exists: clipterm never replaces a file, choose a new name")
    if not target.parent.is_dir():
        raise UserError(f"--out {shown}: the folder {printable(target.parent)} does not exist")
    try:
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as exc:
        raise UserError(f"--out {shown}: cannot write in {printable(target.parent)} "
                        f"({exc.strerror or exc})") from None
    return target


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write the report as strict JSON to the new file ``path`` (atomically, never replacing)."""
    from clipterm.output import atomic_write_bytes, json_text

    try:
        atomic_write_bytes(path, json_text(report).encode(), replace=False)
    except FileExistsError:
        raise UserError(f"--out {printable(path)} appeared while the benchmark ran: not "
                        "replaced") from None
    except OSError as exc:
        raise UserError(f"could not write --out {printable(path)}: {exc.strerror or exc}"
                        ) from None


# ----------------------------------------------------------------------------- text
def _fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


def _fmt_bytes(v: int | None) -> str:
    return "-" if v is None else f"{v / 2**20:.0f} MiB"


def _fmt_spread(r: dict[str, Any]) -> str:
    """``12.3 ms (11.9-15.0)``: the median and the min-max of the runs."""
    med = _fmt_s(r["s_per_step"])
    if "s_per_step_min" not in r or len(r.get("s_per_step_runs", ())) < 2:
        return med
    lo, hi = r["s_per_step_min"], r["s_per_step_max"]
    if hi < 1:
        return f"{med} ({lo * 1e3:.1f}-{hi * 1e3:.1f})"
    return f"{med} ({lo:.2f}-{hi:.2f})"


def _fmt_ratio(r: dict[str, Any], name: str) -> str:
    """``0.52x``, or ``1.10x?`` when the spreads make the ratio meaningless."""
    if f"ratio_to_{name}" not in r:
        return ""
    mark = "?" if r.get(f"ratio_to_{name}_meaningful") is False else ""
    return f"{r[f'ratio_to_{name}']:.2f}x{mark}"


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of a bench report."""
    lines = [
        f"clipterm bench: {report['model']} on {report.get('device_name', report['device'])} "
        f"(torch {report['torch']}), batch {report['batch']}, {report['steps_timed']} timed steps, "
        f"runtime {report['runtime']}, each timing {report.get('repeats', 1)}x "
        "(median (min-max))",
    ]
    if "flops" in report:
        f = report["flops"]
        lines.append(
            f"FLOPs: UNet forward {f['unet_forward_per_image'] / 1e9:.2f} G/image, CLIP image "
            f"{f['clip_image_per_image'] / 1e9:.2f} G/image at {report['clip_image_size']}px, "
            f"CLIP text {f['clip_text_per_caption'] / 1e9:.2f} G/caption"
        )
    head = (f"{'loop':<28} {'s/step':>24} {report['extrapolated_to']:>26} {'samples/s':>10} "
            f"{'TFLOP/s':>8} {'peak mem':>9} {'vs seed':>8} {'vs fp32':>8}")
    lines += ["", head, "-" * len(head)]
    rows = [(f"ours: {m}", r) for m, r in report.get("methods", {}).items()]
    rows += [(name, r) for name, r in report.get("baselines", {}).items()]
    for name, r in rows:
        tf = "-" if r.get("tflops") is None else f"{r['tflops']:.2f}"
        vs_seed, vs_plain = _fmt_ratio(r, "seed_faithful"), _fmt_ratio(r, "plain_fp32")
        lines.append(
            f"{name:<28} {_fmt_spread(r):>24} {_fmt_s(r['extrapolated_s']):>26} "
            f"{r['samples_per_s']:>10.3g} {tf:>8} {_fmt_bytes(r.get('peak_mem_bytes')):>9} "
            f"{vs_seed:>8} {vs_plain:>8}"
        )
    lines.append("(ratios: our median time / the baseline's; below 1 is faster)")
    if any(r.get(f"ratio_to_{n}_meaningful") is False for _, r in rows
           for n in ("seed_faithful", "plain_fp32")):
        lines.append("(?: the two sides' min-max ranges overlap, so the runs put the ratio on "
                     "both sides of 1: too noisy to compare; repeat on a quieter machine or "
                     "with more --repeats)")
    if report.get("guidance_options"):
        lines += ["", "guidance every K-th step / from timestep T (ours), relative to guiding "
                  "every step:",
                  f"  {'method':<12} {'every':>5} {'from':>5} {'guided':>7} {'s/step':>24} "
                  f"{'relative':>9}"]
        for r in report["guidance_options"]:
            mark = "?" if r.get("relative_meaningful") is False else ""
            lines.append(
                f"  {r['method']:<12} {r['guide_every']:>5} {r['guide_from']:>5} "
                f"{100 * r['guided_share']:>6.0f}% {_fmt_spread(r):>24} "
                f"{r['relative_to_every_step']:>8.2f}x{mark}")
    if report.get("optimize_memory"):
        lines += ["", "optimize memory (one Adam iteration, forward + backward):"]
        for r in report["optimize_memory"]:
            val = "OOM" if r.get("oom") else (
                f"peak {_fmt_bytes(r['peak_bytes'])}, rise {_fmt_bytes(r['peak_above_start_bytes'])}")
            lines.append(f"  {r['steps']:>5} steps  batch {r['batch']}  checkpoint "
                         f"{'on ' if r['checkpoint'] else 'off'}  {val}  [{r['measure']}]")
    for r in report.get("agreement", []):
        lines.append(
            f"agreement fp32 vs {r['fast']} ({r['method']}, {r['steps']} steps, seed {r['seed']}): "
            f"max |d| {r['max_abs_uint8']}/255, mean {r['mean_abs_uint8']:.3f}, "
            f"pixels > 8: {100 * r['frac_pixels_over_8']:.2f}%"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- python -m
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clipterm.bench``: the bench without the CLI's dependencies (typer, rich),
    for GPU boxes that get only the wheels the core needs (scripts/gpu_bench.sh)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m clipterm.bench", description=main.__doc__)
    p.add_argument("--model", default="cifar10")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps-timed", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", dest="compile", action="store_true", default=None)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--compile-mode", default="reduce-overhead")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--clip-input", default="x0")
    p.add_argument("--no-baselines", dest="baselines", action="store_false")
    p.add_argument("--no-flops", dest="flops", action="store_false")
    p.add_argument("--optimize-memory", default="")
    p.add_argument("--optimize-memory-batch", type=int, default=8)
    p.add_argument("--agreement-steps", type=int, default=0)
    p.add_argument("--agreement-n", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--guide-every", default="")
    p.add_argument("--guide-from", default="")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    a = p.parse_args(argv)
    try:
        out = check_report_path(a.out) if a.out else None
    except UserError as exc:
        print(f"clipterm bench: error: {exc}", file=sys.stderr)
        return 2
    opts = BenchOptions(
        model=a.model, random_weights=a.random_weights,
        methods=tuple(m.strip() for m in a.methods.split(",") if m.strip()), batch=a.batch,
        steps_timed=a.steps_timed, warmup=a.warmup, device=a.device, compile=a.compile,
        compile_mode=a.compile_mode, precision=a.precision, channels_last=a.channels_last,
        clip_input=a.clip_input, baselines=a.baselines, count_flops=a.flops,
        optimize_memory_steps=tuple(int(s) for s in a.optimize_memory.split(",") if s.strip()),
        optimize_memory_batch=a.optimize_memory_batch, agreement_steps=a.agreement_steps,
        agreement_n=a.agreement_n, repeats=a.repeats,
        guide_every=tuple(int(s) for s in a.guide_every.split(",") if s.strip()),
        guide_from=tuple(int(s) for s in a.guide_from.split(",") if s.strip()),
    )
    try:
        report = run_bench(opts, log=lambda m: print(f"clipterm bench: {m}", file=sys.stderr, flush=True))
        if out is not None:
            write_report(out, report)
    except UserError as exc:
        print(f"clipterm bench: error: {exc}", file=sys.stderr)
        return 2
    from clipterm.output import json_text

    print(json_text(report).rstrip("\n") if a.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
