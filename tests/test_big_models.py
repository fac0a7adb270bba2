"""The 256x256 packs, `.bin`-only repos converted once to safetensors, learned-range models, and
large samples shown inline: tiny 64x64 models in the real formats through the real loaders."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat

import numpy as np
import pytest
import torch

from clipterm.errors import UserError
from clipterm.models import download_pack, load_diffusion, load_pack
from clipterm.packs import get_pack_spec, list_pack_specs
from clipterm.packs.listing import pack_rows, render_pack_rows
from clipterm.sampling import sample
from clipterm.schedule import ddpm_step, make_schedule
from clipterm.seeds import STREAM_STEP_NOISE, initial_noise, sample_seed
from tests.tiny_big import SIZE, build_unet_folder, cache_repo, write_pack

BIG_PACKS = ("church", "bedroom", "cat", "celebahq")
REPO = "someone/ddpm-tiny-bin-64"


# ----------------------------------------------------------------------------- the packs
@pytest.mark.parametrize("name", BIG_PACKS)
def test_the_256_packs_are_in_domain_small_and_say_they_are_untuned(name):
    spec = get_pack_spec(name)
    assert spec.diffusion == f"google/ddpm-ema-{name}-256" and spec.vocabulary == "open"
    assert not spec.tuned and "untuned" in spec.description
    assert spec.clip.label == "ViT-B-32:openai" and spec.download_mb and spec.download_mb > 455
    assert len(spec.captions) >= 6 and spec.default_prompt == spec.captions[0]
    for method in ("uncond", "spherical", "contrastive"):
        d = spec.defaults.for_method(method)
        assert d.sampler == "ddim" and 50 <= d.steps <= 250 and d.batch <= 8
        assert d.cutouts > 0 and d.grad_checkpointing
    assert spec.defaults.for_method("contrastive").scale > 0
    # a built-in pack's repo id names that pack (its captions and defaults, not cifar10's)
    assert get_pack_spec(spec.diffusion).name == name


def test_the_256_architecture_is_the_114m_parameter_ddpm():
    import importlib.util

    from clipterm.packs import PACKS_DIR

    path = PACKS_DIR / "architectures" / "ddpm_256_unet.json"
    cfg = {k: v for k, v in json.loads(path.read_text()).items()
           if not k.startswith("_") and k != "scheduler"}
    from diffusers import UNet2DModel

    with torch.device("meta"):
        unet = UNet2DModel(**cfg)
    assert sum(p.numel() for p in unet.parameters()) == 113_673_219
    assert importlib.util.find_spec("clipterm") is not None


def test_models_lists_the_256_packs_with_their_download_size(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    text = "\n".join(render_pack_rows(pack_rows()))
    for name in BIG_PACKS:
        assert f"{name:<10} not downloaded, about 1060 MB" in text
        assert f"get it:    clipterm models --download {name}" in text


def test_the_closed_vocabulary_still_suggests_cifar10_first():
    from clipterm.errors import ConfigError

    with pytest.raises(ConfigError, match="use --model cifar10"):
        get_pack_spec("digits").check_vocabulary("a red car")


def test_download_of_a_256_pack_fetches_only_what_loading_needs(monkeypatch, tmp_path):
    """A repo holding .bin weights only (and a non-EMA twin's file): the configs and the .bin;
    the CLIP's safetensors."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    files = {
        "google/ddpm-ema-church-256": ["config.json", "scheduler_config.json", "model_index.json",
                                       "diffusion_pytorch_model.bin", "README.md",
                                       "diffusion_pytorch_model.non_ema.bin", "images/x.png"],
        "timm/vit_base_patch32_clip_224.openai": ["open_clip_pytorch_model.bin",
                                                  "open_clip_model.safetensors",
                                                  "open_clip_config.json"],
    }
    fetched = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo: files[repo])

    def snapshot(repo, allow_patterns, cache_dir):
        fetched[repo] = sorted(allow_patterns)
        return str(tmp_path / repo)

    def one_file(repo, filename, cache_dir):
        fetched[repo] = [filename]
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", one_file)
    assert download_pack("church") == ["google/ddpm-ema-church-256", "ViT-B-32:openai"]
    assert fetched == {
        "google/ddpm-ema-church-256": ["config.json", "diffusion_pytorch_model.bin",
                                       "model_index.json", "scheduler_config.json"],
        "timm/vit_base_patch32_clip_224.openai": ["open_clip_model.safetensors"],
    }


# ----------------------------------------------------------------------------- .bin repos
@pytest.fixture
def bin_cache(tmp_path, monkeypatch):
    """A .bin-only diffusers repo in a Hugging Face cache (blobs + snapshot links), and the
    safetensors original it was made from."""
    src = build_unet_folder(tmp_path / "src")
    st_copy = tmp_path / "reference"
    shutil.copytree(src, st_copy)
    from safetensors.torch import load_file

    torch.save(load_file(str(src / "diffusion_pytorch_model.safetensors")),
               str(src / "diffusion_pytorch_model.bin"))
    (src / "diffusion_pytorch_model.safetensors").unlink()
    cache = tmp_path / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snap = cache_repo(cache, REPO, src)
    return snap, st_copy


