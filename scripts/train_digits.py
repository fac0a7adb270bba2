"""Train the embedded ``digits`` pack from scratch: a judge CNN, a small CLIP and a small DDPM.

    python scripts/train_digits.py                      # everything, into clipterm/packs/digits
    python scripts/train_digits.py --only judge,clip    # retrain some parts; the manifest is merged
    python scripts/train_digits.py --device cuda        # same recipe on a GPU

All three use scikit-learn's bundled digits rendered by ``clipterm.data`` (RGB 32x32, white digit on
black) and the same stratified held-out split (``digit_split(labels, seed=0)``); only the training
part is ever seen in training. Outputs (``--out``)::

    ddpm/unet/        diffusers UNet2DModel (EMA weights, safetensors)
    ddpm/scheduler/   DDPMScheduler: 1000 steps, linear betas 1e-4..0.02, epsilon, clip_sample
    clip/clipterm-digits-clip.json, clip/open_clip_model.safetensors (fp16 state dict)
    judge/config.json, judge/model.safetensors
    manifest.json     sizes, parameter counts, settings, wall times, scores
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clipterm.data import DIGIT_NAMES, digit_split, load_digit_images  # noqa: E402
from clipterm.judge import DigitJudge, JudgeConfig, save_judge  # noqa: E402

CLIP_NAME = "clipterm-digits-clip"
IMAGE_SIZE = 32
PARTS = ("judge", "clip", "ddpm")
MIN_SNR_GAMMA = 5.0

CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": IMAGE_SIZE,
        "patch_size": 8,
        "width": 96,
        "head_width": 32,
        "layers": 3,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 64,
        "heads": 4,
        "layers": 2,
        "mlp_ratio": 2.0,
    },
}

UNET_CONFIG: dict[str, Any] = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (16, 32, 64, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D",) * 4,
    "up_block_types": ("UpBlock2D",) * 4,
    "norm_num_groups": 8,
}

SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "variance_type": "fixed_large",
    "clip_sample": True,
    "prediction_type": "epsilon",
}

CAPTION_TEMPLATES: tuple[str, ...] = (
    "{name}",
    "{name}",
    "{name}",
    "{digit}",
    "the digit {name}",
    "the number {name}",
    "a handwritten {digit}",
    "a handwritten {name}",
    "a photo of the number {name}",
    "a photo of a {digit}",
    "an image of the digit {digit}",
    "a {name}",
    "number {digit}",
    "a drawing of a {name}",
    "a blurry {name}",
    "a white {digit} on black",
)


# ---------------------------------------------------------------- shared helpers


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def digits_tensors(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Images as float [N, 3, 32, 32] in [0, 1], labels [N], and the (train, test) indices."""
    images, labels = load_digit_images(IMAGE_SIZE)
    x = torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(labels.copy())
    train_idx, test_idx = digit_split(labels, seed=seed)
    return x, y, train_idx, test_idx


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def cosine_lr(step: int, total: int, warmup: int, floor: float = 0.05) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def random_affine(
    x: torch.Tensor,
    gen: torch.Generator,
    shift_px: float,
    scale: tuple[float, float],
    rot_deg: float,
) -> torch.Tensor:
    """Per-sample random shift / isotropic scale / rotation of images ``[B, C, H, W]``."""
    b, _, h, _ = x.shape
    dev = x.device

    def uni(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(b, generator=gen) * (hi - lo) + lo).to(dev)

    s = uni(*scale)
    a = uni(-rot_deg, rot_deg) * math.pi / 180
    tx, ty = uni(-shift_px, shift_px) * 2 / h, uni(-shift_px, shift_px) * 2 / h
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 5) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` [B] (0 leaves the image as is)."""
    b, c, h, w = x.shape
    r = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.clamp_min(1e-3).to(x)[:, None]
    k = torch.exp(-0.5 * (r[None] / s) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, K]
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(
        F.pad(y, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * c
    )
    y = F.conv2d(
        F.pad(y, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=b * c
    )
    return y.reshape(b, c, h, w)


def clip_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Make clean digits look like a DDPM's predicted x0 at some timestep: moved, blurred,
    mixed with another digit, low-contrast and noisy. ``x`` in [0, 1]; output clamped to [0, 1]."""
    b = x.shape[0]
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(dev)

    x = random_affine(x, gen, shift_px=2.5, scale=(0.8, 1.15), rot_deg=12.0)
    # Blend in a little of another image (x0_hat early on is an average of several digits).
    mix = (rand(b) < 0.3).float() * rand(b) * 0.35
    perm = torch.randperm(b, generator=gen).to(dev)
    x = (1 - mix[:, None, None, None]) * x + mix[:, None, None, None] * x[perm]
    blur_on = (rand(b) < 0.6).float()
    x = random_blur(x, blur_on * rand(b) * 2.5)
    contrast = 0.35 + 0.9 * rand(b)
    contrast = torch.where(rand(b) < 0.5, torch.ones_like(contrast), contrast)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (
        mean
        + contrast[:, None, None, None] * (x - mean)
        + (rand(b) - 0.5)[:, None, None, None] * 0.2
    )
    # Per-channel gains: the data is grey, so teach the model to ignore colour casts.
    gains = 1 + (rand(b, 3) - 0.5) * 0.3 * (rand(b, 1) < 0.3).float()
    x = x * gains[:, :, None, None]
    noise_on = (rand(b) < 0.5).float() * rand(b) * 0.25
    x = x + noise_on[:, None, None, None] * torch.randn(x.shape, generator=gen).to(dev)
    return x.clamp(0.0, 1.0)


# ---------------------------------------------------------------- judge


def train_judge(
    out: Path,
    *,
    seed: int,
    epochs: int,
    batch: int,
    lr: float,
    device: str,
    log: bool = True,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train, save under ``out`` and return the manifest entry; ``max_steps`` cuts it short (tests)."""
    gen = seed_everything(seed)
    x, y, train_idx, test_idx = digits_tensors()
    model = DigitJudge(JudgeConfig()).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(train_idx) / batch)
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, total, min(50, total)))
    xt, yt = x[train_idx], y[train_idx]
    t0 = time.time()
    step = 0
    for epoch in range(epochs):
        if max_steps is not None and step >= max_steps:
            break
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            xb = random_affine(xt[idx], gen, shift_px=2.0, scale=(0.9, 1.1), rot_deg=10.0)
            xb = (xb + 0.03 * torch.randn(xb.shape, generator=gen)).clamp(0, 1).to(device)
            loss = F.cross_entropy(model(xb), yt[idx].to(device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        if log and (epoch + 1) % max(1, epochs // 5) == 0:
            print(f"[judge] epoch {epoch + 1}/{epochs} loss {loss.item():.4f}", flush=True)
    wall = time.time() - t0
    model.eval()
    acc = judge_accuracy(model, x[test_idx], y[test_idx], device)
    train_acc = judge_accuracy(model, xt, yt, device)
    save_judge(model.cpu(), out / "judge")
    if log:
        print(
            f"[judge] held-out accuracy {acc:.4f} (train {train_acc:.4f}) in {wall:.0f}s",
            flush=True,
        )
    return {
        "architecture": "DigitJudge (conv-BN-ReLU x2 + max-pool per stage, GAP, 128-d features)",
        "params": count_params(model),
        "objective": "cross-entropy, label smoothing 0.05",
        "seed": seed,
        "epochs": epochs,
        "batch": batch,
        "lr": lr,
        "steps": step,
        "optimizer": "AdamW wd 5e-4, warmup + cosine",
        "augmentations": "shift +-2px, scale 0.9-1.1, rotation +-10 deg, noise std 0.03",
        "wall_time_s": round(wall, 1),
        "heldout_accuracy": round(acc, 4),
        "train_accuracy": round(train_acc, 4),
    }


@torch.no_grad()
def judge_accuracy(model: DigitJudge, x: torch.Tensor, y: torch.Tensor, device: str) -> float:
    preds = torch.cat(
        [model(x[i : i + 256].to(device)).argmax(1).cpu() for i in range(0, len(x), 256)]
    )
    return float((preds == y).float().mean())


# ---------------------------------------------------------------- CLIP


def write_clip_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CLIP_NAME}.json"
    path.write_text(json.dumps(CLIP_CONFIG, indent=2) + "\n", encoding="utf-8")
    return path


def caption_bank() -> tuple[list[str], torch.Tensor]:
    """Every (template, class) caption and its class label."""
    captions, labels = [], []
    for c, name in enumerate(DIGIT_NAMES):
        for tpl in CAPTION_TEMPLATES:
            captions.append(tpl.format(name=name, digit=c))
            labels.append(c)
    return captions, torch.tensor(labels)


def clip_normalize(model: Any, x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> the CLIP's input, with the mean/std open_clip set on ``model.visual``."""
    cfg = model.visual.preprocess_cfg
    mean = torch.tensor(cfg["mean"], device=x01.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=x01.device).view(1, 3, 1, 1)
    return (x01 - mean) / std


@torch.no_grad()
def clip_zero_shot(
    model: Any, tokenizer: Any, x01: torch.Tensor, y: torch.Tensor, device: str
) -> float:
    """Accuracy of argmax over the ten plain class names ("zero" .. "nine")."""
    model.eval()
    text = F.normalize(model.encode_text(tokenizer(list(DIGIT_NAMES)).to(device)), dim=-1)
    correct = 0
    for i in range(0, len(x01), 256):
        img = F.normalize(
            model.encode_image(clip_normalize(model, x01[i : i + 256].to(device))), dim=-1
        )
        correct += int(((img @ text.T).argmax(1).cpu() == y[i : i + 256]).sum())
    return correct / len(x01)


def train_clip(
    out: Path,
    *,
    seed: int,
    epochs: int,
    batch: int,
    lr: float,
    device: str,
    log: bool = True,
    max_steps: int | None = None,
    adv_eps: float = 0.0,
    adv_start: int = 0,
) -> dict[str, Any]:
    """Train, save under ``out`` and return the manifest entry; ``max_steps`` cuts it short (tests).

    From epoch ``adv_start`` on, images are perturbed adversarially (one FGSM step from a random
    start, L-inf radius ``adv_eps`` in [0, 1] pixel units) before the update: this makes the
    input-gradients used for guidance smooth and digit-shaped instead of high-frequency noise.
    """
    import open_clip
    from safetensors.torch import save_file

    folder = out / "clip"
    config_path = write_clip_config(folder)
    open_clip.add_model_config(config_path)
    gen = seed_everything(seed)
    model = open_clip.create_model(CLIP_NAME, device=device)
    tokenizer = open_clip.get_tokenizer(CLIP_NAME)
    captions, caption_labels = caption_bank()
    tokens = tokenizer(captions)
    by_class = [torch.nonzero(caption_labels == c).flatten() for c in range(len(DIGIT_NAMES))]

    x, y, train_idx, test_idx = digits_tensors()
    xt, yt = x[train_idx], y[train_idx]
    # The 49408-row token table stays at its random init: only a few dozen tokens are ever used,
    # and updating all rows every step costs more than the rest of the model on 2 CPU cores.
    model.token_embedding.requires_grad_(False)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in trainable if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )
    steps_per_epoch = math.ceil(len(xt) / batch)
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, total, min(50, total)))
    t0 = time.time()
    step = 0
    for epoch in range(epochs):
        if max_steps is not None and step >= max_steps:
            break
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            labels = yt[idx]
            images = clip_augment(xt[idx].to(device), gen)
            pick = torch.stack(
                [
                    by_class[int(c)][torch.randint(len(by_class[int(c)]), (1,), generator=gen)][0]
                    for c in labels
                ]
            )
            # InfoNCE where every caption of the same class is a positive (classes repeat in a batch).
            same = (labels[:, None] == labels[None, :]).float().to(device)
            target = same / same.sum(1, keepdim=True)
            txt = F.normalize(model.encode_text(tokens[pick].to(device)), dim=-1)
            if adv_eps > 0 and epoch >= adv_start:
                delta = (torch.rand(images.shape, generator=gen).to(device) * 2 - 1) * adv_eps
                delta.requires_grad_(True)
                img = F.normalize(model.encode_image(clip_normalize(model, images + delta)), dim=-1)
                adv_logits = model.logit_scale.exp() * img @ txt.detach().T
                adv_loss = torch.sum(-target * F.log_softmax(adv_logits, 1), 1).mean()
                (grad,) = torch.autograd.grad(adv_loss, delta)
                delta = (delta + 1.25 * adv_eps * grad.sign()).clamp(-adv_eps, adv_eps)
                images = (images + delta).clamp(0, 1).detach()
            img = F.normalize(model.encode_image(clip_normalize(model, images)), dim=-1)
            logits = model.logit_scale.exp() * img @ txt.T
            loss = 0.5 * (
                torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean()
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        if log and ((epoch + 1) % max(1, epochs // 5) == 0 or epoch < 3):
            acc = clip_zero_shot(model, tokenizer, x[test_idx], y[test_idx], device)
            print(
                f"[clip] epoch {epoch + 1}/{epochs} loss {loss.item():.4f} "
                f"scale {model.logit_scale.exp().item():.1f} zero-shot {acc:.4f} "
                f"({time.time() - t0:.0f}s)",
                flush=True,
            )
    wall = time.time() - t0
    weights = folder / "open_clip_model.safetensors"
    state = {
        k: v.detach().cpu().to(torch.float16).contiguous()
        if v.is_floating_point()
        else v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(weights), metadata={"format": "pt"})

    # Score the shipped file through the same path the sampler uses.
    loaded, _, _ = open_clip.create_model_and_transforms(
        CLIP_NAME, pretrained=str(weights), device=device
    )
    acc = clip_zero_shot(loaded, tokenizer, x[test_idx], y[test_idx], device)
    aug_acc = clip_zero_shot(
        loaded,
        tokenizer,
        clip_augment(x[test_idx], torch.Generator().manual_seed(1)),
        y[test_idx],
        device,
    )
    if log:
        print(
            f"[clip] held-out zero-shot {acc:.4f} (augmented {aug_acc:.4f}) in {wall:.0f}s",
            flush=True,
        )
    return {
        "open_clip_name": CLIP_NAME,
        "params": count_params(model),
        "params_without_token_embedding": count_params(model)
        - model.token_embedding.weight.numel(),
        "stored_dtype": "float16",
        "preprocess_mean": list(loaded.visual.preprocess_cfg["mean"]),
        "preprocess_std": list(loaded.visual.preprocess_cfg["std"]),
        "objective": "InfoNCE (multi-positive: same-class captions), learnable logit scale",
        "captions_per_class": len(CAPTION_TEMPLATES),
        "caption_templates": list(CAPTION_TEMPLATES),
        "seed": seed,
        "epochs": epochs,
        "batch": batch,
        "lr": lr,
        "steps": step,
        "optimizer": "AdamW betas (0.9, 0.98), wd 0.05 on matrices, warmup + cosine; "
        "token embedding frozen at its random init",
        "augmentations": "shift +-2.5px, scale 0.8-1.15, rotation +-12 deg, 30%: blend <=35% of "
        "another digit, 60%: Gaussian blur sigma 0-2.5, 50%: contrast 0.35-1.25, "
        "brightness +-0.1, 30%: per-channel gains 0.85-1.15, 50%: Gaussian noise std 0-0.25",
        "adversarial_training": f"FGSM with random start, L-inf eps {adv_eps} (pixels in [0, 1]), "
        f"from epoch {adv_start}",
        "final_loss": round(float(loss.item()), 4),
        "logit_scale": round(float(model.logit_scale.exp().item()), 2),
        "wall_time_s": round(wall, 1),
        "heldout_zero_shot_accuracy": round(acc, 4),
        "heldout_zero_shot_accuracy_augmented": round(aug_acc, 4),
    }


# ---------------------------------------------------------------- DDPM


def train_ddpm(
    out: Path,
    *,
    seed: int,
    steps: int,
    batch: int,
    lr: float,
    ema_decay: float,
    device: str,
    log: bool = True,
    sample_check: int = 64,
    max_minutes: float | None = None,
) -> dict[str, Any]:
    """Train, save the EMA weights under ``out/ddpm`` and return the manifest entry.

    ``max_minutes`` stops early on a slow or shared machine (the schedule stays the one for
    ``steps``); the manifest records the steps actually taken."""
    from diffusers import DDPMScheduler, UNet2DModel

    gen = seed_everything(seed)
    x, _, train_idx, _ = digits_tensors()
    data = (x[train_idx] * 2 - 1).to(device)  # [-1, 1]
    unet = UNet2DModel(**UNET_CONFIG).to(device)
    ema = deepcopy(unet).eval().requires_grad_(False)
    scheduler = DDPMScheduler(**SCHEDULER_CONFIG)
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr / min(200, steps), weight_decay=0.0)
    t0 = time.time()
    running = 0.0
    losses: list[float] = []
    unet.train()
    done = 0
    for step in range(steps):
        if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
            break
        idx = torch.randint(len(data), (batch,), generator=gen).to(device)
        x0 = data[idx]
        t = torch.randint(0, SCHEDULER_CONFIG["num_train_timesteps"], (batch,), generator=gen).to(
            device
        )
        noise = torch.randn(x0.shape, generator=gen).to(device)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        # Min-SNR-5 weighting (epsilon form: min(SNR, 5) / SNR) speeds up convergence a lot;
        # the model still predicts epsilon.
        snr = a.flatten() / (1 - a.flatten())
        weight = snr.clamp(max=MIN_SNR_GAMMA) / snr
        per_sample = (unet(xt, t).sample - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (weight * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        # Warmup, then cosine to 10% over the planned steps or the time budget, whichever ends first.
        done_frac = (step + 1) / steps
        if max_minutes:
            done_frac = max(done_frac, (time.time() - t0) / (60 * max_minutes))
        warm = min(1.0, (step + 1) / min(200, steps))
        for group in opt.param_groups:
            group["lr"] = (
                lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, done_frac))))
            )
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        losses.append(loss.item())
        done = step + 1
        if log and ((step + 1) % 50 == 0 or step + 1 == steps):
            el = time.time() - t0
            print(
                f"[ddpm] step {step + 1}/{steps} loss {running:.4f} ({el:.0f}s, "
                f"eta {el / (step + 1) * (steps - step - 1):.0f}s)",
                flush=True,
            )
    wall = time.time() - t0
    folder = out / "ddpm"
    ema.cpu().save_pretrained(folder / "unet", safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    tail = losses[-min(len(losses), 200) :]
    info: dict[str, Any] = {
        "unet_config": {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_CONFIG.items()},
        "scheduler_config": SCHEDULER_CONFIG,
        "params": count_params(unet),
        "objective": "epsilon MSE with min-SNR-5 weighting, t uniform in [0, 1000)",
        "seed": seed,
        "steps": done,
        "scheduled_steps": steps,
        "max_minutes": max_minutes,
        "batch": batch,
        "lr": lr,
        "ema_decay": ema_decay,
        "epochs_equivalent": round(done * batch / len(train_idx), 1),
        "optimizer": "AdamW, grad-clip 1.0, warmup 200 + cosine to 10% over the planned "
        "steps or the time budget, whichever ends first",
        "augmentations": "none",
        "saved_weights": "EMA",
        "wall_time_s": round(wall, 1),
        "final_loss_last200_mean": round(float(np.mean(tail)), 4),
    }
    if sample_check:
        info["unconditional_samples"] = ddpm_sample_check(
            folder, out / "judge", sample_check, seed, device
        )
        if log:
            print(f"[ddpm] sample check {info['unconditional_samples']}", flush=True)
    return info


@torch.no_grad()
def ddim_samples(
    folder: Path, n: int, seed: int, steps: int = 50, device: str = "cpu"
) -> torch.Tensor:
    """``n`` unconditional DDIM samples (eta 0) from a saved pack, as [0, 1] images [n, 3, H, W]."""
    from diffusers import DDIMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(folder, subfolder="unet").to(device).eval()
    ddim = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    ddim.set_timesteps(steps)
    size = unet.config.sample_size
    x = torch.randn((n, 3, size, size), generator=torch.Generator().manual_seed(seed)).to(device)
    for t in ddim.timesteps:
        x = ddim.step(unet(x, t).sample, t, x).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2).cpu()


@torch.no_grad()
def ddpm_sample_check(
    folder: Path, judge_folder: Path, n: int, seed: int, device: str
) -> dict[str, Any]:
    """Judge statistics of ``n`` unconditional DDIM-50 samples next to the same on real test digits."""
    from clipterm.judge import load_judge

    samples = ddim_samples(folder, n, seed, device=device)
    result: dict[str, Any] = {"n": n, "sampler": "DDIM 50 steps, eta 0"}
    if not (judge_folder / "config.json").is_file():
        return result
    judge = load_judge(judge_folder)
    x, _, _, test_idx = digits_tensors()
    p_fake = judge(samples).softmax(1)
    p_real = judge(x[test_idx]).softmax(1)
    result["judge_mean_max_prob"] = round(float(p_fake.max(1).values.mean()), 4)
    result["judge_mean_max_prob_real_test"] = round(float(p_real.max(1).values.mean()), 4)
    result["judged_class_histogram"] = torch.bincount(p_fake.argmax(1), minlength=10).tolist()
    return result


# ---------------------------------------------------------------- manifest and CLI


def file_sizes(out: Path) -> dict[str, int]:
    return {
        str(p.relative_to(out)): p.stat().st_size
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def write_manifest(out: Path, results: dict[str, Any], args: argparse.Namespace) -> Path:
    path = out / "manifest.json"
    manifest: dict[str, Any] = {}
    if path.is_file():
        manifest = json.loads(path.read_text(encoding="utf-8"))
    _, labels = load_digit_images(IMAGE_SIZE)
    train_idx, test_idx = digit_split(labels, seed=0)
    manifest.update(
        {
            "name": "digits",
            "trained_by": "scripts/train_digits.py",
            "data": {
                "source": "sklearn.datasets.load_digits (1797 8x8 images, values 0..16, 10 classes)",
                "rendering": "bicubic upsample to 24x24, centred on a 32x32 black canvas, white digit, "
                "grey replicated to RGB (clipterm.data.load_digit_images)",
                "split": "clipterm.data.digit_split(labels, seed=0): stratified, 20% per class held out",
                "train_size": int(len(train_idx)),
                "test_size": int(len(test_idx)),
            },
            "image_size": IMAGE_SIZE,
            "device": args.device,
            "threads": args.threads,
            "torch_version": torch.__version__,
        }
    )
    models = manifest.setdefault("models", {})
    models.update(results)
    sizes = file_sizes(out)
    manifest["files"] = sizes
    manifest["total_bytes"] = sum(sizes.values())
    manifest.setdefault("quality", {})
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=ROOT / "clipterm" / "packs" / "digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=",".join(PARTS), help="comma list of parts: judge,clip,ddpm")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--judge-epochs", type=int, default=12)
    p.add_argument("--judge-batch", type=int, default=64)
    p.add_argument("--judge-lr", type=float, default=2e-3)
    p.add_argument("--clip-epochs", type=int, default=40)
    p.add_argument("--clip-batch", type=int, default=64)
    p.add_argument("--clip-lr", type=float, default=2e-3)
    p.add_argument("--clip-adv-eps", type=float, default=0.05)
    p.add_argument("--clip-adv-start", type=int, default=20, help="first adversarial epoch")
    p.add_argument("--ddpm-steps", type=int, default=3000)
    p.add_argument("--ddpm-batch", type=int, default=32)
    p.add_argument("--ddpm-lr", type=float, default=2e-3)
    p.add_argument("--ddpm-ema", type=float, default=0.995)
    p.add_argument(
        "--ddpm-max-minutes",
        type=float,
        default=0.0,
        help="stop the DDPM early after this long (0: no limit)",
    )
    p.add_argument(
        "--sample-check", type=int, default=64, help="unconditional samples to judge (0: skip)"
    )
    args = p.parse_args(argv)
    parts = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {unknown}; choose from {PARTS}")
    args.parts = parts
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    t0 = time.time()
    if "judge" in args.parts:
        results["judge"] = train_judge(
            out,
            seed=args.seed,
            epochs=args.judge_epochs,
            batch=args.judge_batch,
            lr=args.judge_lr,
            device=args.device,
        )
        write_manifest(out, results, args)
    if "clip" in args.parts:
        results["clip"] = train_clip(
            out,
            seed=args.seed,
            epochs=args.clip_epochs,
            batch=args.clip_batch,
            lr=args.clip_lr,
            device=args.device,
            adv_eps=args.clip_adv_eps,
            adv_start=args.clip_adv_start,
        )
        write_manifest(out, results, args)
    if "ddpm" in args.parts:
        results["ddpm"] = train_ddpm(
            out,
            seed=args.seed,
            steps=args.ddpm_steps,
            batch=args.ddpm_batch,
            lr=args.ddpm_lr,
            ema_decay=args.ddpm_ema,
            device=args.device,
            sample_check=args.sample_check,
            max_minutes=args.ddpm_max_minutes or None,
        )
    path = write_manifest(out, results, args)
    print(f"wrote {path} ({time.time() - t0:.0f}s total)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
