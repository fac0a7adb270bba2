"""Loading: safe weight formats only, the judge only when evaluation asks, Hub models from the
cache (as huggingface_hub lays it out, found through the environment at call time), downloads
of only what loading needs, CLIP specs that would build a random CLIP refused."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_models
from safetensors.torch import load_file

from clipterm.errors import DeviceError, ModelUnavailableError, UserError
from clipterm.models import (
    LoadedPack,
    _checked_train_steps,
    download_pack,
    load_clip,
    load_diffusion,
    load_pack,
    parse_clip_spec,
    resolve_device,
)
from clipterm.packs import get_pack_spec, hub
from tests.adversarial.harness import run_cli

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Payload:
    """A pickle that, if anything unpickled it with code execution allowed, creates a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_payload(path: Path, marker: Path, zip_format: bool) -> None:
    if zip_format:
        torch.save({"weight": Payload(marker)}, str(path))
    else:
        path.write_bytes(pickle.dumps({"weight": Payload(marker)}))


def cache_repo(cache: Path, repo_id: str, source: Path) -> Path:
    """Put the files of ``source`` into a Hugging Face cache as huggingface_hub would."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(source, repo / "snapshots" / COMMIT)
    return repo / "snapshots" / COMMIT


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the Hub fails the test."""
    import huggingface_hub

    def refuse(*a, **k):
        raise AssertionError("tried to reach the network")

    for name in ("list_repo_files", "repo_info", "model_info"):
        monkeypatch.setattr(huggingface_hub.HfApi, name, refuse)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture
def judged(tiny_pack, tmp_path) -> Path:
    """A copy of the tiny pack with a judge."""
    from clipterm.judge import DigitJudge, JudgeConfig, save_judge

    for sub in ("ddpm", "clip"):
        shutil.copytree(tiny_pack.parent / sub, tmp_path / sub)
    save_judge(DigitJudge(JudgeConfig(image_size=8, channels=(4,), feature_dim=4,
                                      class_names=("zero", "one", "two", "three"))),
               tmp_path / "judge")
    data = json.loads(tiny_pack.read_text())
    data.update(name="judged", judge="judge")
    (tmp_path / "pack.json").write_text(json.dumps(data))
    return tmp_path / "pack.json"


# ----------------------------------------------------------------------------- the judge
def test_generate_never_loads_the_judge(judged, tmp_path, monkeypatch, capsys):
    import clipterm.judge

    def refuse(*a, **k):
        raise AssertionError("generate loaded the judge")

    monkeypatch.setattr(clipterm.judge, "load_judge", refuse)
    done = run_cli(["generate", "--model", judged, "-n", "1", "--steps", "2", "--prompt", "two",
                    "--out", tmp_path / "out", "-q"], capsys)
    assert done.code == 0, done.err
    assert len(list((tmp_path / "out").iterdir())) == 1
    pack = load_pack(str(judged), device="cpu")
    assert not pack.judge_loaded


def test_the_judge_loads_once_when_evaluation_asks(judged):
    pack = load_pack(str(judged), device="cpu", cache=False)
    assert not pack.judge_loaded
    judge = pack.judge
    assert pack.judge_loaded and judge is pack.judge and judge is pack.load_judge()
    assert judge.config.class_names == ("zero", "one", "two", "three")
    assert not any(p.requires_grad for p in judge.parameters())


def test_a_broken_judge_fails_evaluation_only(judged):
    (judged.parent / "judge" / "config.json").write_text(json.dumps({"image_size": "big"}))
    pack = load_pack(str(judged), device="cpu", cache=False)  # generating still works
    with pytest.raises(UserError, match=r"judge config .*: image_size: must be a whole number"):
        pack.load_judge()
    assert not pack.judge_loaded  # a fixed judge loads on the next try


def test_a_pack_without_judge_has_none(tiny_loaded):
    assert tiny_loaded.judge is None


