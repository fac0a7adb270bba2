"""``clipterm bench``: time the methods against the seed's step and a plain fp32 loop.

The work lives in :mod:`clipterm.bench` (core, no Typer); this module only parses options and
is cheap to import (torch is imported when the command runs).
"""

from __future__ import annotations

import sys

import typer

from clipterm.errors import UserError


def _ints(text: str, flag: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise UserError(f"{flag}: {part!r} is not a whole number >= 1")
        out.append(int(part))
    return tuple(out)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to ``app``."""

    @app.command("bench")
    def bench_command(
        model: str = typer.Option("cifar10", "--model", "-m", help="Pack to time (cifar10, digits, a pack JSON)."),
        random_weights: bool = typer.Option(False, "--random-weights", help="Build the real cifar10 architectures with random weights (no download)."),
        methods: str = typer.Option("uncond,spherical,contrastive,optimize", "--methods", help="Comma-separated methods to time ('' for none)."),
        batch: int = typer.Option(None, "--batch", help="Samples per batch (default 100 on CUDA, 2 on the CPU)."),
        steps_timed: int = typer.Option(None, "--steps-timed", help="Timed steps per method (default 30 on CUDA, 2 on the CPU)."),
        warmup: int = typer.Option(None, "--warmup", help="Warm-up steps (default 3 on CUDA, 1 on the CPU)."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
        compile_: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the UNet and the guided step (default: the device's runtime default)."),
        compile_mode: str = typer.Option("reduce-overhead", "--compile-mode", help="torch.compile mode."),
        precision: str = typer.Option(None, "--precision", help="fp32 | bf16 (default: bf16 on CUDA, fp32 on the CPU)."),
        channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last", help="UNet in channels_last."),
        clip_input: str = typer.Option("x0", "--clip-input", help="Guided methods: x0 | xt."),
        baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also time the seed-faithful step and the plain fp32 loop."),
        flops: bool = typer.Option(True, "--flops/--no-flops", help="Count FLOPs (torch's flop counter)."),
        optimize_memory: str = typer.Option("", "--optimize-memory", help="Chain lengths for the optimize memory report, e.g. 100,1000."),
        optimize_memory_batch: int = typer.Option(8, "--optimize-memory-batch"),
        agreement_steps: int = typer.Option(0, "--agreement-steps", help="> 0: compare fp32 and bf16 final images over this many steps."),
        agreement_n: int = typer.Option(16, "--agreement-n"),
        repeats: int = typer.Option(3, "--repeats", help="Times each measurement is repeated (min / median / max)."),
        guide_every: str = typer.Option("", "--guide-every", help="Also time the guided methods guided every K-th step only, e.g. 2,5 (rows relative to every step)."),
        guide_from: str = typer.Option("", "--guide-from", help="Also time the guided methods guided below timestep T only, e.g. 500."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON to stdout."),
        out: str = typer.Option(None, "--out", "-o", help="Also write the JSON report to this new file (never replaced)."),
    ) -> None:
        """Time each method per step (after warm-up, repeated: min / median / max) against the
        seed-faithful step and a plain fp32 loop; FLOPs, TFLOP/s, peak memory, extrapolated 100
        samples x 1000 steps; what --guide-every and --guide-from save."""
        from clipterm.bench import (
            BenchOptions,
            check_report_path,
            format_report,
            run_bench,
            write_report,
        )
        from clipterm.models import resolve_device
        from clipterm.output import json_text

        target = check_report_path(out) if out else None  # before the work, not after it
        on_gpu = resolve_device(device).type == "cuda"
        opts = BenchOptions(
            model=model, random_weights=random_weights,
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
            batch=batch if batch is not None else (100 if on_gpu else 2),
            steps_timed=steps_timed if steps_timed is not None else (30 if on_gpu else 2),
            warmup=warmup if warmup is not None else (3 if on_gpu else 1),
            device=device, compile=compile_, compile_mode=compile_mode, precision=precision,
            channels_last=channels_last, clip_input=clip_input, baselines=baselines,
            count_flops=flops, optimize_memory_steps=_ints(optimize_memory, "--optimize-memory"),
            optimize_memory_batch=optimize_memory_batch, agreement_steps=agreement_steps,
            agreement_n=agreement_n, repeats=repeats,
            guide_every=_ints(guide_every, "--guide-every"),
            guide_from=_ints(guide_from, "--guide-from"),
        )

        def log(msg: str) -> None:
            sys.stderr.write(f"clipterm bench: {msg}\n")
            sys.stderr.flush()

        report = run_bench(opts.validate(), log=log)
        if target is not None:
            write_report(target, report)
        if as_json:
            sys.stdout.write(json_text(report))
        else:
            typer.echo(format_report(report))
