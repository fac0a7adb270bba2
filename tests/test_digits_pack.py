"""The embedded digits pack: data rendering, the shipped weights, the manifest, the training script."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipterm.data import (
    DIGIT_NAMES,
    class_index,
    digit_split,
    load_digit_images,
    real_digit_images,
)
from clipterm.judge import DigitJudge, load_judge, save_judge

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "clipterm" / "packs" / "digits"
CLIP_NAME = "clipterm-digits-clip"


@pytest.fixture(scope="module")
def heldout() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_digit_images(32)
    _, test_idx = digit_split(labels, seed=0)
    x = torch.from_numpy(images[test_idx].copy()).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(labels[test_idx].copy())


@pytest.fixture(scope="module")
def train_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "train_digits", ROOT / "scripts" / "train_digits.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- data


def test_rendering_shapes_range_and_layout() -> None:
    images, labels = load_digit_images(32)
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (1797,) and set(np.unique(labels).tolist()) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    # grey replicated to RGB, white digit centred on a black canvas (4-pixel black border at 32x32)
    assert np.array_equal(images[..., 0], images[..., 2])
    assert images[:, :4].max() == 0 and images[:, -4:].max() == 0
    assert images[:, :, :4].max() == 0 and images[:, :, -4:].max() == 0
    small, _ = load_digit_images(16)
    assert small.shape == (1797, 16, 16, 3)


def test_split_is_deterministic_disjoint_and_stratified() -> None:
    _, labels = load_digit_images(32)
    train_a, test_a = digit_split(labels, seed=0)
    train_b, test_b = digit_split(labels, seed=0)
    assert np.array_equal(train_a, train_b) and np.array_equal(test_a, test_b)
    assert not set(train_a.tolist()) & set(test_a.tolist())
    assert len(train_a) + len(test_a) == len(labels)
    for c in range(10):
        share = np.sum(labels[test_a] == c) / np.sum(labels == c)
        assert 0.18 < share < 0.22
    _, test_other = digit_split(labels, seed=1)
    assert not np.array_equal(test_a, test_other)


def test_real_digit_images_of_one_class() -> None:
    _, labels = load_digit_images(32)
    _, test_idx = digit_split(labels)
    sevens = real_digit_images("seven")
    assert sevens.dtype == np.uint8 and sevens.shape[1:] == (32, 32, 3)
    assert len(sevens) == int(np.sum(labels[test_idx] == 7))
    assert len(real_digit_images(7, split="all")) == int(np.sum(labels == 7))
    assert np.array_equal(real_digit_images("7"), sevens)
    assert class_index("Nine") == 9
    with pytest.raises(ValueError):
        class_index("eleven")
    with pytest.raises(ValueError):
        real_digit_images("one", split="validation")


# ---------------------------------------------------------------- shipped weights


def test_judge_loads_and_is_accurate(heldout: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = heldout
    judge = load_judge(PACK / "judge")
    assert not judge.training
    assert not any(p.requires_grad for p in judge.parameters())
    assert tuple(judge.config.class_names) == DIGIT_NAMES
    with torch.no_grad():
        logits = judge(x)
        feats = judge.features(x[:8])
    assert logits.shape == (len(x), 10)
    assert feats.shape == (8, judge.config.feature_dim) and 64 <= feats.shape[1] <= 128
    acc = float((logits.argmax(1) == y).float().mean())
    assert acc >= 0.97, acc


def test_judge_save_load_round_trip(tmp_path: Path) -> None:
    model = DigitJudge().eval()
    save_judge(model, tmp_path / "j")
    loaded = load_judge(tmp_path / "j")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)


def test_clip_loads_through_open_clip_and_classifies(
    heldout: tuple[torch.Tensor, torch.Tensor],
) -> None:
    import open_clip

    x, y = heldout
    open_clip.add_model_config(PACK / "clip" / f"{CLIP_NAME}.json")
    assert CLIP_NAME in open_clip.list_models()
    model, _, _ = open_clip.create_model_and_transforms(
        CLIP_NAME, pretrained=str(PACK / "clip" / "open_clip_model.safetensors")
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(CLIP_NAME)
    tokens = tokenizer(list(DIGIT_NAMES))
    assert tokens.shape == (10, 16)
    cfg = model.visual.preprocess_cfg
    assert cfg["size"] in (32, (32, 32))
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        text = F.normalize(model.encode_text(tokens), dim=-1)
        image = F.normalize(model.encode_image((x - mean) / std), dim=-1)
    acc = float(((image @ text.T).argmax(1) == y).float().mean())
    assert acc >= 0.90, acc


def test_ddpm_loads_with_diffusers() -> None:
    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(PACK / "ddpm", subfolder="unet")
    scheduler = DDPMScheduler.from_pretrained(PACK / "ddpm", subfolder="scheduler")
    assert unet.config.sample_size == 32 and unet.config.in_channels == 3
    assert scheduler.config.num_train_timesteps == 1000
    assert scheduler.config.beta_schedule == "linear"
    assert scheduler.config.beta_start == pytest.approx(1e-4)
    assert scheduler.config.beta_end == pytest.approx(0.02)
    assert scheduler.config.clip_sample is True
    assert scheduler.config.prediction_type == "epsilon"
    with torch.no_grad():
        eps = unet(torch.zeros(2, 3, 32, 32), torch.tensor([10, 900])).sample
    assert eps.shape == (2, 3, 32, 32) and torch.isfinite(eps).all()


def test_manifest_matches_files_and_budget() -> None:
    manifest = json.loads((PACK / "manifest.json").read_text(encoding="utf-8"))
    for rel, size in manifest["files"].items():
        assert (PACK / rel).stat().st_size == size, rel
    on_disk = {str(p.relative_to(PACK)) for p in PACK.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(manifest["files"])
    assert manifest["total_bytes"] == sum(manifest["files"].values()) < 20 * 1024 * 1024
    assert "quality" in manifest
    assert manifest["models"]["judge"]["heldout_accuracy"] >= 0.97
    assert manifest["models"]["clip"]["heldout_zero_shot_accuracy"] >= 0.90
    assert manifest["data"]["test_size"] == len(digit_split(load_digit_images(32)[1])[1])


def test_pack_registry_entry_resolves() -> None:
    from clipterm.packs import get_pack_spec

    spec = get_pack_spec("digits")
    assert spec.embedded and spec.tuned and spec.real_data == "sklearn-digits"
    assert spec.captions == DIGIT_NAMES and spec.default_prompt == "seven"
    assert spec.diffusion_is_local and Path(spec.diffusion, "unet").is_dir()
    assert spec.clip.kind == "files"
    assert Path(spec.clip.config).is_file() and Path(spec.clip.weights).is_file()
    assert spec.judge is not None and Path(spec.judge, "config.json").is_file()


# ---------------------------------------------------------------- training script smoke test


@pytest.mark.slow
def test_training_script_runs_at_tiny_size(train_script: ModuleType, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    out = tmp_path / "digits"
    judge = train_script.train_judge(
        out, seed=0, epochs=1, batch=16, lr=1e-3, device="cpu", log=False, max_steps=2
    )
    clip = train_script.train_clip(
        out, seed=0, epochs=1, batch=16, lr=1e-3, device="cpu", log=False, max_steps=2
    )
    ddpm = train_script.train_ddpm(
        out,
        seed=0,
        steps=2,
        batch=4,
        lr=1e-3,
        ema_decay=0.99,
        device="cpu",
        log=False,
        sample_check=2,
    )
    assert judge["steps"] == 2 and clip["steps"] == 2 and ddpm["steps"] == 2
    assert 0.0 <= clip["heldout_zero_shot_accuracy"] <= 1.0
    assert ddpm["unconditional_samples"]["n"] == 2
    args = argparse.Namespace(device="cpu", threads=2)
    manifest_path = train_script.write_manifest(
        out, {"judge": judge, "clip": clip, "ddpm": ddpm}, args
    )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for rel in (
        "judge/model.safetensors",
        "clip/open_clip_model.safetensors",
        "ddpm/unet/diffusion_pytorch_model.safetensors",
        "ddpm/scheduler/scheduler_config.json",
    ):
        assert rel in manifest["files"]
    assert set(manifest["models"]) == {"judge", "clip", "ddpm"}


# ---------------------------------------------------------------- guidance with the shipped pack


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """16 samples per method, 10 DDIM steps, seed 1 (the defaults were tuned on seed 0 at 50)."""
    import clipterm
    from clipterm.metrics import judge_scores

    out = tmp_path_factory.mktemp("digits-runs")
    pack = clipterm.load_pack("digits", device="cpu")
    runs = {}
    for method in ("uncond", "contrastive", "spherical"):
        res, run_dir = clipterm.generate("seven", model="digits", method=method, n=16, steps=10,
                                         seed=1, device="cpu", out=out)
        runs[method] = {"result": res, "run_dir": run_dir,
                        **judge_scores(pack.judge, res.images, 7)}
    return runs


@pytest.mark.slow
def test_shipped_pack_generates_a_run_folder(digits_runs: dict[str, dict]) -> None:
    res = digits_runs["contrastive"]["result"]
    run_dir = digits_runs["contrastive"]["run_dir"]
    assert res.images.shape == (16, 32, 32, 3) and res.images.dtype == np.uint8
    assert len(list(run_dir.glob("*.png"))) >= 16
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["method"] == "contrastive"


@pytest.mark.slow
def test_guidance_moves_the_judged_class_toward_the_target(digits_runs: dict[str, dict]) -> None:
    """Chance is 10% sevens. Measured at these settings: uncond 0/16, contrastive 14/16
    (judge confidence 0.90), spherical 8/16."""
    uncond, contrastive, spherical = (digits_runs[m] for m in ("uncond", "contrastive", "spherical"))
    assert uncond["target_share"] <= 0.25
    assert contrastive["target_share"] >= 0.6
    assert contrastive["target_share"] - uncond["target_share"] >= 0.4
    assert spherical["target_share"] >= 0.3
    # Guided samples still look like digits to the judge, not like adversarial noise.
    assert contrastive["confidence"] >= 0.75
    # CLIP's own probability of the target rises with guidance.
    assert (contrastive["result"].mean_target_prob
            > uncond["result"].mean_target_prob + 0.3)
