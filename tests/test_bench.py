"""The bench (report shape, FLOP counting), the fast path's numerics, the optimize memory
report and start-up imports. Benchmarks report; these tests time nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from clipterm import guidance
from clipterm.bench import (
    cifar10_unet_config,
    count_flops,
    flops_of_method,
    model_flops,
    optimize_memory,
)
from clipterm.config import RunConfig, resolve
from clipterm.guide import CaptionScorer, Guide
from clipterm.runtime import DEFAULT_CPU_RUNTIME, Runtime
from clipterm.sampling import sample
from clipterm.schedule import ddpm_step, make_schedule, predict_x0
from clipterm.seeds import StepNoise, initial_noise

# bf16 fast path vs the fp32 reference on the tiny pack (measured: grad cos >= 0.9999,
# eps rel 1%, final mean |d| <= 0.43/255, max probs d 0.002; pixels off by > 8 levels: 1.1% for
# contrastive at scale 1, where guidance, now applied after the x0 clip, amplifies bf16 rounding).
GRAD_COS_MIN = 0.995
EPS_REL_MAX = 0.03
EMB_COS_MIN = 0.999
FINAL_MEAN_ABS_MAX = 1.5  # uint8 levels
FINAL_FRAC_OVER_8_MAX = 0.02
PROBS_ABS_MAX = 0.01


def cfg_for(pack, **kw) -> RunConfig:
    base = dict(method="contrastive", prompt="one", distractors=("zero", "two", "three"), n=4,
                batch=4, steps=6)
    base.update(kw)
    return resolve(pack.spec, **base)


def gradient(pack, cfg, x, t, abar, runtime=DEFAULT_CPU_RUNTIME):
    return Guide(pack, cfg, CaptionScorer(pack, cfg.captions, runtime), runtime).gradient(x, t, abar)


# ----------------------------------------------------------------------------- the bench command
def test_bench_json_report(tiny_pack, capsys):
    from clipterm.cli import main

    main(["bench", "--model", str(tiny_pack), "--device", "cpu", "--batch", "2",
          "--steps-timed", "1", "--warmup", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["clipterm"] == "bench" and report["device"] == "cpu"
    assert report["batch"] == 2 and report["runtime"] == "fp32"
    assert set(report["methods"]) == {"uncond", "spherical", "contrastive", "optimize"}
    assert set(report["baselines"]) == {"plain_fp32_uncond", "seed_faithful_contrastive",
                                        "seed_faithful_spherical"}
    assert all(v > 0 for v in report["flops"].values())
    for row in [*report["methods"].values(), *report["baselines"].values()]:
        for key in ("s_per_step", "extrapolated_s", "samples_per_s", "flops_per_step", "tflops"):
            assert row[key] > 0, key
        # 100 samples x 1000 steps at batch 2 = 50 batches of 1000 steps
        assert row["extrapolated_s"] == pytest.approx(row["s_per_step"] * 1000 * 50)
        assert row["tflops"] == pytest.approx(row["flops_per_step"] / row["s_per_step"] / 1e12)
        assert row["peak_mem_bytes"] is None  # CPU: no device memory to report
    m, b = report["methods"], report["baselines"]
    for method, seed_key in (("uncond", "seed_faithful_contrastive"),
                             ("contrastive", "seed_faithful_contrastive"),
                             ("spherical", "seed_faithful_spherical")):
        row = m[method]
        assert row["seed_faithful_baseline"] == seed_key
        assert row["ratio_to_seed_faithful"] == pytest.approx(row["s_per_step"] / b[seed_key]["s_per_step"])
        assert row["ratio_to_plain_fp32"] == pytest.approx(
            row["s_per_step"] / b["plain_fp32_uncond"]["s_per_step"])
        assert row["speedup_vs_plain_fp32"] == pytest.approx(1 / row["ratio_to_plain_fp32"])
    assert "ratio_to_seed_faithful" not in m["optimize"]
    # every timing repeated (3 by default): min <= median <= max of the runs; ratios carry the
    # range the runs allow and whether it stays on one side of 1
    assert report["repeats"] == 3
    for row in [*m.values(), *b.values()]:
        runs = row["s_per_step_runs"]
        assert len(runs) == 3
        assert row["s_per_step_min"] == min(runs) and row["s_per_step_max"] == max(runs)
        assert row["s_per_step"] == sorted(runs)[1]
    for method in ("uncond", "contrastive", "spherical"):
        lo, hi = m[method]["ratio_to_plain_fp32_range"]
        assert lo <= m[method]["ratio_to_plain_fp32"] <= hi
        assert m[method]["ratio_to_plain_fp32_meaningful"] == (hi < 1 or lo > 1)
    assert "guidance_options" not in report  # only when asked
    # guided steps do more work than unguided ones; the seed's spherical step encodes twice
    assert m["contrastive"]["flops_per_step"] > m["uncond"]["flops_per_step"]
    assert b["seed_faithful_spherical"]["flops_per_step"] > b["seed_faithful_contrastive"]["flops_per_step"]


def test_bench_guidance_options_rows_and_table(tiny_pack, capsys):
    """--guide-every / --guide-from add a row per value and guided method, relative to guiding
    every step, with the share of the timed steps that were guided; the table shows them."""
    from clipterm.cli import main

    main(["bench", "--model", str(tiny_pack), "--device", "cpu", "--batch", "1",
          "--steps-timed", "3", "--warmup", "1", "--methods", "uncond,contrastive",
          "--no-baselines", "--no-flops", "--repeats", "2", "--guide-every", "2,5",
          "--guide-from", "500"])
    out = capsys.readouterr().out
    assert "each timing 2x (median (min-max))" in out
    assert "relative to guiding every step" in out
    table = out[out.index("relative to guiding every step"):].splitlines()[2:]
    assert [line.split()[:3] for line in table] == [
        ["contrastive", "2", "1000"], ["contrastive", "5", "1000"], ["contrastive", "1", "500"]]
    main(["bench", "--model", str(tiny_pack), "--device", "cpu", "--batch", "1",
          "--steps-timed", "3", "--warmup", "1", "--methods", "contrastive", "--no-baselines",
          "--no-flops", "--repeats", "2", "--guide-every", "2", "--guide-from", "500", "--json"])
    report = json.loads(capsys.readouterr().out)
    every2, from500 = report["guidance_options"]
    # the timed chain is whole K-step cycles: warm-up 1 -> 2, timed 3 -> 4; half of them guided
    assert (every2["guide_every"], every2["warmup"], every2["steps_timed"]) == (2, 2, 4)
    assert every2["guided_share"] == 0.5
    # from T=500 on a 1- vs 4-step DDPM chain (diffusers' spacing: t = 0; 750, 500, 250, 0):
    # of the 3 steps the longer chain adds, 1 is below 500 (guided 250 and 0, against 0)
    assert (from500["guide_from"], from500["guide_every"]) == (500, 1)
    assert from500["guided_share"] == pytest.approx(1 / 3)
    every = report["methods"]["contrastive"]["s_per_step"]
    for row in (every2, from500):
        assert len(row["s_per_step_runs"]) == 2
        assert row["relative_to_every_step"] == pytest.approx(row["s_per_step"] / every)


@pytest.mark.parametrize("ours, base, meaningful", [
    ([1.0, 1.1], [2.0, 2.2], True),     # ranges apart: ours faster whatever the pairing
    ([1.0, 3.0], [2.0, 2.2], False),    # ours' range reaches over the baseline's
    ([2.1, 2.3], [2.0, 2.2], False),    # close and overlapping
    ([1.0], [2.0], None),               # one run: no spread to judge by
], ids=["apart", "wide", "overlap", "single"])
def test_ratio_meaningful_only_when_ranges_apart(ours, base, meaningful):
    from clipterm.bench import compare_rows, spread

    cmp = compare_rows(spread(ours), spread(base))
    assert cmp["meaningful"] is meaningful
    assert cmp["ratio"] == pytest.approx(np.median(ours) / np.median(base))
    assert cmp["ratio_range"] == pytest.approx([min(ours) / max(base), max(ours) / min(base)])


def test_bench_table_marks_meaningless_ratios():
    from clipterm.bench import compare_rows, format_report, spread

    base = {**spread([2.0, 2.1, 2.2]), "extrapolated_s": 1.0, "samples_per_s": 1.0}
    rows = {}
    for name, runs in (("fast", [1.0, 1.0, 1.1]), ("noisy", [1.0, 1.5, 5.0])):
        row = {**spread(runs), "extrapolated_s": 1.0, "samples_per_s": 1.0}
        cmp = compare_rows(row, base)
        row.update(ratio_to_plain_fp32=cmp["ratio"], ratio_to_plain_fp32_meaningful=cmp["meaningful"])
        rows[name] = row
    text = format_report({"model": "m", "device": "cpu", "torch": "x", "batch": 1,
                          "steps_timed": 1, "runtime": "fp32", "repeats": 3,
                          "extrapolated_to": "100 samples x 1000 steps", "methods": rows,
                          "baselines": {"plain_fp32_uncond": base}})
    fast = next(line for line in text.splitlines() if line.startswith("ours: fast"))
    noisy = next(line for line in text.splitlines() if line.startswith("ours: noisy"))
    assert fast.rstrip().endswith("0.48x") and "1.00 s (1.00-1.10)" in fast
    assert noisy.rstrip().endswith("0.71x?")
    assert "too noisy to compare" in text


def test_bench_rejects_unknown_method(tiny_pack, capsys):
    from clipterm.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--model", str(tiny_pack), "--device", "cpu", "--methods", "fast"])
    assert exc.value.code == 2
    assert "unknown method" in capsys.readouterr().err


# ----------------------------------------------------------------------------- FLOPs
def test_flop_counts_positive_and_linear_in_batch(tiny_loaded):
    pack = tiny_loaded
    counts = model_flops(pack)
    assert all(v > 0 for v in counts.values())

    def unet_flops(b: int) -> int:
        x = torch.zeros(b, 3, 8, 8)
        t = torch.full((b,), 10, dtype=torch.long)
        with torch.no_grad():
            return count_flops(lambda: pack.unet(x, t))

    f1 = unet_flops(1)
    assert f1 == counts["unet_forward_per_image"]
    assert unet_flops(2) == 2 * f1 and unet_flops(5) == 5 * f1
    g1 = flops_of_method(pack, "contrastive", 1, 1)
    g3 = flops_of_method(pack, "contrastive", 3, 1)
    assert g1 > 1.5 * f1  # UNet forward, its input-backward and CLIP
    assert g3 == pytest.approx(3 * g1, rel=1e-6)


def test_cifar10_architecture_is_the_35_7M_ddpm():
    from diffusers import UNet2DModel

    cfg = cifar10_unet_config()
    sched = cfg.pop("scheduler")
    unet = UNet2DModel(**cfg)
    assert sum(p.numel() for p in unet.parameters()) == 35_746_307
    assert sched["beta_schedule"] == "linear" and sched["variance_type"] == "fixed_large"
    assert [type(b).__name__ for b in unet.down_blocks] == [
        "DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"]


# ----------------------------------------------------------------------------- fast path numerics
def test_default_cpu_path_is_the_plain_fp32_loop(tiny_loaded):
    """sample()'s default on the CPU is bit-identical to the sampler written out by hand."""
    pack = tiny_loaded
    cfg = cfg_for(pack, method="contrastive", scale=2.0, n=3, batch=3, steps=5)
    assert Runtime.for_device(pack.device) == DEFAULT_CPU_RUNTIME
    got = sample(pack, cfg)
    sched = make_schedule(pack.scheduler, "ddpm", 5, pack.device)
    idx = [0, 1, 2]
    x = initial_noise(cfg.seed, idx, (3, 8, 8), pack.device)
    noise = StepNoise(cfg.seed, idx, (3, 8, 8), pack.device)
    text = pack.encode_text(cfg.captions)
    for k, t in enumerate(sched.timesteps):
        abar = sched.abar[k]
        x_in = x.detach().requires_grad_(True)
        eps = pack.unet(x_in, torch.full((3,), t, dtype=torch.long)).sample
        emb = pack.encode_clip_input((predict_x0(x_in, eps, abar) + 1) / 2, already_normalised=False)
        (grad,) = torch.autograd.grad(guidance.contrastive_log_prob(emb, text, pack.logit_scale).sum(), x_in)
        with torch.no_grad():
            # The model's own (x0-clipping) step, then the poster's mean shift gamma beta g / sqrt(alpha).
            x, _ = ddpm_step(x, eps.detach(), abar, sched.abar_prev[k], t, noise(),
                             sched.variance_type, sched.clip_sample)
            alpha = abar / sched.abar_prev[k]
            x = x + cfg.scale * (1 - alpha) / alpha.sqrt() * guidance.rms_normalise(grad)
    expected = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got.images, expected)
    assert got.runtime == "fp32"


