"""``clipterm sweep``: a grid of guidance scales x start steps (and guide-every, strength, image
weight) as run folders, a table and plots.

The command only parses options and runs the grid; the grid, the table, the plots and the files
are :mod:`clipterm.sweep`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from clipterm.sweep import (
    build_configs,
    parse_guide_every,
    parse_guide_from,
    parse_image_weights,
    parse_scales,
    parse_strengths,
    run_sweep,
    sweep_markdown,
    sweep_plots,
    write_sweep,
)


def register(app: typer.Typer) -> None:
    """Add ``sweep`` to ``app``."""

    @app.command("sweep")
    def sweep_command(
        method: str = typer.Option("contrastive", "--method", help="spherical | contrastive"),
        scale: str = typer.Option(None, "--scale", help="Comma-separated guidance scales, e.g. "
                                  "1,10,100,250 (default: the method's scale)."),
        guide_from: str = typer.Option("all", "--guide-from", help="Comma-separated timesteps "
                                       "to start guiding below, e.g. 1000,800,600,400,200; "
                                       "'all' guides every step."),
        guide_every: str = typer.Option(None, "--guide-every", help="Comma-separated k: guide "
                                        "every k-th step only, e.g. 1,2,5."),
        strength: str = typer.Option(None, "--strength", help="Comma-separated strengths of "
                                     "--init-image, each in 0..1, e.g. 0.25,0.5,0.75."),
        image_weight: str = typer.Option(None, "--image-weight", help="Comma-separated weights "
                                         "of --image-prompt, e.g. 0.5,1,2."),
        init_image: str = typer.Option(None, "--init-image", help="Start every run from this "
                                       "image, noised to --strength (default 0.6)."),
        image_prompt: str = typer.Option(None, "--image-prompt", help="An image whose CLIP "
                                         "embedding is one more target."),
        prompt: list[str] = typer.Option(None, "--prompt", "-p", help="Target caption. Repeat, "
                                         "or write 'a:1|b:-0.5', for weighted prompts."),
        distractor: list[str] = typer.Option(None, "--distractor", "-d",
                                             help="Distractor caption; repeat."),
        n: int = typer.Option(None, "-n", "--n", help="Samples per grid point (default 16)."),
        batch: int = typer.Option(None, "--batch"),
        steps: int = typer.Option(None, "--steps"),
        sampler: str = typer.Option(None, "--sampler"),
        seed: int = typer.Option(None, "--seed", help="Seed (the same x_T at every grid point; default 0)."),
        grad_norm: str = typer.Option(None, "--grad-norm", help="rms | none"),
        clip_input: str = typer.Option(None, "--clip-input", help="x0 | xt"),
        preset: str = typer.Option(None, "--preset", help="poster: the seed code's settings."),
        model: str = typer.Option(None, "--model", "-m"),
        clip: str = typer.Option(None, "--clip"),
        evaluate: bool = typer.Option(False, "--eval", help="Add KID, judged share, confidence."),
        real: str = typer.Option(None, "--real", help="Real images for --eval."),
        features: str = typer.Option("judge", "--features", help="judge | clip | inception"),
        subset_size: int = typer.Option(None, "--subset-size",
                                        help="KID subset size (default: min(50, n, real))."),
        subsets: int = typer.Option(100, "--subsets", help="Number of KID subsets."),
        data_root: Path = typer.Option(None, "--data-root", help="Where CIFAR-10 lives."),
        plots: bool = typer.Option(None, "--plots/--no-plots",
                                   help="PNG plots (default: when matplotlib is installed)."),
        out: Path = typer.Option(Path("out"), "--out", "-o"),
        device: str = typer.Option("auto", "--device"),
        as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Run a grid of guidance scales x start steps (x guide-every x strength x image
        weight); write a table and plots."""
        from clipterm.commands import common
        from clipterm.output import check_out_dir, new_run_dir, slug
        from clipterm.packs import get_pack_spec
        from clipterm.plots import print_terminal_plot, require_matplotlib
        from clipterm.sanitize import printable

        model = common.default_model(model)
        spec = get_pack_spec(model)
        scales = parse_scales(scale) if scale is not None else None
        starts = parse_guide_from(guide_from, spec.train_steps)
        everys = (parse_guide_every(guide_every, spec.train_steps)
                  if guide_every is not None else None)
        strengths = parse_strengths(strength) if strength is not None else None
        weights = parse_image_weights(image_weight) if image_weight is not None else None
        cfgs = build_configs(
            spec, method=method, prompt=prompt or None, distractors=distractor, scales=scales,
            guide_froms=starts, preset=preset, train_steps=spec.train_steps,
            guide_everys=everys, strengths=strengths, image_weights=weights,
            **common.given(n=n, batch=batch, steps=steps, sampler=sampler, seed=seed,
                           grad_norm=grad_norm, clip_input=clip_input, init_image=init_image,
                           image_prompt=image_prompt),
        )
        if plots:
            require_matplotlib()
        if evaluate:
            from clipterm.evaluate import check_options

            check_options(features, subset_size, subsets, 0)
        out_root = check_out_dir(out)
        pack = common.load(model, device, clip)
        evaluator = None
        if evaluate:
            from clipterm.evaluate import Evaluator

            evaluator = Evaluator.for_run(pack, cfgs[0].prompt, real=real, features=features,
                                          subset_size=subset_size, subsets=subsets,
                                          n=cfgs[0].n, data_root=data_root)
        folder = new_run_dir(out_root, f"sweep-{method}-{slug(cfgs[0].prompt_text)}")

        def run_one(cfg: Any, root: Path, label: str, folder_label: str) -> tuple[Any, Path]:
            outcome = common.run_to_folder(pack, cfg, root, quiet=quiet or as_json, label=label,
                                           folder_label=folder_label)
            common.finish_stopped(outcome)
            return outcome.result, outcome.run_dir

        table, results = run_sweep(cfgs, folder, run_one, evaluator, spec.name, pack.train_steps)
        pngs = write_sweep(folder, table, results, png=plots)
        if plots is None and not pngs and table["rows"]:
            from clipterm.plots import have_matplotlib

            if not have_matplotlib():
                common.warn("PNG plots skipped: pip install 'clipterm[plots]' for matplotlib")
        if as_json:
            from clipterm.output import json_text

            sys.stdout.write(json_text(dict(table, folder=str(folder))))
            return
        typer.echo(sweep_markdown(table))
        if sys.stdout.isatty():
            for _, plot in sweep_plots(table):
                print_terminal_plot(plot)
        typer.echo(f"-> {printable(folder)}")
