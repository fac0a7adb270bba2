"""``clipterm eval RUN_DIR`` (KID and judge scores of a run) and ``clipterm plot RUN_DIR``.

Registered on the Typer app by :func:`register`; torch and the models load inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from clipterm.errors import UserError

FEATURES_HELP = "judge (the pack's judge CNN) | clip (the pack's CLIP) | inception (torch-fidelity)"
REAL_HELP = ("Real images: digits:CLASS, cifar10:CLASS or a FOLDER of PNG/JPEG "
             "(default: the pack's data for the run's prompt, held-out split).")
SUBSET_HELP = "KID subset size (default: min(50, n, number of real images))."


def resolve_run_pack(info: dict[str, Any], model: str | None) -> str:
    """The pack to evaluate a run with: ``--model``, else the pack named in run.json."""
    from clipterm.packs import get_pack_spec

    if model:
        return model
    name = str(info.get("pack") or "")
    if not name:
        raise UserError("run.json does not name its pack: pass --model")
    try:
        get_pack_spec(name)
    except UserError:
        raise UserError(f"the run was made with the pack {name!r}, which is not a built-in pack "
                        "here: pass --model PACK_JSON") from None
    return name


def evaluate_run(run_dir: Path, *, model: str | None = None, real: str | None = None,
                 features: str = "judge", subset_size: int | None = None, subsets: int = 100,
                 device: str = "auto", data_root: Path | None = None, download: bool = False,
                 inception_weights: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Everything ``clipterm eval`` reports, as a dict (also the ``--json`` output)."""
    from clipterm.evaluate import Evaluator
    from clipterm.models import load_pack
    from clipterm.output import load_run_images

    images, info = load_run_images(run_dir)
    cfg = info.get("config", {})
    prompt = str(cfg.get("prompt") or (info.get("captions") or [""])[0])
    pack = load_pack(resolve_run_pack(info, model), device=device)
    evaluator = Evaluator.for_run(
        pack, prompt, real=real, features=features, subset_size=subset_size, subsets=subsets,
        n=len(images), seed=seed, data_root=data_root, download=download,
        inception_weights=inception_weights,
    )
    scores = evaluator.evaluate(images)
    timings = info.get("timings") or {}
    return {
        "run_dir": str(run_dir),
        "status": info.get("status"),
        "pack": pack.name,
        "method": cfg.get("method"),
        "prompt": prompt,
        "seed": cfg.get("seed"),
        "scale": cfg.get("scale"),
        "seconds": timings.get("seconds"),
        "mean_target_prob": info.get("mean_target_prob"),
        "real": evaluator.real_label,
        **scores,
        "evaluation": evaluator.describe(),
    }


def format_report(r: dict[str, Any]) -> str:
    lines = [
        f"run {r['run_dir']}: {r['method']}, {r['n']} samples of {r['prompt']!r}, "
        f"seed {r['seed']} ({r['status']})",
        f"KID ({r['features']} features, subset size {r['kid_subset_size']} x "
        f"{r['kid_subsets']} subsets, vs {r['n_real']} real from {r['real']}): "
        f"{r['kid_mean']:.4f} ± {r['kid_std']:.4f}",
    ]
    if r.get("judged_share") is not None:
        lines.append(f"judged share {r['prompt']!r}: {r['judged_share']:.2f}   "
                     f"judge confidence: {r['judge_confidence']:.3f}   "
                     f"judge p({r['prompt']!r}): {r['judge_target_prob']:.3f}")
    else:
        lines.append("judged share: - (no judge for this pack or prompt)")
    p = r.get("mean_target_prob")
    lines.append(f"mean final CLIP p({r['prompt']!r}): " + (f"{p:.3f}" if p is not None else "-")
                 + " (from run.json)")
    if r.get("seconds") is not None:
        lines.append(f"time to generate: {r['seconds']:.1f}s")
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``plot`` to ``app``."""

    @app.command("eval")
    def eval_command(
        run_dir: Path = typer.Argument(..., help="A run folder (with run.json and sample PNGs)."),
        real: str = typer.Option(None, "--real", help=REAL_HELP),
        features: str = typer.Option("judge", "--features", help=FEATURES_HELP),
        subset_size: int = typer.Option(None, "--subset-size", help=SUBSET_HELP),
        subsets: int = typer.Option(100, "--subsets", help="Number of KID subsets."),
        model: str = typer.Option(None, "--model", "-m", help="Pack (default: the run's)."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
        data_root: Path = typer.Option(None, "--data-root", help="Where CIFAR-10 lives."),
        download: bool = typer.Option(False, "--download", help="Download CIFAR-10 if missing."),
        inception_weights: Path = typer.Option(None, "--inception-weights",
                                               help="Local Inception weights file."),
        seed: int = typer.Option(0, "--seed", help="Seed of the KID subset draws."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """KID against real images of the prompt's class, judged share and confidence."""
        report = evaluate_run(run_dir, model=model, real=real, features=features,
                              subset_size=subset_size, subsets=subsets, device=device,
                              data_root=data_root, download=download,
                              inception_weights=inception_weights, seed=seed)
        if as_json:
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            return
        typer.echo(format_report(report), nl=False)

    @app.command("plot")
    def plot_command(
        run_dir: Path = typer.Argument(..., help="A run folder (with run.json)."),
        png: Path = typer.Option(None, "--png", help="Also write the plot as a PNG (matplotlib)."),
        width: int = typer.Option(None, "--width", help="Plot width in character cells."),
        height: int = typer.Option(14, "--height", help="Plot height in character cells."),
    ) -> None:
        """Per-caption CLIP probability over the steps of a run (the poster's last figure)."""
        from clipterm import plots
        from clipterm.output import read_run

        plot = plots.prob_trace_plot(read_run(run_dir))
        if png is not None:
            plots.save_line_plot(plot, png)
        if sys.stdout.isatty():
            plots.print_terminal_plot(plot, width=width, height=height)
        else:
            typer.echo(plots.terminal_plot(plot, width=width or 60, height=height).plain, nl=False)
        if png is not None:
            typer.echo(f"-> {png}")
