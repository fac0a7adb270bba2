"""``clipterm compare``: several methods from the same x_T, a grid (a row per method) and a table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from clipterm.commands.common import (
    MODEL_HELP,
    default_model,
    finish_stopped,
    given,
    load,
    run_to_folder,
    show_inline,
)
from clipterm.errors import ConfigError
from clipterm.sanitize import printable, quoted


def compare(
    prompt: list[str] = typer.Option(None, "--prompt", "-p", help="Target caption (default: the pack's). Repeat, or write 'a:1|b:-0.5', for weighted prompts."),
    distractor: list[str] = typer.Option(None, "--distractor", "-d", help="Distractor caption; repeat."),
    methods: str = typer.Option("uncond,spherical,contrastive", "--methods", help="Comma-separated methods."),
    n: int = typer.Option(None, "-n", "--n", help="Samples per method (default 16)."),
    batch: int = typer.Option(None, "--batch"),
    steps: int = typer.Option(None, "--steps"),
    sampler: str = typer.Option(None, "--sampler"),
    scale: float = typer.Option(None, "--scale", help="One scale for every guided method (default: each method's)."),
    seed: int = typer.Option(None, "--seed"),
    guide_from: int = typer.Option(None, "--guide-from", help="Guided methods: guide only at timesteps below T."),
    guide_every: int = typer.Option(None, "--guide-every", help="Guided methods: guide every K-th step only."),
    init_image: str = typer.Option(None, "--init-image", help="Every method starts from this image: noised to --strength (optimize: DDIM-inverted)."),
    strength: float = typer.Option(None, "--strength", help="With --init-image: how much of the chain to re-run, 0..1 (default 0.6; not optimize)."),
    image_prompt: str = typer.Option(None, "--image-prompt", help="Guided methods: an image whose CLIP embedding is one more target."),
    image_weight: float = typer.Option(None, "--image-weight", help="Weight of --image-prompt (default 1)."),
    animate: str = typer.Option(None, "--animate", help="Also save each method's denoising as an animation: gif | apng | mp4."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    clip: str = typer.Option(None, "--clip"),
    clip_input: str = typer.Option(None, "--clip-input"),
    preset: str = typer.Option(None, "--preset", help="poster: the seed code's exact settings."),
    evaluate: bool = typer.Option(False, "--eval", help="Add KID, judged share and confidence (see `clipterm eval`)."),
    real: str = typer.Option(None, "--real", help="Real images for --eval (default: the pack's data for the prompt)."),
    features: str = typer.Option("judge", "--features", help="KID features for --eval: judge | clip | inception."),
    subset_size: int = typer.Option(None, "--subset-size", help="KID subset size for --eval (default: min(50, n))."),
    out: Path = typer.Option(Path("out"), "--out", "-o"),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON to stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run several methods from the same x_T; write a grid (a row per method) and a table.

    The options of guidance (--guide-from, --guide-every, --image-prompt) apply to every guided
    method, --init-image to every method (--strength to all but optimize)."""
    from clipterm.animation import check_format
    from clipterm.compare import compare_table, write_compare
    from clipterm.config import GUIDED_METHODS, METHODS, resolve
    from clipterm.output import check_out_dir
    from clipterm.packs import get_pack_spec

    model = default_model(model)
    spec = get_pack_spec(model)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods is empty: name at least one method", field="method")
    for m in names:
        if m not in METHODS:
            raise ConfigError(f"unknown method {quoted(m)} in --methods: choose from "
                              f"{', '.join(METHODS)}", field="method")
    if len(set(names)) != len(names):
        raise ConfigError("--methods names a method twice", field="method")
    if animate is not None:
        check_format(animate)
    if strength is not None and init_image is None:
        raise ConfigError("--strength goes with an --init-image", field="strength")
    if image_weight is not None and image_prompt is None:
        raise ConfigError("--image-weight goes with an --image-prompt", field="image_weight")
    guiding = [m for m in names if m in GUIDED_METHODS]
    if strength is not None and names == ["optimize"]:
        raise ConfigError("optimize DDIM-inverts the --init-image and has no --strength",
                          field="strength")
    for flag, value in (("--guide-from", guide_from), ("--guide-every", guide_every),
                        ("--image-prompt", image_prompt)):
        if value is not None and not guiding:
            raise ConfigError(f"{flag} steers guidance, and none of {', '.join(names)} guides "
                              f"(add spherical or contrastive to --methods)")
    cfgs = []
    for m in names:
        guided = m in GUIDED_METHODS
        cfgs.append(resolve(
            spec, prompt=prompt or None, distractors=distractor, method=m, preset=preset,
            **given(n=n, batch=batch, steps=steps, seed=seed, init_image=init_image,
                    sampler=sampler if m != "optimize" else None,
                    strength=strength if m != "optimize" else None,
                    **({"scale": scale, "clip_input": clip_input, "guide_from": guide_from,
                        "guide_every": guide_every, "image_prompt": image_prompt,
                        "image_weight": image_weight} if guided else {}))))
    out_root = check_out_dir(out)
    pack = load(model, device, clip)
    evaluator = None
    if evaluate:
        from clipterm.evaluate import Evaluator

        evaluator = Evaluator.for_run(pack, cfgs[0].prompt, real=real, features=features,
                                      subset_size=subset_size, n=cfgs[0].n)
    results = []
    for cfg in cfgs:
        outcome = run_to_folder(pack, cfg, out_root, quiet=quiet or as_json, label=cfg.method,
                                animate=animate)
        finish_stopped(outcome)  # a signal ends the whole comparison, keeping what is done
        results.append((outcome.result, outcome.run_dir))
    table = compare_table(results, evaluator)
    folder = write_compare(out_root, spec.name, results, table)
    if as_json:
        sys.stdout.write(json.dumps(table, indent=2) + "\n")
        return
    typer.echo((folder / "table.md").read_text())
    typer.echo(f"-> {printable(folder)}")
    if sys.stdout.isatty():
        show_inline(folder / "grid.png")