@pytest.mark.parametrize("method", ["contrastive", "spherical"])
@pytest.mark.parametrize("clip_input", ["x0", "xt"])
def test_bf16_guided_step_matches_fp32(tiny_loaded, method, clip_input):
    pack = tiny_loaded
    cfg = cfg_for(pack, method=method, clip_input=clip_input, n=6, batch=6)
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    bf16 = Runtime(precision="bf16")
    for t in (900, 300, 20):
        abar = pack.scheduler.alphas_cumprod[t].float()
        g32, e32, m32 = gradient(pack, cfg, x, t, abar)
        g16, e16, m16 = gradient(pack, cfg, x, t, abar, bf16)
        # the networks ran in bf16, everything handed to the sampler is fp32
        assert g16.dtype == e16.dtype == m16.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(g32.flatten(1), g16.flatten(1))
        assert float(cos.min()) >= GRAD_COS_MIN
        assert float((e32 - e16).norm() / e32.norm()) <= EPS_REL_MAX
        assert float(torch.nn.functional.cosine_similarity(m32, m16).min()) >= EMB_COS_MIN
        assert not torch.equal(e32, e16)  # bf16 really ran


@pytest.mark.parametrize("method", ["uncond", "contrastive", "spherical"])
def test_bf16_run_matches_fp32_run(tiny_loaded, method):
    pack = tiny_loaded
    cfg = cfg_for(pack, method=method, scale=None if method == "uncond" else 1.0, n=6, batch=6,
                  steps=8)
    ref = sample(pack, cfg)
    fast = sample(pack, cfg, runtime=Runtime(precision="bf16"))
    d = np.abs(ref.images.astype(int) - fast.images.astype(int))
    assert d.mean() <= FINAL_MEAN_ABS_MAX
    assert (d > 8).mean() <= FINAL_FRAC_OVER_8_MAX
    assert np.abs(ref.probs - fast.probs).max() <= PROBS_ABS_MAX
    assert fast.runtime == "bf16"
    if method == "contrastive":  # per-sample seeds hold on the fast path: a shard is the same
        part = sample(pack, replace(cfg, batch=2), indices=[4, 5], runtime=Runtime(precision="bf16"))
        np.testing.assert_array_equal(part.images, fast.images[4:6])


