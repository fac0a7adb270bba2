"""``clipterm generate``: one run into a new run folder."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from clipterm.commands.common import (
    METHOD_HELP,
    MODEL_HELP,
    Progress,
    default_model,
    finish_stopped,
    given,
    load,
    run_to_folder,
    show_inline,
)
from clipterm.errors import ConfigError
from clipterm.sanitize import printable, quoted


def generate(
    prompt: list[str] = typer.Option(None, "--prompt", "-p", help="Target caption (default: the pack's). Repeat, or write 'a:1|b:-0.5', for weighted prompts."),
    distractor: list[str] = typer.Option(None, "--distractor", "-d", help="Distractor caption; repeat. Default: the pack's other captions."),
    method: str = typer.Option(None, "--method", help=METHOD_HELP + " (default contrastive)"),
    n: int = typer.Option(None, "-n", "--n", help="Number of samples (default 16)."),
    batch: int = typer.Option(None, "--batch", help="Samples per batch (default: min(n, pack's))."),
    steps: int = typer.Option(None, "--steps", help="Sampling steps (respaced; default: the pack's)."),
    sampler: str = typer.Option(None, "--sampler", help="ddpm | ddim"),
    eta: float = typer.Option(None, "--eta", help="DDIM eta (0 = deterministic)."),
    scale: float = typer.Option(None, "--scale", help="Guidance scale gamma (default: the pack's)."),
    seed: int = typer.Option(None, "--seed", help="Seed: sample i depends only on (seed, i). Default 0."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    clip: str = typer.Option(None, "--clip", help="CLIP override: MODEL:PRETRAINED or CONFIG.json:WEIGHTS."),
    clip_input: str = typer.Option(None, "--clip-input", help="x0 (predicted clean image) | xt (noisy sample)."),
    guide_from: int = typer.Option(None, "--guide-from", help="Guide only at timesteps below T."),
    guide_every: int = typer.Option(None, "--guide-every", help="Guide every K-th step only (1 = every step)."),
    grad_norm: str = typer.Option(None, "--grad-norm", help="rms (scale-free push) | none (raw gradient)."),
    image_prompt: str = typer.Option(None, "--image-prompt", help="An image whose CLIP embedding is one more target."),
    image_weight: float = typer.Option(None, "--image-weight", help="Weight of --image-prompt (default 1)."),
    iters: int = typer.Option(None, "--iters", help="optimize: Adam iterations."),
    lr: float = typer.Option(None, "--lr", help="optimize: learning rate."),
    init_image: str = typer.Option(None, "--init-image", help="Start from this image: noised to --strength (optimize: DDIM-inverted)."),
    strength: float = typer.Option(None, "--strength", help="With --init-image: how much of the chain to re-run, 0..1 (default 0.6)."),
    start_at: int = typer.Option(None, "--start-at", help="With --init-image: the timestep to start from (instead of --strength)."),
    cutouts: int = typer.Option(None, "--cutouts", help="Guided: CLIP also sees N random crops of each sample (0 = one resize; default: the pack's)."),
    cut_pow: float = typer.Option(None, "--cut-pow", help="Guided: cutout size exponent (larger = smaller crops; default 1)."),
    augment: bool = typer.Option(None, "--augment/--no-augment", help="Guided: flip and slightly turn and shift each cutout."),
    grad_checkpointing: bool = typer.Option(None, "--grad-checkpointing/--no-grad-checkpointing", help="Guided: recompute the UNet's activations in the backward pass (less memory; default: the pack's)."),
    preset: str = typer.Option(None, "--preset", help="poster: the seed code's exact settings."),
    from_run: Path = typer.Option(None, "--from", help="Re-run the settings of a run folder or a sample PNG (options given here override them)."),
    animate: str = typer.Option(None, "--animate", help="Also save the denoising as an animation: gif | apng | mp4."),
    animate_samples: bool = typer.Option(False, "--animate-samples", help="With --animate: one animation per sample too."),
    no_metadata: bool = typer.Option(False, "--no-metadata", help="Write PNGs without the settings text chunks."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Folder for run folders."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    as_json: bool = typer.Option(False, "--json", help="Print run.json to stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Generate samples and write a run folder (PNGs, grid.png, run.json)."""
    from clipterm.animation import check_format
    from clipterm.config import resolve
    from clipterm.distributed import DistContext, sharded_run
    from clipterm.output import check_out_dir
    from clipterm.packs import get_pack_spec
    from clipterm.sampling import batches

    if animate is not None:
        check_format(animate)
    elif animate_samples:
        raise ConfigError("--animate-samples goes with --animate gif|apng|mp4")
    options = given(n=n, batch=batch, steps=steps, sampler=sampler, eta=eta, scale=scale,
                    seed=seed, clip_input=clip_input, guide_from=guide_from,
                    guide_every=guide_every, grad_norm=grad_norm, opt_iters=iters, lr=lr,
                    init_image=init_image, strength=strength, image_prompt=image_prompt,
                    image_weight=image_weight, cutouts=cutouts, cut_pow=cut_pow,
                    augment=augment, grad_checkpointing=grad_checkpointing)
    args: dict[str, Any] = {}
    index = None
    if from_run is not None:
        from clipterm.rerun import read_recorded

        recorded = read_recorded(from_run)
        model = model or recorded.pack
        args, index = recorded.resolve_args(), recorded.index
        if prompt:
            args.pop("targets")
        if distractor:
            args.pop("distractors")
        if method and method != args["method"]:  # another method: its own defaults
            args = {k: v for k, v in args.items() if k in ("targets", "distractors", "n",
                                                          "batch", "seed")}
        if index is not None and (n is not None or batch is not None):
            index = None  # a new n or batch: the whole run again, not one sample
    model = default_model(model)
    spec = get_pack_spec(model)
    if start_at is not None:
        if strength is not None:
            raise ConfigError("give --strength or --start-at, not both", field="strength")
        if not 0 <= start_at <= spec.train_steps:
            raise ConfigError(f"--start-at must be a timestep in 0..{spec.train_steps}",
                              field="strength")
        options["strength"] = start_at / spec.train_steps
    args.update(options)
    args.update(given(method=method, prompt=prompt or None, distractors=distractor or None,
                      preset=preset))
    args.setdefault("method", "contrastive")
    cfg = resolve(spec, **args)
    keep = indices = None
    if index is not None:
        if index >= cfg.n:
            raise ConfigError(f"--from: sample {index} is not among the run's {cfg.n}")
        indices = next(b for b in batches(range(cfg.n), cfg.batch) if index in b)
        keep = {index}
    out_root = check_out_dir(out)
    ddp = DistContext.from_env(device)  # under torchrun / accelerate launch: share the batches
    if ddp is not None and (animate or keep is not None):
        raise ConfigError("--animate and --from SAMPLE.png run in one process (not under torchrun)")
    t0 = time.perf_counter()
    pack = load(model, ddp.device if ddp else device, clip)
    header = {"load_seconds": round(time.perf_counter() - t0, 3)}
    if from_run is not None:
        header["from"] = str(from_run)
    if ddp is not None:
        with Progress(cfg.method, quiet=quiet or as_json or not ddp.is_main) as progress:
            result, run_dir = sharded_run(pack, cfg, out_root, spec.name, ddp,
                                          on_event=progress.event, header=header)
        ddp.close()
        if not ddp.is_main:
            return
    else:
        outcome = run_to_folder(pack, cfg, out_root, quiet=quiet or as_json, header=header,
                                metadata=not no_metadata, animate=animate,
                                animate_samples=animate_samples, indices=indices, keep=keep)
        result, run_dir = outcome.result, outcome.run_dir
        if outcome.signal_exit:
            if as_json:
                sys.stdout.write((run_dir / "run.json").read_text())
            finish_stopped(outcome)
    if as_json:
        sys.stdout.write((run_dir / "run.json").read_text())
        return
    typer.echo(
        f"{len(result.indices)} samples in {result.seconds:.1f}s on {result.device} -> "
        f"{printable(run_dir)}\nmean p({quoted(cfg.prompt)}) = "
        f"{result.mean_target_prob:.3f} among {len(cfg.captions)} captions"
    )
    if sys.stdout.isatty() and (run_dir / "grid.png").exists():
        show_inline(run_dir / "grid.png")