# ----------------------------------------------------------------------------- weight formats
def test_diffusers_is_told_to_use_safetensors(tiny_pack, monkeypatch):
    from diffusers import UNet2DModel

    seen = []
    real = UNet2DModel.from_pretrained.__func__

    def spy(cls, *a, **k):
        seen.append(k)
        return real(cls, *a, **k)

    monkeypatch.setattr(UNet2DModel, "from_pretrained", classmethod(spy))
    load_diffusion(str(tiny_pack.parent / "ddpm"), torch.device("cpu"))
    assert seen and seen[0]["use_safetensors"] is True and seen[0]["local_files_only"] is True


def test_bin_weights_load_through_weights_only_and_match(tiny_pack, tmp_path):
    shutil.copytree(tiny_pack.parent / "ddpm", tmp_path / "ddpm")
    unet_dir = tmp_path / "ddpm" / "unet"
    st = unet_dir / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(st)), str(unet_dir / "diffusion_pytorch_model.bin"))
    st.unlink()
    u_bin, _ = load_diffusion(str(tmp_path / "ddpm"), torch.device("cpu"))
    u_st, _ = load_diffusion(str(tiny_pack.parent / "ddpm"), torch.device("cpu"))
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(u_bin(x, 5).sample, u_st(x, 5).sample, rtol=0, atol=0)


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-zip", "raw-pickle"])
def test_a_crafted_pickle_is_refused_and_nothing_in_it_runs(tiny_pack, tmp_path, zip_format):
    marker = tmp_path / "pwned"
    shutil.copytree(tiny_pack.parent / "ddpm", tmp_path / "ddpm")
    unet_dir = tmp_path / "ddpm" / "unet"
    (unet_dir / "diffusion_pytorch_model.safetensors").unlink()
    write_payload(unet_dir / "diffusion_pytorch_model.bin", marker, zip_format)
    with pytest.raises(UserError, match="nothing in it was run"):
        load_diffusion(str(tmp_path / "ddpm"), torch.device("cpu"))
    assert not marker.exists()
    # the same file as CLIP weights
    spec = get_pack_spec(str(tiny_pack))
    with pytest.raises(UserError, match="nothing in it was run"):
        load_clip({"config": spec.clip.config, "weights": str(unet_dir / "diffusion_pytorch_model.bin")},
                  torch.device("cpu"))
    assert not marker.exists()
    # and the payload is real: plain pickle.load would have created the file
    if not zip_format:
        pickle.loads((unet_dir / "diffusion_pytorch_model.bin").read_bytes())
        assert marker.exists()


def test_clip_bin_weights_load_like_safetensors(tiny_pack, tmp_path):
    spec = get_pack_spec(str(tiny_pack))
    as_bin = tmp_path / "w.bin"
    torch.save(load_file(spec.clip.weights), str(as_bin))
    m_bin, tok, _ = load_clip({"config": spec.clip.config, "weights": str(as_bin)}, torch.device("cpu"))
    m_st, _, _ = load_clip(spec.clip, torch.device("cpu"))
    st = m_st.state_dict()
    assert m_bin.state_dict().keys() == st.keys()
    for k, v in m_bin.state_dict().items():
        torch.testing.assert_close(v, st[k], rtol=0, atol=0, msg=k)


# ----------------------------------------------------------------------------- CLIP specs
@pytest.mark.parametrize("spec", ["ViT-B-32", "ViT-B-32:", "ViT-B-32:  ", "/x/cfg.json", "cfg.json:"])
def test_a_clip_spec_without_weights_is_refused(spec):
    with pytest.raises(UserError, match="random weights"):
        parse_clip_spec(spec)


def test_clip_specs_parse_to_the_documented_forms():
    assert parse_clip_spec(" ViT-B-32:openai ") == {"model": "ViT-B-32", "pretrained": "openai"}
    assert parse_clip_spec("hf-hub:org/name") == {"model": "hf-hub:org/name"}
    with pytest.raises(UserError, match="empty"):
        parse_clip_spec("  ")
    with pytest.raises(UserError, match="names no folder"):
        parse_clip_spec("local-dir:")


