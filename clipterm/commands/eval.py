"""``clipterm eval RUN_DIR`` (KID and judge scores of a run) and ``clipterm plot RUN_DIR``.

Registered on the Typer app by :func:`register`; torch and the models load inside the commands.
A run folder is read as untrusted input: run.json is checked field by field, sample files are
read only inside the folder, images are checked before they are decoded, and every string from
it is escaped before it reaches the terminal. The options are checked before anything is read.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from clipterm.commands.common import warn
from clipterm.errors import UserError
from clipterm.sanitize import printable, quoted

if TYPE_CHECKING:  # pragma: no cover
    from clipterm.commands.run_record import RunRecord

FEATURES_HELP = "judge (the pack's judge CNN) | clip (the pack's CLIP) | inception (torch-fidelity)"
REAL_HELP = ("Real images: digits:CLASS, cifar10:CLASS or a FOLDER of PNG/JPEG "
             "(default: the pack's data for the run's prompt, held-out split).")
SUBSET_HELP = "KID subset size (default: min(50, n, number of real images))."
PLOT_WIDTH = (8, 400)  # character cells a terminal plot may take (--width)
PLOT_HEIGHT = (4, 200)  # (--height)


def resolve_run_pack(record: RunRecord, model: str | None) -> str:
    """The pack to evaluate a run with: ``--model``, else the pack named in run.json."""
    from clipterm.packs import get_pack_spec

    if model:
        return model
    name = str(record.pack or "")
    if not name:
        raise UserError("run.json does not name its pack: pass --model")
    try:
        get_pack_spec(name)
    except UserError:
        raise UserError(f"the run was made with the pack {quoted(name, 60)}, which is not a "
                        "built-in pack here: pass --model PACK_JSON") from None
    return name


def _process_alive(pid: int | None, host: str | None) -> bool:
    if pid is None or pid <= 0 or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        return True
    except (OSError, OverflowError):  # gone, or not a process id
        return False
    return True


def status_note(record: RunRecord, n_found: int) -> str | None:
    """One warning line when the run did not complete: what is evaluated, and why."""
    n = record.config.n
    of = f" (of {n})" if n else ""
    if record.status == "running":
        if _process_alive(record.pid, record.host):
            return (f"the run is still running (pid {record.pid}): evaluating the {n_found} "
                    f"samples finished so far{of}")
        return (f"run.json says 'running' but no process is making the run (killed?): "
                f"evaluating the {n_found} samples it finished{of}")
    if record.status in ("incomplete", "aborted", "failed"):
        return f"the run is {record.status}: evaluating the {n_found} samples it finished{of}"
    return None


def _unlisted_pngs(run_dir: Path) -> int:
    try:
        return sum(1 for p in run_dir.glob("sample-*.png") if p.is_file())
    except OSError:
        return 0


def read_samples(run_dir: Path) -> tuple[Any, dict[str, Any], RunRecord]:
    """The images of a run folder to evaluate, its run.json and the checked record; warnings
    for what is missing or unfinished, one-line errors for what cannot be used."""
    from clipterm.commands.run_record import RunRecord
    from clipterm.output import read_run, read_sample_images, run_sample_files

    info = read_run(run_dir)
    record = RunRecord.of(info)
    files, missing = run_sample_files(run_dir, info)
    if not files:
        on_disk = _unlisted_pngs(Path(run_dir).expanduser())
        hint = (f" ({on_disk} sample PNGs are in the folder but not listed in run.json)"
                if on_disk else "")
        listed = f"the {len(missing)} samples run.json lists are missing" if missing else \
            "run.json lists no samples"
        raise UserError(f"{printable(run_dir)} holds no samples to evaluate: {listed}{hint}")
    images = read_sample_images(files)
    if missing:
        more = f", {quoted(missing[1], 40)}" if len(missing) > 1 else ""
        etc = ", ..." if len(missing) > 2 else ""
        warn(f"{len(missing)} sample file(s) that run.json lists are missing "
             f"({quoted(missing[0], 40)}{more}{etc}): evaluating the {len(files)} found")
    note = status_note(record, len(files))
    if note:
        warn(note)
    return images, info, record


def evaluate_run(run_dir: Path, *, model: str | None = None, real: str | None = None,
                 features: str = "judge", subset_size: int | None = None, subsets: int = 100,
                 device: str = "auto", data_root: Path | None = None, download: bool = False,
                 inception_weights: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Everything ``clipterm eval`` reports, as a dict (also the ``--json`` output)."""
    from clipterm.evaluate import Evaluator, check_options
    from clipterm.models import load_pack

    features = check_options(features, subset_size, subsets, seed)
    if inception_weights is not None and features == "inception":
        weights = Path(inception_weights).expanduser()
        if not weights.is_file():
            raise UserError(f"--inception-weights {printable(weights)}: no such file")
    images, info, record = read_samples(run_dir)
    prompt = record.prompt
    pack = load_pack(resolve_run_pack(record, model), device=device)
    evaluator = Evaluator.for_run(
        pack, prompt, real=real, features=features, subset_size=subset_size, subsets=subsets,
        n=len(images), seed=seed, data_root=data_root, download=download,
        inception_weights=inception_weights,
    )
    scores = evaluator.evaluate(images)
    cfg = record.config
    return {
        "run_dir": str(run_dir),
        "status": record.status,
        "pack": pack.name,
        "method": cfg.method,
        "prompt": prompt,
        "seed": cfg.seed,
        "scale": cfg.scale,
        "seconds": record.timings.seconds,
        "mean_target_prob": record.mean_target_prob,
        "real": evaluator.real_label,
        **scores,
        "evaluation": evaluator.describe(),
    }


