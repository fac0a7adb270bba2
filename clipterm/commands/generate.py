"""``clipterm generate``: one run into a new run folder."""

from __future__ import annotations

import sys
import time
from pathlib import Path

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
from clipterm.sanitize import printable, quoted


def generate(
    prompt: str = typer.Option(None, "--prompt", "-p", help="Target caption (default: the pack's)."),
    distractor: list[str] = typer.Option(None, "--distractor", "-d", help="Distractor caption; repeat. Default: the pack's other captions."),
    method: str = typer.Option("contrastive", "--method", help=METHOD_HELP),
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
    grad_norm: str = typer.Option(None, "--grad-norm", help="rms (scale-free push) | none (raw gradient)."),
    iters: int = typer.Option(None, "--iters", help="optimize: Adam iterations."),
    lr: float = typer.Option(None, "--lr", help="optimize: learning rate."),
    init_image: str = typer.Option(None, "--init-image", help="optimize: start from this image (DDIM-inverted)."),
    cutouts: int = typer.Option(None, "--cutouts", help="Guided: CLIP also sees N random crops of each sample (0 = one resize; default: the pack's)."),
    cut_pow: float = typer.Option(None, "--cut-pow", help="Guided: cutout size exponent (larger = smaller crops; default 1)."),
    augment: bool = typer.Option(None, "--augment/--no-augment", help="Guided: flip and slightly turn and shift each cutout."),
    grad_checkpointing: bool = typer.Option(None, "--grad-checkpointing/--no-grad-checkpointing", help="Guided: recompute the UNet's activations in the backward pass (less memory; default: the pack's)."),
    preset: str = typer.Option(None, "--preset", help="poster: the seed code's exact settings."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Folder for run folders."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    as_json: bool = typer.Option(False, "--json", help="Print run.json to stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Generate samples and write a run folder (PNGs, grid.png, run.json)."""
    from clipterm.config import resolve
    from clipterm.distributed import DistContext, sharded_run
    from clipterm.output import check_out_dir
    from clipterm.packs import get_pack_spec

    model = default_model(model)
    spec = get_pack_spec(model)
    cfg = resolve(spec, prompt=prompt, distractors=distractor, method=method, preset=preset,
                  **given(n=n, batch=batch, steps=steps, sampler=sampler, eta=eta, scale=scale,
                          seed=seed, clip_input=clip_input, guide_from=guide_from,
                          grad_norm=grad_norm, opt_iters=iters, lr=lr, init_image=init_image,
                          cutouts=cutouts, cut_pow=cut_pow, augment=augment,
                          grad_checkpointing=grad_checkpointing))
    out_root = check_out_dir(out)
    ddp = DistContext.from_env(device)  # under torchrun / accelerate launch: share the batches
    t0 = time.perf_counter()
    pack = load(model, ddp.device if ddp else device, clip)
    header = {"load_seconds": round(time.perf_counter() - t0, 3)}
    if ddp is not None:
        with Progress(cfg.method, quiet=quiet or as_json or not ddp.is_main) as progress:
            result, run_dir = sharded_run(pack, cfg, out_root, spec.name, ddp,
                                          on_event=progress.event, header=header)
        ddp.close()
        if not ddp.is_main:
            return
    else:
        outcome = run_to_folder(pack, cfg, out_root, quiet=quiet or as_json, header=header)
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