def test_runtime_rejects_unknown_precision():
    with pytest.raises(ValueError):
        Runtime(precision="fp8")


# ----------------------------------------------------------------------------- optimize memory
def test_checkpointing_lowers_optimize_memory(tiny_loaded):
    """CPU measure: peak bytes torch allocates during one Adam iteration (profiler)."""
    rows = {(s, c): optimize_memory(tiny_loaded, 2, s, c) for s in (2, 8) for c in (True, False)}
    assert all(not r["oom"] and r["peak_above_start_bytes"] > 0 for r in rows.values())
    plain2, plain8 = rows[(2, False)]["peak_above_start_bytes"], rows[(8, False)]["peak_above_start_bytes"]
    ckpt8 = rows[(8, True)]["peak_above_start_bytes"]
    assert plain8 > 2 * plain2  # without checkpointing every step's activations stay alive
    assert ckpt8 < plain8 / 2


# ----------------------------------------------------------------------------- start-up
def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


@pytest.mark.parametrize("argv", [["--help"], ["models", "--json"]])
def test_help_and_models_import_no_heavy_libraries(argv):
    code = ("import contextlib, io\nfrom clipterm.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass")
    loaded = _modules_after(code)
    for heavy in ("torch", "huggingface_hub", "diffusers", "open_clip", "textual", "numpy"):
        assert heavy not in loaded, heavy
    if argv == ["--help"]:  # run.json's schema loads with eval, not with every command
        assert "pydantic" not in loaded


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")],
                         ids=["default", "user-choice-kept"])
