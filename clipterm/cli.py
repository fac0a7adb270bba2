"""The ``clipterm`` command (Typer). Heavy imports (torch, the TUI) happen inside commands.

Errors a user can cause (UserError) end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from clipterm.errors import UserError
from clipterm.sanitize import printable

if TYPE_CHECKING:  # pragma: no cover
    from clipterm.events import RunResult, StepEvent

app = typer.Typer(
    name="clipterm",
    help="Text-guided image generation with diffusion models and CLIP, in the terminal.\n\n"
    "Run bare `clipterm` for the interactive app, or a command below for batch work.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

METHOD_HELP = "uncond | spherical | contrastive | optimize"


def _err(msg: str) -> None:
    sys.stderr.write(f"clipterm: error: {msg}\n")


def _warn(msg: str) -> None:
    sys.stderr.write(f"clipterm: warning: {msg}\n")


# ----------------------------------------------------------------------------- bare clipterm
@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Pack to prefill: digits, cifar10, a pack JSON or a model folder."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Target caption to prefill."),
    distractor: list[str] = typer.Option(None, "--distractor", "-d", help="Distractor caption (repeat)."),
    method: str = typer.Option(None, "--method", help=METHOD_HELP),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    steps: int = typer.Option(None, "--steps", help="Sampling steps."),
    scale: float = typer.Option(None, "--scale", help="Guidance scale."),
    n: int = typer.Option(None, "-n", "--n", help="Number of samples."),
    seed: int = typer.Option(None, "--seed", help="Seed."),
    reset: bool = typer.Option(False, "--reset", help="Forget the remembered form values."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Open the interactive app (options prefill its form)."""
    if version:
        from clipterm import __version__

        typer.echo(f"clipterm {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is not None:
        return
    try:
        from clipterm.tui.app import run_app
    except ImportError:  # the TUI has not been built into this install
        typer.echo(ctx.get_help())
        raise typer.Exit() from None
    prefill = {
        "model": model, "prompt": prompt, "distractors": list(distractor) if distractor else None,
        "method": method, "device": device, "steps": steps, "scale": scale, "n": n, "seed": seed,
    }
    run_app(**{k: v for k, v in prefill.items() if v is not None}, reset=reset)


# ----------------------------------------------------------------------------- progress
class Progress:
    """Rich progress bar on a terminal, plain periodic lines otherwise (both on stderr)."""

    def __init__(self, label: str, quiet: bool = False):
        self.label = label
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._bar = None
        self._task = None
        self._last_line = 0.0
        self._last_pct = -1

    def __enter__(self) -> Progress:
        if self.tty and not self.quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None, info="loading", rate="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def event(self, ev: StepEvent) -> None:
        if self.quiet:
            return
        total = ev.total * ev.n_batches
        done = ev.batch_index * ev.total + ev.step
        rate = done / ev.elapsed if ev.elapsed > 0 else 0.0
        unit = "it" if ev.phase == "optimize" else "step"
        info = f"batch {ev.batch_index + 1}/{ev.n_batches}"
        if ev.probs is not None:
            info += f"  p(target) {float(ev.probs[:, 0].mean()):.2f}"
        if ev.loss is not None:
            info += f"  loss {ev.loss:.3f}"
        if self._bar is not None:
            self._bar.update(self._task, total=total, completed=done, info=info,
                             rate=f"{rate:.1f} {unit}/s")
            return
        pct = int(100 * done / max(total, 1))
        now = time.monotonic()
        if pct >= self._last_pct + 10 or done == total or now - self._last_line > 30:
            self._last_pct, self._last_line = pct, now
            sys.stderr.write(
                f"{self.label}: {done}/{total} {unit}s ({pct}%) {info} {rate:.1f} {unit}/s "
                f"{ev.elapsed:.1f}s\n"
            )
            sys.stderr.flush()


class CancelOnInterrupt:
    """First Ctrl+C asks the run to stop between steps (finished samples are kept); a second
    Ctrl+C interrupts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: Any = None

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self.event

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        _warn("interrupted: stopping after this step and keeping finished samples "
              "(Ctrl+C again to abort now)")

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _show_inline(path: Path) -> None:
    """Show an image in the terminal with term-image (kitty/iTerm2 graphics or unicode blocks)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*not running within a terminal.*")
    try:
        from PIL import Image
        from term_image.image import AutoImage, BlockImage

        with Image.open(path) as im:
            im = im.convert("RGB")
            cols = min(os.get_terminal_size().columns - 2, max(im.width // 2, 32))
            try:
                image = AutoImage(im, width=cols)
            except Exception:  # noqa: BLE001 - graphics detection failed: use unicode blocks
                image = BlockImage(im, width=cols)
            print(image)
    except Exception as exc:  # noqa: BLE001 - a preview must never fail a finished run
        _warn(f"could not show the grid inline ({exc})")


# ----------------------------------------------------------------------------- shared helpers
def _config_fields(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def _run_one(spec, pack, cfg, out_root: Path, quiet: bool, label: str | None = None,
             extra: dict[str, Any] | None = None) -> tuple[RunResult, Path]:
    from clipterm.output import RunWriter
    from clipterm.sampling import sample

    for w in cfg.warnings:
        _warn(w)
    writer = RunWriter(out_root, cfg, spec.name, extra=extra)
    with Progress(label or cfg.method, quiet=quiet) as progress, CancelOnInterrupt() as cancel:
        try:
            result = sample(pack, cfg, on_event=progress.event, cancel=cancel,
                            on_batch=writer.add_batch)
        except KeyboardInterrupt:
            writer._write_json(status="aborted")
            raise
    writer.finish(result)
    if not result.completed:
        _warn(f"run stopped early: {len(result.indices)} of {cfg.n} samples kept in {writer.dir}")
    return result, writer.dir


def _with_event_rate(cfg):
    """About 50 progress events per chain: each event costs a CLIP forward (for the reported
    probabilities) and a preview copy, which would dominate unguided sampling at every step."""
    from dataclasses import replace

    if cfg.method == "optimize" or cfg.event_every != 1:
        return cfg
    return replace(cfg, event_every=max(1, cfg.steps // 50))


def _load(model: str, device: str, clip: str | None):
    from clipterm.models import load_pack

    return load_pack(model, device=device, clip=clip)


# ----------------------------------------------------------------------------- generate
@app.command()
def generate(
    prompt: str = typer.Option(None, "--prompt", "-p", help="Target caption (default: the pack's)."),
    distractor: list[str] = typer.Option(None, "--distractor", "-d", help="Distractor caption; repeat. Default: the pack's other captions."),
    method: str = typer.Option("contrastive", "--method", help=METHOD_HELP),
    n: int = typer.Option(16, "-n", "--n", help="Number of samples."),
    batch: int = typer.Option(None, "--batch", help="Samples per batch (default: min(n, pack's))."),
    steps: int = typer.Option(None, "--steps", help="Sampling steps (respaced; default: the pack's)."),
    sampler: str = typer.Option(None, "--sampler", help="ddpm | ddim"),
    eta: float = typer.Option(None, "--eta", help="DDIM eta (0 = deterministic)."),
    scale: float = typer.Option(None, "--scale", help="Guidance scale gamma (default: the pack's)."),
    seed: int = typer.Option(0, "--seed", help="Seed: sample i depends only on (seed, i)."),
    model: str = typer.Option("digits", "--model", "-m", help="Pack name, pack JSON, diffusers folder or repo id."),
    clip: str = typer.Option(None, "--clip", help="CLIP override: MODEL:PRETRAINED or CONFIG.json:WEIGHTS."),
    clip_input: str = typer.Option(None, "--clip-input", help="x0 (predicted clean image) | xt (noisy sample)."),
    guide_from: int = typer.Option(None, "--guide-from", help="Guide only at timesteps below T."),
    grad_norm: str = typer.Option(None, "--grad-norm", help="rms (scale-free push) | none (raw gradient)."),
    iters: int = typer.Option(None, "--iters", help="optimize: Adam iterations."),
    lr: float = typer.Option(None, "--lr", help="optimize: learning rate."),
    init_image: str = typer.Option(None, "--init-image", help="optimize: start from this image (DDIM-inverted)."),
    preset: str = typer.Option(None, "--preset", help="poster: the seed code's exact settings."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Folder for run folders."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    as_json: bool = typer.Option(False, "--json", help="Print run.json to stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Generate samples and write a run folder (PNGs, grid.png, run.json)."""
    from clipterm.api import make_config
    from clipterm.output import check_out_dir
    from clipterm.packs import get_pack_spec

    spec = get_pack_spec(model)
    cfg = make_config(
        spec, prompt=prompt, distractors=distractor, method=method, preset=preset,
        **_config_fields(n=n, batch=batch, steps=steps, sampler=sampler, eta=eta, scale=scale,
                         seed=seed if preset is None else None, clip_input=clip_input,
                         guide_from=guide_from, grad_norm=grad_norm, opt_iters=iters, lr=lr,
                         init_image=init_image),
    )
    out_root = check_out_dir(out)
    from clipterm.distributed import DistContext, sharded_run

    ddp = DistContext.from_env(device)  # under torchrun / accelerate launch: shard the samples
    t0 = time.perf_counter()
    pack = _load(model, ddp.device if ddp else device, clip)
    load_s = time.perf_counter() - t0
    cfg = _with_event_rate(cfg.validate(pack.train_steps))
    if ddp is None:
        result, run_dir = _run_one(spec, pack, cfg, out_root, quiet or as_json,
                                   extra={"load_seconds": round(load_s, 3)})
    else:
        with Progress(cfg.method, quiet=quiet or as_json or not ddp.is_main) as progress:
            result, run_dir = sharded_run(pack, cfg, out_root, spec.name, ddp, on_event=progress.event,
                                          extra={"load_seconds": round(load_s, 3)})
        ddp.close()
        if not ddp.is_main:
            return
    if as_json:
        sys.stdout.write((run_dir / "run.json").read_text())
        return
    typer.echo(
        f"{len(result.indices)} samples in {result.seconds:.1f}s on {result.device} -> {run_dir}\n"
        f"mean p({cfg.prompt!r}) = {result.mean_target_prob:.3f} among {len(cfg.captions)} captions"
    )
    if sys.stdout.isatty() and (run_dir / "grid.png").exists():
        _show_inline(run_dir / "grid.png")


# ----------------------------------------------------------------------------- compare
@app.command()
def compare(
    prompt: str = typer.Option(None, "--prompt", "-p", help="Target caption (default: the pack's)."),
    distractor: list[str] = typer.Option(None, "--distractor", "-d", help="Distractor caption; repeat."),
    methods: str = typer.Option("uncond,spherical,contrastive", "--methods", help="Comma-separated methods."),
    n: int = typer.Option(16, "-n", "--n", help="Samples per method."),
    batch: int = typer.Option(None, "--batch"),
    steps: int = typer.Option(None, "--steps"),
    sampler: str = typer.Option(None, "--sampler"),
    scale: float = typer.Option(None, "--scale", help="One scale for every guided method (default: each method's)."),
    seed: int = typer.Option(0, "--seed"),
    model: str = typer.Option("digits", "--model", "-m"),
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
    """Run several methods from the same x_T; write a grid (a row per method) and a table."""
    from clipterm.api import make_config
    from clipterm.compare import compare_table, write_compare
    from clipterm.output import check_out_dir
    from clipterm.packs import get_pack_spec

    spec = get_pack_spec(model)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise UserError("--methods is empty: name at least one method")
    if len(set(names)) != len(names):
        raise UserError("--methods names a method twice")
    cfgs = [
        make_config(spec, prompt=prompt, distractors=distractor, method=m, preset=preset,
                    **_config_fields(n=n, batch=batch, steps=steps, sampler=sampler,
                                     scale=scale if m in ("spherical", "contrastive") else None,
                                     seed=seed if preset is None else None, clip_input=clip_input))
        for m in names
    ]
    out_root = check_out_dir(out)
    pack = _load(model, device, clip)
    evaluator = None
    if evaluate:
        from clipterm.evaluate import Evaluator

        evaluator = Evaluator.for_run(pack, cfgs[0].prompt, real=real, features=features,
                                      subset_size=subset_size, n=n)
    results = []
    for cfg in cfgs:
        result, run_dir = _run_one(spec, pack, _with_event_rate(cfg.validate(pack.train_steps)), out_root, quiet or as_json,
                                   label=cfg.method)
        results.append((result, run_dir))
    table = compare_table(results, evaluator)
    folder = write_compare(out_root, spec.name, results, table)
    if as_json:
        sys.stdout.write(json.dumps(table, indent=2) + "\n")
        return
    typer.echo((folder / "table.md").read_text())
    typer.echo(f"-> {folder}")
    if sys.stdout.isatty():
        _show_inline(folder / "grid.png")


# ----------------------------------------------------------------------------- models
@app.command()
def models(
    download: str = typer.Option(None, "--download", help="Fetch a pack's weights into the standard cache."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the model packs and whether their weights are on this machine."""
    from clipterm.packs import get_pack_spec, list_pack_specs

    if download:
        from clipterm.models import download_pack

        spec = get_pack_spec(download)
        fetched = download_pack(download)
        typer.echo(f"{spec.name}: " + (", ".join(fetched) + " cached" if fetched else "embedded, nothing to fetch"))
        return
    from clipterm.packs.availability import pack_availability

    rows = []
    for spec in list_pack_specs():
        avail = pack_availability(spec)
        rows.append({"name": spec.name, "description": spec.description, **avail,
                     "captions": list(spec.captions), "default_prompt": spec.default_prompt})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "available" if r["available"] else "not downloaded"
        if r["embedded"]:
            state = "always available (embedded)"
        typer.echo(f"{r['name']:<10} {state}")
        typer.echo(f"    {r['description']}")
        typer.echo(f"    diffusion: {r['diffusion']} [{'ok' if r['diffusion_ok'] else 'missing'}]")
        typer.echo(f"    clip:      {r['clip']} [{'ok' if r['clip_ok'] else 'missing'}]")
        typer.echo(f"    captions:  {', '.join(r['captions'])}")
        if not r["available"]:
            typer.echo(f"    get it:    clipterm models --download {r['name']}")


# ----------------------------------------------------------------------------- eval, plot, sweep
from clipterm.commands import bench as _bench_commands  # noqa: E402
from clipterm.commands import eval as _eval_commands  # noqa: E402
from clipterm.commands import sweep as _sweep_commands  # noqa: E402

_eval_commands.register(app)
_sweep_commands.register(app)
_bench_commands.register(app)


# ----------------------------------------------------------------------------- entry point
def _click_error_types() -> tuple[type[BaseException], ...]:
    """The ClickException classes a usage error can come as: Typer >= 0.26 vendors its own copy
    of Click (``typer.BadParameter`` derives from it), older Typer uses Click itself."""
    found = [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    try:
        import click

        found.append(click.ClickException)
    except ImportError:  # pragma: no cover - Typer without Click
        pass
    return tuple(dict.fromkeys(found))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors with exit code 2 for what a user can fix."""
    click_errors = _click_error_types()
    try:
        app(args=argv, standalone_mode=False, prog_name="clipterm")
    except UserError as exc:
        _err(printable(exc))
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
    except click_errors as exc:
        if getattr(exc, "ctx", None) is None:  # raised by the parser before a context existed
            args = sys.argv[1:] if argv is None else list(argv)
            cmd = next((a for a in args if not a.startswith("-")), "")
            where = f"clipterm {printable(cmd)}".strip() if cmd else "clipterm"
            sys.stderr.write(f"Usage: {where} [OPTIONS]\nTry '{where} -h' for help.\n\n")
        exc.show()  # Typer's usual short usage message: usage line, hint, "Error: ..."
        usage = any(c.__name__ == "UsageError" for c in type(exc).__mro__)
        sys.exit(2 if usage else getattr(exc, "exit_code", 1))
