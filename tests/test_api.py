"""The Python API, the examples, model loading layouts and pack specs."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import clipterm
from clipterm.errors import ConfigError, UserError
from clipterm.models import load_clip, load_diffusion, parse_clip_spec, resolve_device
from clipterm.packs import get_pack_spec

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, args: list[str], monkeypatch) -> object:
    monkeypatch.setattr(sys, "argv", [name, *args])
    ns = runpy.run_path(str(ROOT / "examples" / name))
    return ns["main"](args)


def test_example_one_run(tiny_pack, tmp_path, monkeypatch, capsys):
    run_example("one_run.py", ["--model", str(tiny_pack), "--n", "2", "--steps", "3",
                               "--out", str(tmp_path)], monkeypatch)
    out = capsys.readouterr().out
    assert "2 samples" in out
    (run_dir,) = list(tmp_path.iterdir())
    assert (run_dir / "grid.png").is_file()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_example_compare_methods(tiny_pack, monkeypatch, capsys):
    scores = run_example("compare_methods.py", ["--model", str(tiny_pack), "--n", "2", "--steps", "3"],
                         monkeypatch)
    assert set(scores) == {"uncond", "spherical", "contrastive"}
    assert all(0 < v < 1 for v in scores.values())


def test_generate_api(tiny_pack, tmp_path):
    res, run_dir = clipterm.generate("two", model=str(tiny_pack), method="spherical", n=2,
                                     steps=2, out=tmp_path, device="cpu")
    assert res.images.shape == (2, 8, 8, 3)
    assert run_dir.parent == tmp_path and (run_dir / "run.json").is_file()
    assert res.captions[0] == "two" and "one" in res.captions  # pack captions score the samples


def test_flat_and_subfolder_layouts_load_the_same_model(tmp_path):
    from conftest import build_tiny_models

    sub = build_tiny_models(tmp_path / "sub", seed=3)
    flat = build_tiny_models(tmp_path / "flat", seed=3, flat=True)
    assert (tmp_path / "flat" / "ddpm" / "config.json").is_file()
    u1, s1 = load_diffusion(str(sub.parent / "ddpm"), torch.device("cpu"))
    u2, s2 = load_diffusion(str(flat.parent / "ddpm"), torch.device("cpu"))
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(u1(x, 10).sample, u2(x, 10).sample)
    assert s1.config.num_train_timesteps == s2.config.num_train_timesteps == 1000
    assert not any(p.requires_grad for p in u1.parameters())
    # a bare diffusers folder works as --model, with the default captions
    spec = get_pack_spec(str(flat.parent / "ddpm"))
    assert spec.captions[0] == "airplane"


def test_clip_specs():
    assert parse_clip_spec("ViT-B-32:openai") == {"model": "ViT-B-32", "pretrained": "openai"}
    assert parse_clip_spec("/x/cfg.json:/x/w.safetensors") == {"config": "/x/cfg.json", "weights": "/x/w.safetensors"}
    assert parse_clip_spec("local-dir:/x") == {"model": "local-dir:/x"}
    with pytest.raises(UserError):
        parse_clip_spec(":openai")


def test_local_clip_checkpoint_loads_with_the_right_weights(tiny_pack):
    from safetensors.torch import load_file

    spec = get_pack_spec(str(tiny_pack))
    model, tokenizer, name = load_clip(spec.clip, torch.device("cpu"))
    saved = load_file(spec.clip.weights)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, saved[k])
    assert tokenizer(["one"]).shape == (1, 8)


def test_local_clip_with_wrong_weights_is_a_user_error(tiny_pack, tmp_path):
    from safetensors.torch import save_file

    spec = get_pack_spec(str(tiny_pack))
    bad = tmp_path / "bad.safetensors"
    save_file({"nope": torch.zeros(1)}, str(bad))
    with pytest.raises(UserError, match="do not fit"):
        load_clip({"config": spec.clip.config, "weights": str(bad)}, torch.device("cpu"))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError):
        resolve_device("gpu0")


def test_text_embeddings_are_computed_once(tiny_loaded, monkeypatch):
    calls = []
    real = tiny_loaded.clip.encode_text
    monkeypatch.setattr(tiny_loaded.clip, "encode_text", lambda t: calls.append(1) or real(t))
    tiny_loaded._text_cache.clear()
    cfg = clipterm.make_config(tiny_loaded.spec, method="contrastive", n=2, steps=5)
    clipterm.sample(tiny_loaded, cfg)
    assert len(calls) == 1


def test_preset_poster_is_the_seed_setting(tiny_pack):
    spec = get_pack_spec(str(tiny_pack))
    cfg = clipterm.make_config(spec, prompt="one", method="contrastive", preset="poster")
    assert (cfg.steps, cfg.n, cfg.batch, cfg.seed, cfg.scale) == (1000, 100, 100, 236, 100.0)
    assert cfg.clip_input == "xt" and cfg.seed_preprocess and cfg.grad_norm == "none"
    assert cfg.clip_x0 is False  # the seed's eps-form update never clipped x0
    assert cfg.distractors == ("zero", "two", "three")
    sph = clipterm.make_config(spec, prompt="one", method="spherical", preset="poster")
    assert sph.scale == 1000.0


def test_config_round_trip_and_validation(tiny_pack):
    spec = get_pack_spec(str(tiny_pack))
    v = clipterm.resolve(spec, method="spherical", prompt=" two ", distractors=("one",), n=3,
                         batch=2, steps=5, sampler="ddpm", scale=1.0)
    assert v.prompt == "two" and v.opt_iters is None and v.lr is None  # unused: not recorded
    assert clipterm.RunConfig.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    with pytest.raises(ConfigError, match="guide-from") as err:
        clipterm.RunConfig.from_dict({**v.to_dict(), "guide_from": 0})
    assert err.value.field == "guide_from"
    with pytest.raises(ConfigError) as err:
        clipterm.RunConfig.from_dict({**v.to_dict(), "steps": "5"})
    assert err.value.field == "steps"


def test_resolve_drops_and_names_the_options_a_method_ignores(tiny_pack):
    spec = get_pack_spec(str(tiny_pack))
    cfg = clipterm.resolve(spec, method="uncond", scale=5.0, lr=0.1, steps=3)
    assert cfg.scale is None and cfg.lr is None
    assert any("--scale" in w and "--lr" in w for w in cfg.warnings)
    opt = clipterm.resolve(spec, method="optimize", sampler="ddpm", eta=0.5, steps=3)
    assert (opt.sampler, opt.eta) == ("ddim", 0.0)
    assert any("--sampler" in w and "--eta" in w for w in opt.warnings)


def test_seed_preprocess_feeds_xt_unmapped(tiny_pack):
    from clipterm.guide import clip_view

    spec = get_pack_spec(str(tiny_pack))
    x = torch.linspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)
    seed_cfg = clipterm.resolve(spec, clip_input="xt", seed_preprocess=True, steps=2)
    ours = clipterm.resolve(spec, clip_input="xt", steps=2)
    assert torch.equal(clip_view(seed_cfg, x, x * 0), x)
    assert torch.equal(clip_view(ours, x, x * 0), (x + 1) / 2)


def test_result_images_are_uint8_in_range(tiny_loaded):
    cfg = clipterm.make_config(tiny_loaded.spec, method="uncond", n=2, steps=3)
    res = clipterm.sample(tiny_loaded, cfg)
    assert res.images.dtype == np.uint8 and res.images.shape == (2, 8, 8, 3)