def test_cli_makes_openmp_threads_sleep_before_torch_loads(given, expected):
    """OpenMP reads OMP_WAIT_POLICY when torch loads: the CLI sets it (unless the user did)
    before any command imports torch."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = ("import contextlib, io, os, sys\nfrom clipterm.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['models', '--json'])\n    except SystemExit:\n        pass\n"
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120, env=env)
    assert out.stdout.split() == [expected, "False"]


def test_hub_cache_check_agrees_with_huggingface_hub(tmp_path, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    from clipterm.packs.availability import _cached

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123" / "unet").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "unet" / "config.json").write_text("{}")
    for repo_id, files in (("org/model", ("unet/config.json",)), ("org/model", ("config.json",)),
                           ("org/other", ("config.json",))):
        expected = any(isinstance(try_to_load_from_cache(repo_id, f, cache_dir=tmp_path), str)
                       for f in files)
        assert _cached(repo_id, files) == expected
    assert _cached("org/model", ("unet/config.json",))


def test_bench_options_validate():
    from clipterm.bench import BenchOptions
    from clipterm.errors import UserError

    with pytest.raises(UserError):
        BenchOptions(batch=0).validate()
    opts = replace(BenchOptions(), compile=True, precision="bf16")
    rt = opts.validate().runtime(torch.device("cpu"))
    assert rt.compile and rt.precision == "bf16"