@pytest.fixture
def tagged_clip(tiny_pack, tmp_path, monkeypatch):
    """A tiny architecture with a pretrained tag whose weights live in a fake Hub cache, as
    open_clip's tags do (QuickGELU and its own normalisation, like ViT-B-32:openai)."""
    import open_clip

    spec = get_pack_spec(str(tiny_pack))
    cfg_path = tmp_path / "tiny-tagged.json"
    shutil.copy(spec.clip.config, cfg_path)
    open_clip.add_model_config(cfg_path)
    real = open_clip.get_pretrained_cfg
    tag = {"hf_hub": "org/tiny-clip/", "quick_gelu": True, "mean": (0.5, 0.5, 0.5),
           "std": (0.25, 0.25, 0.25)}
    monkeypatch.setattr(open_clip, "get_pretrained_cfg",
                        lambda m, t: dict(tag) if (m, t) == ("tiny-tagged", "tagged") else real(m, t))
    cache = tmp_path / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(spec.clip.weights, src / "open_clip_model.safetensors")
    return cache, src


def test_a_pretrained_tag_loads_from_the_cache_with_its_settings(tagged_clip, no_network):
    import open_clip

    cache, src = tagged_clip
    cache_repo(cache, "org/tiny-clip", src)
    model, tok, name = load_clip("tiny-tagged:tagged", torch.device("cpu"))
    assert name == "tiny-tagged"
    acts = {type(m).__name__ for m in model.modules()}
    assert "QuickGELU" in acts  # the tag's activation, not the architecture's default GELU
    pack = LoadedPack(spec=None, device=torch.device("cpu"), unet=None, scheduler=None, clip=model,
                      tokenizer=tok, clip_name=name)
    mean, std = pack.clip_mean_std
    assert mean.flatten().tolist() == [0.5] * 3 and std.flatten().tolist() == [0.25] * 3
    saved = load_file(str(src / "open_clip_model.safetensors"))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, saved[k])
    assert isinstance(open_clip.get_tokenizer("tiny-tagged")(["x"]), torch.Tensor)


def test_a_pretrained_tag_not_downloaded_says_what_to_run(tagged_clip, no_network):
    with pytest.raises(ModelUnavailableError) as err:
        load_clip("tiny-tagged:tagged", torch.device("cpu"))
    msg = str(err.value)
    assert "`clipterm models --download tiny-tagged:tagged`" in msg
    assert "HF_HUB_OFFLINE is set" in msg and "\n" not in msg


def test_a_pretrained_tag_is_downloaded_online_safetensors_first(tagged_clip, monkeypatch):
    cache, src = tagged_clip
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    asked = []

    def fake_download(repo, candidates):
        asked.append((repo, candidates))
        return cache_repo(cache, repo, src) / "open_clip_model.safetensors"

    monkeypatch.setattr(hub, "download_file", fake_download)
    model, _, _ = load_clip("tiny-tagged:tagged", torch.device("cpu"))
    assert asked == [("org/tiny-clip", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])]


# ----------------------------------------------------------------------------- Hub models
def test_a_repo_id_loads_offline_from_the_cache_found_at_call_time(tmp_path, monkeypatch,
                                                                    no_network):
    build_tiny_models(tmp_path / "src", flat=True)
    cache = tmp_path / "cache"
    cache_repo(cache, "org/tiny-ddpm", tmp_path / "src" / "ddpm")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    clip = f"{tmp_path}/src/clip/tiny-test-clip-8.json:{tmp_path}/src/clip/open_clip_model.safetensors"
    pack = load_pack("org/tiny-ddpm", device="cpu", clip=clip, cache=False)
    assert pack.image_size == 8 and pack.train_steps == 1000 and pack.spec.train_steps_declared


def test_a_missing_repo_says_how_to_get_it(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="`clipterm models --download org/none`"):
        load_pack("org/none", device="cpu", cache=False)


def test_train_steps_have_one_source():
    spec = get_pack_spec("cifar10")
    with pytest.raises(UserError, match="says train_steps 1000, but .* scheduler has 4000"):
        _checked_train_steps(spec, 4000)
    guessed = get_pack_spec("org/never-downloaded")
    fixed = _checked_train_steps(guessed, 500)
    assert fixed.train_steps == 500 and fixed.defaults.for_method("contrastive").steps == 500
    assert fixed.defaults["train_steps"] == 500


