"""Shared fixtures: tiny randomly initialised models in the real formats, loaded by the real code.

Nothing here touches the network: HF_HUB_OFFLINE is set for the whole session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# as clipterm.cli.main does for the command line: the tests run torch in this process too,
# and spinning OpenMP threads slow a shared 2-core machine 5-20x (README, "Busy machines")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TINY_CAPTIONS = ["zero", "one", "two", "three"]


def build_tiny_models(root: Path, seed: int = 0, flat: bool = False, size: int = 8) -> Path:
    """Save a tiny UNet2DModel + DDPMScheduler and a tiny open_clip model under ``root``.

    Returns the pack JSON path. ``flat`` saves the diffusion model without subfolders.
    """
    import open_clip
    import torch
    from diffusers import DDPMScheduler, UNet2DModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    sched = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
        variance_type="fixed_large", clip_sample=True,
    )
    ddpm = root / "ddpm"
    if flat:
        unet.save_pretrained(ddpm)
        sched.save_pretrained(ddpm)
    else:
        unet.save_pretrained(ddpm / "unet")
        sched.save_pretrained(ddpm / "scheduler")

    clip_dir = root / "clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    name = f"tiny-test-clip-{size}"
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": size, "layers": 1, "width": 16, "patch_size": 4, "head_width": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    }
    (clip_dir / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(clip_dir / f"{name}.json")
    model = open_clip.create_model(name)
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(clip_dir / "open_clip_model.safetensors"))

    pack = {
        "name": "tiny",
        "description": "tiny random models for tests",
        "diffusion": "ddpm",
        "clip": {"config": f"clip/{name}.json", "weights": "clip/open_clip_model.safetensors"},
        "captions": TINY_CAPTIONS,
        "default_prompt": "one",
        "defaults": {
            "sampler": "ddpm", "steps": 10, "batch": 4, "scale": 0.0, "opt_iters": 2, "lr": 0.05,
            "methods": {"contrastive": {"scale": 0.5}, "spherical": {"scale": 0.5},
                        "optimize": {"steps": 4}},
        },
    }
    path = root / "pack.json"
    path.write_text(json.dumps(pack))
    return path


@pytest.fixture(scope="session")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a pack JSON with tiny random models (8x8 RGB)."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny_pack"))


@pytest.fixture(scope="session")
def tiny_loaded(tiny_pack: Path):
    from clipterm.models import load_pack

    return load_pack(str(tiny_pack), device="cpu")