def _number(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_report(r: dict[str, Any]) -> str:
    """The human-readable report; every string from the run folder escaped."""
    prompt = quoted(r["prompt"], 80)
    lines = [
        f"run {printable(r['run_dir'])}: {printable(r['method'] or '?', 40)}, {r['n']} samples "
        f"of {prompt}, seed {printable(r['seed'], 40)} ({printable(r['status'] or '?', 20)})",
        f"KID ({r['features']} features, subset size {r['kid_subset_size']} x "
        f"{r['kid_subsets']} subsets, vs {r['n_real']} real from {printable(r['real'])}): "
        f"{_number(r['kid_mean'], '.4f')} ± {_number(r['kid_std'], '.4f')}",
    ]
    if r.get("judged_share") is not None:
        lines.append(f"judged share {prompt}: {r['judged_share']:.2f}   "
                     f"judge confidence: {r['judge_confidence']:.3f}   "
                     f"judge p({prompt}): {r['judge_target_prob']:.3f}")
    else:
        lines.append("judged share: - (no judge for this pack or prompt)")
    lines.append(f"mean final CLIP p({prompt}): {_number(r.get('mean_target_prob'), '.3f')} "
                 "(from run.json)")
    if r.get("seconds") is not None:
        lines.append(f"time to generate: {r['seconds']:.1f}s")
    return "\n".join(lines) + "\n"


def check_plot_size(width: int | None, height: int) -> None:
    lo, hi = PLOT_WIDTH
    if width is not None and not lo <= width <= hi:
        raise UserError(f"--width must be a whole number in {lo}..{hi} (got {width})")
    lo, hi = PLOT_HEIGHT
    if not lo <= height <= hi:
        raise UserError(f"--height must be a whole number in {lo}..{hi} (got {height})")


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
        download: bool = typer.Option(False, "--download",
                                      help="Download CIFAR-10 (or the Inception weights) if "
                                           "missing."),
        inception_weights: Path = typer.Option(None, "--inception-weights",
                                               help="Local Inception weights file (.pth read "
                                                    "as plain tensors, or .safetensors)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the KID subset draws."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """KID against real images of the prompt's class, judged share and confidence."""
        report = evaluate_run(run_dir, model=model, real=real, features=features,
                              subset_size=subset_size, subsets=subsets, device=device,
                              data_root=data_root, download=download,
                              inception_weights=inception_weights, seed=seed)
        if as_json:
            from clipterm.output import json_text

            sys.stdout.write(json_text(report))  # strict: NaN and infinities are null
            return
        typer.echo(format_report(report), nl=False)

    @app.command("plot")
    def plot_command(
        run_dir: Path = typer.Argument(..., help="A run folder (with run.json)."),
        png: Path = typer.Option(None, "--png", help="Also write the plot to this new PNG file "
                                 "(matplotlib); an existing file is never replaced."),
        width: int = typer.Option(None, "--width", help="Plot width in character cells."),
        height: int = typer.Option(14, "--height", help="Plot height in character cells."),
    ) -> None:
        """Per-caption CLIP probability over the steps of a run (the poster's last figure)."""
        from clipterm import plots
        from clipterm.output import atomic_write_bytes, read_run

        check_plot_size(width, height)
        target = plots.check_png_path(png) if png is not None else None
        plot = plots.prob_trace_plot(read_run(run_dir))
        if target is not None:
            data = plots.render_png(plot)
            try:
                atomic_write_bytes(target, data, replace=False)
            except FileExistsError:
                raise UserError(f"--png {printable(target)} appeared while plotting: not "
                                "replaced") from None
            except OSError as exc:
                raise UserError(f"could not write --png {printable(target)}: "
                                f"{exc.strerror or exc}") from None
        if sys.stdout.isatty():
            plots.print_terminal_plot(plot, width=width, height=height)
        else:
            typer.echo(plots.terminal_plot(plot, width=width or 60, height=height).plain, nl=False)
        if target is not None:
            typer.echo(f"-> {printable(target)}")