def _outputs(unet) -> torch.Tensor:
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return unet(x, 500).sample


def test_a_bin_repo_is_converted_once_and_then_loads_as_safetensors(bin_cache, monkeypatch):
    snap, reference = bin_cache
    old_umask = os.umask(0o027)
    try:
        unet, _ = load_diffusion(REPO, torch.device("cpu"))
    finally:
        os.umask(old_umask)
    converted = snap / "diffusion_pytorch_model.safetensors"
    assert converted.is_file() and not converted.is_symlink()
    assert stat.S_IMODE(converted.stat().st_mode) == 0o640  # the umask's mode
    assert not [p for p in snap.iterdir() if p.name.endswith(".part")]
    ref, _ = load_diffusion(str(reference), torch.device("cpu"))
    assert torch.equal(_outputs(unet), _outputs(ref))
    # the second load reads the safetensors: nothing is unpickled
    import clipterm.models as models

    def no_pickles(*a, **k):
        raise AssertionError("the .bin was read again")

    monkeypatch.setattr(models, "read_pickled_state_dict", no_pickles)
    monkeypatch.setattr(torch, "load", no_pickles)
    again, _ = load_diffusion(REPO, torch.device("cpu"))
    assert torch.equal(_outputs(again), _outputs(ref))


class Payload:
    """A pickle that, unpickled with code execution allowed, creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-zip", "raw-pickle"])
def test_a_crafted_bin_in_the_cache_runs_nothing_and_leaves_nothing(bin_cache, tmp_path,
                                                                    zip_format):
    snap, _ = bin_cache
    marker = tmp_path / "pwned"
    blob = (snap / "diffusion_pytorch_model.bin").resolve()
    if zip_format:
        torch.save({"conv_in.weight": Payload(marker)}, str(blob))
    else:
        blob.write_bytes(pickle.dumps({"conv_in.weight": Payload(marker)}))
    before = sorted(p.name for p in snap.iterdir())
    with pytest.raises(UserError, match="nothing in it was run"):
        load_diffusion(REPO, torch.device("cpu"))
    assert not marker.exists()
    assert sorted(p.name for p in snap.iterdir()) == before  # no safetensors, no .part


def test_a_users_bin_folder_is_loaded_without_writing_into_it(tmp_path):
    folder = build_unet_folder(tmp_path / "mine", bin_only=True)
    before = sorted(p.name for p in folder.iterdir())
    ref = build_unet_folder(tmp_path / "ref")
    unet, _ = load_diffusion(str(folder), torch.device("cpu"))
    assert sorted(p.name for p in folder.iterdir()) == before
    assert torch.equal(_outputs(unet), _outputs(load_diffusion(str(ref), torch.device("cpu"))[0]))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_cache_still_loads_converting_for_this_load_only(bin_cache):
    snap, reference = bin_cache
    mode = stat.S_IMODE(snap.stat().st_mode)
    snap.chmod(0o555)
    try:
        unet, _ = load_diffusion(REPO, torch.device("cpu"))
        assert not (snap / "diffusion_pytorch_model.safetensors").exists()
    finally:
        snap.chmod(mode)
    assert torch.equal(_outputs(unet), _outputs(load_diffusion(str(reference),
                                                               torch.device("cpu"))[0]))


# ----------------------------------------------------------------------------- learned range
@pytest.mark.parametrize("steps", [1000, 25])
def test_the_learned_range_step_equals_diffusers(steps):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                        beta_end=0.02, variance_type="learned_range", clip_sample=True)
    ref.set_timesteps(steps)
    sched = make_schedule(ref, "ddpm", steps, torch.device("cpu"))
    torch.manual_seed(0)
    x = torch.randn(3, 3, 8, 8) * 1.5
    out = torch.cat([torch.randn(3, 3, 8, 8), torch.rand(3, 3, 8, 8) * 2 - 1], dim=1)
    for k in (0, len(sched) // 2, len(sched) - 2, len(sched) - 1):
        t = sched.timesteps[k]
        gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
        expected = ref.step(out, t, x, generator=gens).prev_sample
        gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
        noise = torch.cat([torch.randn((1, 3, 8, 8), generator=g) for g in gens])
        got, _ = ddpm_step(x, out, sched.abar[k], sched.abar_prev[k], t, noise,
                           sched.variance_type, sched.clip_sample)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the variance output matters: another v, another step
    k = len(sched) // 2
    noise = torch.randn(3, 3, 8, 8)
    a, _ = ddpm_step(x, out, sched.abar[k], sched.abar_prev[k], sched.timesteps[k], noise,
                     "learned_range", None)
    flipped = torch.cat([out[:, :3], -out[:, 3:]], dim=1)
    b, _ = ddpm_step(x, flipped, sched.abar[k], sched.abar_prev[k], sched.timesteps[k], noise,
                     "learned_range", None)
    assert not torch.allclose(a, b)


@pytest.fixture(scope="module")
def learned_pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned")
    build_unet_folder(root / "ddpm", learned_range=True)
    return load_pack(str(write_pack(root, "ddpm", sampler="ddpm")), device="cpu", cache=False)


@pytest.mark.slow
def test_a_learned_range_model_samples_as_a_diffusers_loop_does(learned_pack):
    """The whole unguided DDPM chain of a 6-channel model against DDPMScheduler.step."""
    from diffusers import DDPMScheduler

    from clipterm.config import resolve
    from clipterm.reporting import to_uint8

    pack = learned_pack
    assert pack.unet.config.out_channels == 6
    cfg = resolve(pack.spec, method="uncond", n=2, batch=2, steps=10, sampler="ddpm", seed=5)
    ours = sample(pack, cfg).images
    ref = DDPMScheduler.from_config(pack.scheduler.config)
    ref.set_timesteps(10)
    x = initial_noise(5, [0, 1], (3, SIZE, SIZE), torch.device("cpu"))
    gens = [torch.Generator().manual_seed(sample_seed(5, i, STREAM_STEP_NOISE)) for i in (0, 1)]
    with torch.no_grad():
        for t in ref.timesteps:
            x = ref.step(pack.unet(x, t).sample, t, x, generator=gens).prev_sample
    diff = np.abs(ours.astype(int) - to_uint8(x).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("method", ["contrastive", "spherical"])
def test_a_learned_range_model_is_guided_with_either_sampler(learned_pack, method):
    from clipterm.config import resolve

    for sampler in ("ddpm", "ddim"):
        cfg = resolve(learned_pack.spec, method=method, n=2, batch=2, steps=4, sampler=sampler,
                      cutouts=2)
        result = sample(learned_pack, cfg)
        assert result.images.shape == (2, SIZE, SIZE, 3) and not result.nonfinite_samples


@pytest.mark.parametrize(("unet_out", "variance", "needle"), [
    (6, "fixed_small", "has 6 output channels (a learned variance), but its scheduler's "
                       "variance_type is 'fixed_small'"),
    (3, "learned_range", "learns the variance (variance_type learned_range), but its UNet has "
                         "3 output channels, not 6"),
])
def test_a_variance_output_and_scheduler_that_disagree_are_refused(tmp_path, unet_out, variance,
                                                                   needle):
    folder = build_unet_folder(tmp_path / "m", learned_range=unet_out == 6)
    cfg_path = folder / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["variance_type"] = variance
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(UserError) as err:
        load_diffusion(str(folder), torch.device("cpu"))
    assert needle in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- previews
def test_the_inline_grid_area_averages_large_samples():
    """term-image shrinks with PIL's BOX filter: a one-pixel checkerboard shows as grey cells,
    where nearest-neighbour sampling would show black or white."""
    import re
    import warnings

    from PIL import Image
    from term_image.image import BlockImage

    warnings.filterwarnings("ignore", message=".*not running within a terminal.*")
    board = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)
    text = str(BlockImage(Image.fromarray(np.stack([board] * 3, -1)), width=32))
    colours = set(re.findall(r"[34]8;2;(\d+);(\d+);(\d+)", text))
    assert colours and all(abs(int(c) - 128) <= 2 for rgb in colours for c in rgb), colours


def test_every_builtin_pack_reads():
    names = {s.name for s in list_pack_specs()}
    assert set(BIG_PACKS) <= names


# ----------------------------------------------------------------------------- the benchmark
def test_the_256_benchmark_script_writes_every_configuration(tmp_path):
    """scripts/bench_256.py on a tiny architecture: one row per (checkpointing, cutouts), with
    seconds and memory; nothing here is timed."""
    import importlib.util

    from clipterm.packs import PACKS_DIR

    path = PACKS_DIR.parents[1] / "scripts" / "bench_256.py"
    spec = importlib.util.spec_from_file_location("bench_256", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "b.json"
    assert script.main(["--tiny", "--in-process", "--cutouts", "0,2", "--warmup", "0",
                        "--timed", "1", "--no-flops", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["checkpointing"], r["cutouts"], r["views"]) for r in rows] == [
        (False, 0, 1), (False, 2, 3), (True, 0, 1), (True, 2, 3)]
    assert all(r["finite"] and r["s_per_step"] > 0 and r["peak_bytes"] > 0 for r in rows)
    table = out.with_suffix(".md").read_text()
    assert table.count("\n") == 2 + len(rows) and "| on | 2 | 3 |" in table