# ----------------------------------------------------------------------------- downloads
def test_downloads_fetch_only_what_loading_needs(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    files = {
        "google/ddpm-cifar10-32": ["config.json", "scheduler_config.json", "model_index.json",
                                   "diffusion_pytorch_model.bin",
                                   "diffusion_pytorch_model.safetensors",
                                   "diffusion_pytorch_model.fp16.safetensors", "README.md"],
        "timm/vit_base_patch32_clip_224.openai": ["open_clip_pytorch_model.bin",
                                                  "open_clip_model.safetensors",
                                                  "open_clip_config.json"],
    }
    fetched = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo: files[repo])

    def snapshot(repo, allow_patterns, cache_dir):
        fetched[repo] = sorted(allow_patterns)
        assert cache_dir == str(tmp_path)
        return str(tmp_path / repo)

    def one_file(repo, filename, cache_dir):
        fetched[repo] = [filename]
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", one_file)
    assert download_pack("cifar10") == ["google/ddpm-cifar10-32", "ViT-B-32:openai"]
    assert fetched == {
        "google/ddpm-cifar10-32": ["config.json", "diffusion_pytorch_model.safetensors",
                                   "model_index.json", "scheduler_config.json"],
        "timm/vit_base_patch32_clip_224.openai": ["open_clip_model.safetensors"],
    }


def test_bin_is_fetched_only_where_a_folder_has_nothing_else():
    assert hub.select_files(["unet/config.json", "unet/diffusion_pytorch_model.bin",
                             "vae/x.safetensors", "vae/x.bin", "scheduler/scheduler_config.json",
                             "unet/diffusion_pytorch_model.non_ema.bin"]) == [
        "scheduler/scheduler_config.json", "unet/config.json",
        "unet/diffusion_pytorch_model.bin", "vae/x.safetensors"]


def test_an_embedded_pack_needs_no_download(no_network):
    assert download_pack("digits") == []


def test_offline_download_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE is set"):
        download_pack("cifar10")


@pytest.mark.parametrize(("env", "var"), [
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE"),
    ({"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "yes"}, "TRANSFORMERS_OFFLINE"),
    ({"TRANSFORMERS_OFFLINE": "ON"}, "TRANSFORMERS_OFFLINE"),
    ({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, None),  # as huggingface_hub reads it
    ({"HF_HUB_OFFLINE": "true"}, "HF_HUB_OFFLINE"),
])
def test_offline_detection_follows_huggingface_hub(monkeypatch, env, var):
    from huggingface_hub import constants

    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert hub.offline_variable() == var
    expected = constants._is_true(os.environ.get("HF_HUB_OFFLINE")
                                  or os.environ.get("TRANSFORMERS_OFFLINE"))
    assert hub.offline() == expected


def test_cache_location_follows_huggingface_hub(monkeypatch, tmp_path):
    for k in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_root() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.cache_root() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert hub.cache_root() == tmp_path / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "new"))
    assert hub.cache_root() == tmp_path / "new"


# ----------------------------------------------------------------------------- devices
def test_device_strings(monkeypatch):
    assert resolve_device(" CPU ").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    for bad, needle in [("cuda", "CUDA is not available"), ("cuda:x", "bad device"),
                        ("cuda:-1", "bad device"), ("cuda:\u0661", "bad device"),
                        ("", "empty"), ("gpu", "unknown device")]:
        with pytest.raises(DeviceError, match=needle):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match="has 1 CUDA device"):
        resolve_device("cuda:1")


# ----------------------------------------------------------------------------- what a user sees
@pytest.mark.slow
def test_missing_cifar10_weights_print_exactly_one_line(tmp_path):
    """The first thing a user sees without the cifar10 weights is clipterm's own line (no
    huggingface_hub deprecation warning before it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "cache"))
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run(
        [sys.executable, "-m", "clipterm", "generate", "--model", "cifar10", "--prompt",
         "airplane", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("clipterm: error: "), out.stderr
    assert "`clipterm models --download cifar10`" in out.stderr
    assert not (tmp_path / "out").exists()


def test_no_library_warning_while_loading(tiny_pack, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_pack(str(tiny_pack), device="cpu", cache=False)
        with pytest.raises(ModelUnavailableError):
            load_pack("cifar10", device="cpu", cache=False)
    assert [str(w.message) for w in caught] == []
