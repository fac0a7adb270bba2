"""Packs as typed, schema-checked data: the built-in packs, typed defaults, one source of
train_steps, closed vocabularies, the default pack, listing packs without raising."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clipterm.errors import ConfigError, UserError
from clipterm.packs import (
    PACKS_DIR,
    builtin_pack_names,
    default_pack_name,
    get_pack_spec,
    list_pack_specs,
    list_packs,
)
from clipterm.packs.listing import pack_rows, render_pack_rows
from clipterm.packs.spec import MethodDefaults, PackDefaults


def write_pack(folder: Path, tiny_pack: Path, **changes) -> Path:
    """A copy of the tiny pack in ``folder`` with ``changes`` to its JSON."""
    for sub in ("ddpm", "clip"):
        shutil.copytree(tiny_pack.parent / sub, folder / sub)
    data = json.loads(tiny_pack.read_text())
    data.update(changes)
    path = folder / "pack.json"
    path.write_text(json.dumps(data))
    return path


def fake_cached_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry laid out as huggingface_hub lays it out."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    for name, data in files.items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(data)
    return snap


# ----------------------------------------------------------------------------- built-in packs
def test_builtin_packs_are_valid_and_typed():
    specs = {s.name: s for s in list_pack_specs()}
    assert set(specs) == {"bedroom", "cat", "celebahq", "church", "cifar10", "digits"} == set(
        builtin_pack_names())
    digits, cifar = specs["digits"], specs["cifar10"]
    assert digits.vocabulary == "closed" and cifar.vocabulary == "open"
    assert digits.train_steps == cifar.train_steps == 1000
    # typed per method: the digits pack's tuned settings
    assert digits.defaults.for_method("contrastive") == MethodDefaults(
        sampler="ddim", steps=50, batch=100, scale=0.1, opt_iters=10, lr=0.05, grad_norm="rms")
    assert digits.defaults.for_method("spherical").grad_norm == "none"
    assert digits.defaults.for_method("spherical").scale == 20.0
    assert digits.defaults.for_method("optimize").steps == 10
    assert digits.defaults.for_method("uncond").scale == 0.0
    assert cifar.defaults.for_method("optimize").steps == 100
    assert cifar.download_mb == 750 and digits.download_mb is None


def test_defaults_still_read_as_the_json_shaped_mapping():
    """Code that reads ``spec.defaults`` as a dict (config.resolve, the form) keeps working."""
    d = get_pack_spec("digits").defaults
    assert isinstance(d, PackDefaults)
    assert d["steps"] == 50 and d.get("batch", 1) == 100 and d.get("nope", 7) == 7
    assert d["methods"]["spherical"]["grad_norm"] == "none"
    assert d.get("train_steps") == 1000
    assert dict(d)["sampler"] == "ddim"


def test_config_resolution_is_unchanged_by_typed_defaults():
    from clipterm.api import make_config

    spec = get_pack_spec("digits")
    sph = make_config(spec, prompt="three", method="spherical")
    con = make_config(spec, prompt="three", method="contrastive")
    opt = make_config(spec, prompt="three", method="optimize")
    assert (sph.steps, sph.sampler, sph.scale, sph.grad_norm) == (50, "ddim", 20.0, "none")
    assert (con.scale, con.grad_norm) == (0.1, "rms")
    assert (opt.steps, opt.opt_iters, opt.lr) == (10, 10, 0.05)


def test_cifar10_classes_are_defined_once_and_match_the_pack():
    from clipterm import packs, realdata

    assert not hasattr(packs, "CIFAR10_CLASSES")
    assert get_pack_spec("cifar10").captions == realdata.CIFAR10_CLASSES


def test_the_cifar10_packs_hub_repo_is_open_clips_for_the_tag():
    """The pack names the CLIP's Hub repo as data (so `clipterm models` needs no open_clip):
    it must be the repo open_clip itself uses for ViT-B-32:openai."""
    import open_clip

    clip = get_pack_spec("cifar10").clip
    cfg = open_clip.get_pretrained_cfg(clip.model, clip.pretrained)
    assert cfg["hf_hub"].rstrip("/") == clip.hf_hub


def test_digits_paths_lie_inside_the_package():
    spec = get_pack_spec("digits")
    for p in (spec.diffusion, spec.clip.config, spec.clip.weights, spec.judge):
        assert Path(p).resolve().is_relative_to(PACKS_DIR)


# ----------------------------------------------------------------------------- user packs
def test_a_user_pack_resolves_paths_inside_its_folder(tiny_pack, tmp_path):
    path = write_pack(tmp_path, tiny_pack, vocabulary="closed", default_prompt="two")
    spec = get_pack_spec(str(path))
    assert spec.diffusion == str(tmp_path / "ddpm")
    assert spec.clip.kind == "files" and Path(spec.clip.weights).parent == tmp_path / "clip"
    assert spec.default_prompt == "two" and spec.train_steps == 1000
    assert get_pack_spec(str(tmp_path)).source == str(path)  # the folder holding pack.json


def test_train_steps_come_from_the_scheduler_config(tiny_pack, tmp_path):
    path = write_pack(tmp_path, tiny_pack)
    sched = tmp_path / "ddpm" / "scheduler" / "scheduler_config.json"
    cfg = json.loads(sched.read_text())
    cfg["num_train_timesteps"] = 400
    sched.write_text(json.dumps(cfg))
    spec = get_pack_spec(str(path))
    assert spec.train_steps == 400 and spec.defaults["train_steps"] == 400


def test_default_steps_above_train_steps_are_refused(tiny_pack, tmp_path):
    data = json.loads(tiny_pack.read_text())
    data["defaults"]["methods"]["optimize"]["steps"] = 1001
    path = write_pack(tmp_path, tiny_pack, defaults=data["defaults"])
    with pytest.raises(UserError, match=r"defaults\.methods\.optimize\.steps: 1001 is more"):
        get_pack_spec(str(path))


def test_a_pack_without_steps_defaults_to_its_training_steps(tiny_pack, tmp_path):
    path = write_pack(tmp_path, tiny_pack, defaults={})
    d = get_pack_spec(str(path)).defaults.for_method("contrastive")
    assert (d.steps, d.sampler, d.batch, d.grad_norm) == (1000, "ddpm", 100, "rms")


def test_a_bare_repo_id_guesses_train_steps_until_loaded():
    spec = get_pack_spec("org/some-ddpm")
    assert spec.diffusion == "org/some-ddpm" and not spec.train_steps_declared
    assert spec.captions == get_pack_spec("cifar10").captions


# ----------------------------------------------------------------------------- vocabulary
def test_closed_vocabulary_accepts_its_captions_in_any_case():
    spec = get_pack_spec("digits")
    spec.check_vocabulary(" Seven ", ("ONE", "two"))
    assert spec.knows("nine") and not spec.knows("airplane")
    get_pack_spec("cifar10").check_vocabulary("a red sports car", ("a cat",))


def test_closed_vocabulary_names_the_pack_that_fits():
    with pytest.raises(ConfigError) as err:
        get_pack_spec("digits").check_vocabulary("airplane")
    msg = str(err.value)
    assert "'airplane'" in msg and "--model cifar10" in msg
    assert "`clipterm models --download cifar10`" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="distractor 'dog'"):
        get_pack_spec("digits").check_vocabulary("seven", ("one", "dog"))


def test_vocabulary_suggestion_drops_the_download_once_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _fake_cifar10_cache(tmp_path)
    with pytest.raises(ConfigError) as err:
        get_pack_spec("digits").check_vocabulary("a castle")
    assert "use --model cifar10 (its CLIP reads any prompt)" in str(err.value)
    assert "--download" not in str(err.value)


# ----------------------------------------------------------------------------- the default pack
def _fake_cifar10_cache(cache: Path) -> None:
    fake_cached_repo(cache, "google/ddpm-cifar10-32", {
        "config.json": b"{}", "diffusion_pytorch_model.safetensors": b"x",
        "scheduler_config.json": b'{"num_train_timesteps": 1000}'})
    fake_cached_repo(cache, "timm/vit_base_patch32_clip_224.openai",
                     {"open_clip_model.safetensors": b"x"})


def test_default_pack_is_digits_without_the_cifar10_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert default_pack_name() == "digits"
    fake_cached_repo(tmp_path, "google/ddpm-cifar10-32", {  # the DDPM alone is not enough
        "config.json": b"{}", "diffusion_pytorch_model.safetensors": b"x",
        "scheduler_config.json": b"{}"})
    assert default_pack_name() == "digits"


def test_default_pack_is_cifar10_when_its_weights_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _fake_cifar10_cache(tmp_path)
    assert default_pack_name() == "cifar10"
    rows = {r["name"]: r for r in pack_rows()}
    assert rows["cifar10"]["default"] and not rows["digits"]["default"]


@pytest.mark.parametrize("setting", ["file", "below-file"])
def test_default_pack_survives_a_cache_setting_that_points_at_a_file(tmp_path, monkeypatch,
                                                                      setting):
    f = tmp_path / "f"
    f.write_text("x")
    monkeypatch.setenv("HF_HUB_CACHE", str(f if setting == "file" else f / "hub"))
    assert default_pack_name() == "digits"


def test_commands_without_model_use_the_default_pack(tmp_path, monkeypatch, capsys):
    """No --model: digits without the cifar10 weights, cifar10 once they are in the cache."""
    from tests.adversarial.harness import run_cli

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    args = ["generate", "--prompt", "airplane", "-n", "1", "--out", str(tmp_path / "out")]
    o = run_cli(args, capsys)
    assert o.code == 2 and "the digits pack only knows" in o.err
    _fake_cifar10_cache(tmp_path / "cache")  # placeholder files: loading them must fail
    o = run_cli(args, capsys)
    assert o.code == 2 and "models--google--ddpm-cifar10-32" in o.err, o.err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- listing
def test_models_lists_download_size_and_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    lines = render_pack_rows(pack_rows())
    text = "\n".join(lines)
    assert "cifar10    not downloaded, about 750 MB" in text
    assert "digits     always available (embedded)  [default]" in text
    assert "get it:    clipterm models --download cifar10" in text


def test_list_packs_never_raises_on_broken_user_packs(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_bytes(b"\xff\xfe{")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"diffusion": "x/y", "captions": 5}))
    entries = list_packs([str(bad_json), str(wrong), str(tmp_path / "gone.json"), "digits"])
    by_name = {e.name: e for e in entries}
    builtin = builtin_pack_names()
    assert [e.name for e in entries[:len(builtin)]] == builtin  # built-ins first, once
    assert [e.name for e in entries].count("digits") == 1
    assert by_name["digits"].ok and by_name["digits"].available
    assert "not UTF-8" in by_name[str(bad_json)].error
    assert "captions: must be a list" in by_name[str(wrong)].error
    assert "not found" in by_name[str(tmp_path / "gone.json")].error
    assert all("\n" not in (e.error or "") for e in entries)


def test_list_packs_turns_even_a_bug_into_an_entry(monkeypatch):
    import clipterm.packs as packs

    def boom(name):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(packs, "get_pack_spec", boom)
    (entry, *_) = packs.list_packs()
    assert entry.spec is None and entry.error == "RuntimeError: unexpected"


def test_models_command_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys\nfrom clipterm.cli import main\ntry:\n    main(['models', '--json'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'open_clip', 'huggingface_hub') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
