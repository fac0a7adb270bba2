"""What users of CLIP-guided generation ask for: denoising animations, settings that travel with
the image (and re-run from it), an init image with skipped steps, weighted and image prompts,
guidance every k-th step. On the tiny pack, through the CLI and the API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipterm
from clipterm import guidance
from clipterm.config import RunConfig, parse_prompts, resolve
from clipterm.errors import ConfigError
from clipterm.guide import CaptionScorer, Guide
from clipterm.packs import get_pack_spec
from clipterm.parameters import format_parameters, parse_parameters
from clipterm.sampling import sample
from tests.adversarial.harness import assert_ok, assert_user_error, run_cli, snapshot

BASE = ["--steps", "6", "-n", "3", "--batch", "2", "--seed", "4"]


def one_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ----------------------------------------------------------------------------- animations
@pytest.mark.parametrize("fmt", ["gif", "apng", "mp4"])
def test_animation_has_a_frame_per_reported_step_and_opens(fmt, tiny_pack, tmp_path, capsys):
    o = run_cli(["generate", "--model", str(tiny_pack), *BASE, "--animate", fmt,
                 "--animate-samples", "--out", str(tmp_path)], capsys)
    assert_ok(o)
    run_dir = one_run(tmp_path)
    suffix = {"gif": ".gif", "apng": ".png", "mp4": ".mp4"}[fmt]
    info = json.loads((run_dir / "run.json").read_text())
    names = ["animation" + suffix] + [f"sample-{i:05d}-animation{suffix}" for i in range(3)]
    assert info["animations"] == names
    grid = pixels(run_dir / "grid.png")
    if fmt == "mp4":
        import imageio.v3 as iio

        frames = iio.imread(run_dir / names[0], plugin="FFMPEG")
        assert frames.shape[0] >= 6 and frames.shape[1:3] == (grid.shape[0] // 2 * 2,
                                                              grid.shape[1] // 2 * 2)
        return
    with Image.open(run_dir / names[0]) as anim:
        assert anim.n_frames == 6 and anim.size == (grid.shape[1], grid.shape[0])
        anim.seek(anim.n_frames - 1)
        last = np.asarray(anim.convert("RGB"))
    if fmt == "apng":  # lossless: the last frame is the grid of the finished samples
        np.testing.assert_array_equal(last, grid)
    with Image.open(run_dir / names[1]) as one:
        assert one.n_frames == 6 and one.size == (8, 8)


def test_a_long_chain_animation_stays_small(tiny_loaded):
    from clipterm.animation import FrameRecorder
    from clipterm.reporting import Reporter

    frames = FrameRecorder()
    cfg = resolve(tiny_loaded.spec, method="uncond", n=1, steps=400, sampler="ddpm")
    sample(tiny_loaded, cfg, reporter=Reporter(None, frames=frames))
    assert len(frames.frames_of(0)) == 50


def test_bad_animation_options_are_one_line(tiny_pack, tmp_path, capsys, monkeypatch):
    before = snapshot(tmp_path)
    base = ["generate", "--model", str(tiny_pack), *BASE, "--out", str(tmp_path / "o")]
    assert_user_error(run_cli([*base, "--animate", "avi"], capsys), "unknown animation format")
    assert_user_error(run_cli([*base, "--animate-samples"], capsys), "goes with --animate")
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
    assert_user_error(run_cli([*base, "--animate", "mp4"], capsys), "pip install 'clipterm[mp4]'")
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- settings travel
CONFIGS = [
    dict(method="contrastive", prompt="seven", scale=0.1),
    dict(method="spherical", prompt="a red car:1|a blue car:-0.5", distractors=["x, y", 'say "hi"'],
         guide_every=2, guide_from=700),
    dict(method="uncond", prompt="one", init_image="INIT", strength=0.25, sampler="ddim", eta=0.5),
    dict(method="optimize", prompt="two", opt_iters=3, lr=0.02),
]


@pytest.mark.parametrize("fields", CONFIGS, ids=[c["method"] for c in CONFIGS])
def test_parameters_text_parses_back(fields, tiny_pack, tmp_path):
    init = tmp_path / "odd, name: 1.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(init)
    fields = {k: (str(init) if v == "INIT" else v) for k, v in fields.items()}
    cfg = resolve(get_pack_spec(str(tiny_pack)), n=4, steps=5, **fields)
    text = format_parameters(cfg, index=3, size=(8, 8), model="tiny", clip="tiny-clip:x")
    got = parse_parameters(text)
    assert got["Prompt"] == cfg.prompt_text
    assert got["Negative prompt"] == ", ".join(cfg.distractors)
    assert got["Steps"] == "5" and got["Method"] == cfg.method and got["Sample"] == "3"
    assert got["Seed"] == "0" and got["Size"] == "8x8" and got["Model"] == "tiny"
    assert got["CLIP"] == "tiny-clip:x"
    if cfg.init_image:
        assert got["Init image"] == str(init) and float(got["Strength"]) == 0.25
    if cfg.guide_every == 2:
        assert got["Guide every"] == "2" and got["Guide from"] == "700"


def test_png_chunks_and_no_metadata(tiny_pack, tmp_path, capsys):
    assert_ok(run_cli(["generate", "--model", str(tiny_pack), *BASE, "--out",
                       str(tmp_path / "a")], capsys))
    with Image.open(one_run(tmp_path / "a") / "sample-00001.png") as im:
        assert set(im.text) == {"clipterm", "parameters", "Software"}
        assert im.text["Software"].startswith("clipterm ")
        assert parse_parameters(im.text["parameters"])["Sample"] == "1"
    assert_ok(run_cli(["generate", "--model", str(tiny_pack), *BASE, "--no-metadata", "--out",
                       str(tmp_path / "b")], capsys))
    plain = one_run(tmp_path / "b") / "sample-00001.png"
    with Image.open(plain) as im:
        assert not getattr(im, "text", {})
    o = run_cli(["generate", "--from", str(plain), "--out", str(tmp_path / "c")], capsys)
    assert_user_error(o, "holds no clipterm settings")


@pytest.mark.parametrize("method", ["contrastive", "optimize"])
def test_from_a_sample_png_reproduces_it_bit_for_bit(method, tiny_pack, tmp_path, capsys):
    assert_ok(run_cli(["generate", "--model", str(tiny_pack), "--method", method, *BASE,
                       "--out", str(tmp_path / "a")], capsys))
    first = one_run(tmp_path / "a")
    for i in (0, 2):
        assert_ok(run_cli(["generate", "--from", str(first / f"sample-{i:05d}.png"), "--out",
                           str(tmp_path / f"b{i}")], capsys))
        again = one_run(tmp_path / f"b{i}")
        assert sorted(p.name for p in again.glob("sample-*.png")) == [f"sample-{i:05d}.png"]
        np.testing.assert_array_equal(pixels(again / f"sample-{i:05d}.png"),
                                      pixels(first / f"sample-{i:05d}.png"))
        info = json.loads((again / "run.json").read_text())
        assert info["config"] == json.loads((first / "run.json").read_text())["config"]


def test_from_a_run_folder_with_overrides(tiny_pack, tmp_path, capsys):
    assert_ok(run_cli(["generate", "--model", str(tiny_pack), *BASE, "-p", "two",
                       "--out", str(tmp_path / "a")], capsys))
    first = one_run(tmp_path / "a")
    assert_ok(run_cli(["generate", "--from", str(first), "--out", str(tmp_path / "b")], capsys))
    again = one_run(tmp_path / "b")
    for i in range(3):
        np.testing.assert_array_equal(pixels(again / f"sample-{i:05d}.png"),
                                      pixels(first / f"sample-{i:05d}.png"))
    assert_ok(run_cli(["generate", "--from", str(first), "--steps", "3", "--out",
                       str(tmp_path / "c")], capsys))
    cfg = json.loads((one_run(tmp_path / "c") / "run.json").read_text())["config"]
    assert cfg["steps"] == 3 and cfg["prompt"] == "two" and cfg["seed"] == 4


def test_from_damaged_records_is_one_line(tiny_pack, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"clipterm": "run", "status": "complete",
                                              "pack": str(tiny_pack), "config": {"method": 5},
                                              "samples": []}))
    assert_user_error(run_cli(["generate", "--from", str(run)], capsys), "not valid")
    (run / "run.json").write_text(json.dumps({"config": {}}))
    assert_user_error(run_cli(["generate", "--from", str(run)], capsys), "not a clipterm run")
    assert_user_error(run_cli(["generate", "--from", str(tmp_path / "nope")], capsys),
                      "no such run folder")


# ----------------------------------------------------------------------------- init image
@pytest.fixture()
def init_png(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "init.png"
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("method", ["uncond", "contrastive"])
def test_init_image_strength_0_returns_it_and_1_ignores_it(method, tiny_loaded, init_png):
    spec = tiny_loaded.spec
    zero = sample(tiny_loaded, resolve(spec, method=method, n=2, steps=6,
                                       init_image=str(init_png), strength=0.0))
    want = pixels(init_png)
    assert np.abs(zero.images.astype(int) - want.astype(int)).max() <= 1
    full = sample(tiny_loaded, resolve(spec, method=method, n=2, steps=6,
                                       init_image=str(init_png), strength=1.0))
    plain = sample(tiny_loaded, resolve(spec, method=method, n=2, steps=6))
    np.testing.assert_array_equal(full.images, plain.images)
    half = sample(tiny_loaded, resolve(spec, method=method, n=2, steps=6,
                                       init_image=str(init_png), strength=0.5))
    d_init = np.abs(half.images.astype(int) - want.astype(int)).mean()
    d_plain = np.abs(half.images.astype(int) - plain.images.astype(int)).mean()
    assert d_init > 0 and d_plain > 0


def test_start_at_is_strength_in_timesteps(tiny_pack, init_png, tmp_path, capsys):
    assert_ok(run_cli(["generate", "--model", str(tiny_pack), *BASE, "--init-image",
                       str(init_png), "--start-at", "250", "--out", str(tmp_path / "o")], capsys))
    cfg = json.loads((one_run(tmp_path / "o") / "run.json").read_text())["config"]
    assert cfg["strength"] == 0.25 and cfg["init_image"] == str(init_png)
    o = run_cli(["generate", "--model", str(tiny_pack), *BASE, "--init-image", str(init_png),
                 "--start-at", "250", "--strength", "0.5", "--out", str(tmp_path / "x")], capsys)
    assert_user_error(o, "not both")
    o = run_cli(["generate", "--model", str(tiny_pack), *BASE, "--init-image", str(init_png),
                 "--strength", "1.5", "--out", str(tmp_path / "x")], capsys)
    assert_user_error(o, "strength must be in [0, 1]")
    o = run_cli(["generate", "--model", str(tiny_pack), *BASE, "--strength", "0.5",
                 "--out", str(tmp_path / "y")], capsys)
    assert_ok(o)
    assert "--strength needs an --init-image" in o.err


# ----------------------------------------------------------------------------- weighted prompts
def test_a_zero_weight_prompt_drops_out_exactly(tiny_loaded):
    spec = tiny_loaded.spec
    for method in ("contrastive", "spherical"):
        single = resolve(spec, method=method, prompt="one", n=2, steps=5, scale=2.0)
        weighted = resolve(spec, method=method, prompt="one:1|two:0", n=2, steps=5, scale=2.0)
        assert weighted == single and "two" in weighted.distractors
        assert any("weight 0" in w for w in weighted.warnings)
        a, b = sample(tiny_loaded, single), sample(tiny_loaded, weighted)
        np.testing.assert_array_equal(a.images, b.images)


def test_weighted_objectives_are_the_weighted_sums(tiny_loaded):
    spec = tiny_loaded.spec
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    emb = torch.nn.functional.normalize(x, dim=-1)
    for method in ("contrastive", "spherical"):
        cfg = resolve(spec, method=method, prompt=["one:1", "two:-0.5"], n=3, steps=4)
        assert cfg.targets == ("one", "two") and cfg.weights == (1.0, -0.5)
        assert cfg.captions[:2] == ("one", "two") and "two" not in cfg.distractors
        guide = Guide(tiny_loaded, cfg, CaptionScorer(tiny_loaded, cfg.captions))
        text, ls = guide.scorer.text_emb, guide.scorer.logit_scale
        if method == "contrastive":
            logp = (ls * emb @ text.T).log_softmax(-1)
            want = logp[:, 0] - 0.5 * logp[:, 1]
        else:
            want = (-guidance.spherical_distance(emb, text[0])
                    + 0.5 * guidance.spherical_distance(emb, text[1]))
        torch.testing.assert_close(guide.objective(emb), want)


def test_weighted_prompt_runs_through_the_cli(tiny_pack, tmp_path, capsys):
    o = run_cli(["generate", "--model", str(tiny_pack), *BASE, "-p", "one:1", "-p", "two:-1",
                 "--out", str(tmp_path)], capsys)
    assert_ok(o)
    info = json.loads((one_run(tmp_path) / "run.json").read_text())
    assert info["config"]["more_prompts"] == ["two"] and info["config"]["weights"] == [1.0, -1.0]
    assert info["captions"][:2] == ["one", "two"]


@pytest.mark.parametrize(("prompt", "needle"), [
    ("one:1|two:1x", "is not a number"),
    ("one:1|two:nan", "finite number"),
    ("one:1|One:2", "given twice"),
    ("one:0|two:0", "every prompt weight is 0"),
    ("one:1||two:1", "weighted prompts is empty"),
])
def test_bad_weighted_prompts(prompt, needle, tiny_pack, tmp_path, capsys):
    o = run_cli(["generate", "--model", str(tiny_pack), *BASE, "-p", prompt, "--out",
                 str(tmp_path / "o")], capsys)
    assert_user_error(o, needle)
    assert not (tmp_path / "o").exists()


def test_parse_prompts_keeps_colons_that_are_not_weights():
    assert parse_prompts("a photo: dusk")[0] == [("a photo: dusk", 1.0)]
    assert parse_prompts("a:2")[0] == [("a", 2.0)]
    with pytest.raises(ConfigError):
        RunConfig(method="uncond", prompt="a", distractors=(), n=1, batch=1, steps=1, seed=0,
                  more_prompts=("b",), weights=(1.0,))


# ----------------------------------------------------------------------------- image prompts
def test_an_image_prompt_is_one_more_target(tiny_loaded, init_png, tmp_path, capsys):
    from clipterm.guide import image_prompt_embedding

    cfg = resolve(tiny_loaded.spec, method="spherical", prompt="one", n=2, steps=4,
                  image_prompt=str(init_png), image_weight=2.0)
    guide = Guide(tiny_loaded, cfg, CaptionScorer(tiny_loaded, cfg.captions))
    img = image_prompt_embedding(tiny_loaded, str(init_png))
    emb = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    text = guide.scorer.text_emb
    want = -(guidance.spherical_distance(emb, text[0]) + 2.0 * guidance.spherical_distance(emb, img[0]))
    torch.testing.assert_close(guide.objective(emb), want)
    assert sample(tiny_loaded, cfg).completed
    o = run_cli(["generate", "--model", str(tiny_pack_path(tiny_loaded)), "--method", "uncond",
                 *BASE, "--image-prompt", str(init_png), "--out", str(tmp_path / "o")], capsys)
    assert_ok(o)
    assert "uncond does not use --image-prompt" in o.err


def test_an_image_prompt_of_weight_0_is_left_out(tiny_loaded, init_png):
    spec = tiny_loaded.spec
    zero = resolve(spec, n=2, steps=3, scale=2.0, image_prompt=str(init_png), image_weight=0.0)
    assert (zero.image_prompt, zero.image_weight) == (None, None)
    assert any("image prompt of weight 0 is left out" in w for w in zero.warnings)
    alone = resolve(spec, n=2, steps=3, scale=2.0)
    np.testing.assert_array_equal(sample(tiny_loaded, zero).images,
                                  sample(tiny_loaded, alone).images)


def tiny_pack_path(pack) -> str:
    return pack.spec.source


# ----------------------------------------------------------------------------- guide every k
def test_guide_every_1_is_every_step_and_2_halves_the_gradients(tiny_loaded, monkeypatch):
    spec = tiny_loaded.spec
    every = sample(tiny_loaded, resolve(spec, n=2, steps=6, scale=2.0))
    one = sample(tiny_loaded, resolve(spec, n=2, steps=6, scale=2.0, guide_every=1))
    np.testing.assert_array_equal(every.images, one.images)
    calls = []
    real = Guide.gradient
    monkeypatch.setattr(Guide, "gradient", lambda self, *a: calls.append(1) or real(self, *a))
    two = sample(tiny_loaded, resolve(spec, n=2, steps=6, scale=2.0, guide_every=2))
    assert len(calls) == 3 and not np.array_equal(two.images, every.images)
    assert clipterm.resolve(spec, method="uncond", guide_every=3).guide_every is None
