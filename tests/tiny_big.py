"""Tiny 64x64 stand-ins for the 256x256 models, in the real formats: a diffusers UNet2DModel +
DDPMScheduler (flat, as the google/ddpm-ema-*-256 repos are laid out; safetensors or a ``.bin``
pickle; optionally with a learned-range variance) and an open_clip CLIP with a 16x16 input, so
that CLIP's input is smaller than the image, as 224 is smaller than 256."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
CAPTIONS = ["a gothic cathedral", "a wooden chapel", "a church at night", "a church in snow"]
SIZE = 64
CLIP_SIZE = 16


def build_unet_folder(folder: Path, *, learned_range: bool = False, bin_only: bool = False,
                      seed: int = 0) -> Path:
    """A flat diffusers folder: config.json, scheduler_config.json and the UNet's weights."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=SIZE, in_channels=3, out_channels=6 if learned_range else 3,
        layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )
    with torch.no_grad():  # a non-trivial variance output: the last conv's bias moves v off 0
        unet.conv_out.bias.normal_(0, 0.3)
    sched = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
        variance_type="learned_range" if learned_range else "fixed_small", clip_sample=True,
    )
    unet.save_pretrained(folder)
    sched.save_pretrained(folder)
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDPMScheduler"],
         "unet": ["diffusers", "UNet2DModel"]}))
    if bin_only:
        from safetensors.torch import load_file

        st = folder / "diffusion_pytorch_model.safetensors"
        torch.save(load_file(str(st)), str(folder / "diffusion_pytorch_model.bin"))
        st.unlink()
    return folder


def build_clip(folder: Path) -> tuple[Path, Path]:
    """(config, weights) of a tiny open_clip CLIP with a 16x16 input."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    name = "tiny-big-test-clip"
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": CLIP_SIZE, "layers": 1, "width": 16, "patch_size": 4,
                       "head_width": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2,
                     "layers": 1},
    }
    config = folder / f"{name}.json"
    config.write_text(json.dumps(cfg))
    open_clip.add_model_config(config)
    torch.manual_seed(1)
    model = open_clip.create_model(name)
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
    weights = folder / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return config, weights


def write_pack(root: Path, diffusion: str, **defaults) -> Path:
    """A pack JSON in ``root`` naming ``diffusion`` (a folder inside root, or a repo id) and
    the tiny CLIP, with the 256x256 packs' kind of defaults."""
    config, weights = build_clip(root / "clip")
    pack = {
        "name": "tinybig",
        "description": "tiny 64x64 stand-in for the 256x256 packs",
        "diffusion": diffusion,
        "clip": {"config": str(config.relative_to(root)), "weights": str(weights.relative_to(root))},
        "captions": CAPTIONS,
        "defaults": {"sampler": "ddim", "steps": 8, "batch": 2, "scale": 0.0, "opt_iters": 2,
                     "lr": 0.05, "cutouts": 4, "cut_pow": 1.0, "grad_checkpointing": True,
                     "methods": {"contrastive": {"scale": 0.5}, "spherical": {"scale": 0.5}},
                     **defaults},
    }
    path = root / "pack.json"
    path.write_text(json.dumps(pack))
    return path


def cache_repo(cache: Path, repo_id: str, source: Path) -> Path:
    """Put ``source``'s files into a Hugging Face cache as huggingface_hub lays it out: blobs,
    and a snapshot folder of links to them."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / COMMIT
    (repo / "refs").mkdir(parents=True)
    (repo / "blobs").mkdir()
    snap.mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for i, f in enumerate(sorted(source.iterdir())):
        blob = repo / "blobs" / f"blob{i:02d}"
        shutil.copyfile(f, blob)
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snap
