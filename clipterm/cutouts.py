"""What CLIP sees of an image: one resize to its input, or the whole image plus cutouts.

CLIP reads a small square (224x224 for OpenAI's ViT-B/32). A 32x32 sample is resized once
(:func:`resize_for_clip`, bicubic, as it always was). A larger sample (a 256x256 LSUN or CelebA-HQ
model) is better read as several *views*, as the CLIP-guided diffusion notebooks do
(``MakeCutouts``, ``cutn``, ``cut_pow``): the whole image, shrunk with antialiasing, and N random
square crops, each of side ``u ** cut_pow * (side - low) + low`` (u uniform in [0, 1), ``low``
the smaller of CLIP's input and the image; a larger ``cut_pow`` makes crops smaller), area-averaged
to CLIP's input (crops smaller than it are resized bicubic instead). With ``augment``, each crop
is also flipped at random and moved by a small affine transform (torchvision's v2 functional ops:
a rotation within 10 degrees, a shift within 5% of the side). Guidance averages its objective
over the views, so the gradient reaches every part of the image at full resolution.

The crops of sample i at timestep t depend only on (seed, i, t) (:func:`clipterm.seeds.sample_seed`
on the cutouts' stream): a sample's guidance is the same whatever batch it is in. Every number
is drawn, augmentation or not, so turning ``augment`` on changes the crops' transforms only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_ANGLE_DEGREES = 10.0
MAX_SHIFT = 0.05  # of the side


def resize_for_clip(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images resized to CLIP's square input, bicubic: antialiased where they shrink (a
    256x256 sample to 224, so no pixel is skipped), as before where they grow (32 -> 224,
    bit for bit what clipterm always did)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrinks = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                         antialias=shrinks)


@dataclass(frozen=True)
class Cutout:
    """One crop of one image and how it is augmented."""

    top: int
    left: int
    size: int
    flip: bool
    angle: float  # degrees
    shift: tuple[float, float]  # (x, y) in pixels of CLIP's input


def draw_cutouts(seed: int, n: int, height: int, width: int, clip_size: int,
                 cut_pow: float) -> list[Cutout]:
    """N crops of a ``height`` x ``width`` image, drawn from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    high = min(height, width)
    low = min(high, clip_size)
    out = []
    for _ in range(n):
        u = torch.rand((5,), generator=g, dtype=torch.float64).tolist()
        size = min(high, int(u[0] ** cut_pow * (high - low) + low))
        top = int(torch.randint(0, height - size + 1, (), generator=g))
        left = int(torch.randint(0, width - size + 1, (), generator=g))
        out.append(Cutout(top=top, left=left, size=size, flip=u[1] < 0.5,
                          angle=(2 * u[2] - 1) * MAX_ANGLE_DEGREES,
                          shift=((2 * u[3] - 1) * MAX_SHIFT * clip_size,
                                 (2 * u[4] - 1) * MAX_SHIFT * clip_size)))
    return out


def cut(image: torch.Tensor, c: Cutout, clip_size: int, augment: bool) -> torch.Tensor:
    """One cutout of ``image`` [C, H, W] at CLIP's input size, [1, C, S, S]. Differentiable."""
    crop = image[None, :, c.top : c.top + c.size, c.left : c.left + c.size]
    if c.size >= clip_size:
        view = F.adaptive_avg_pool2d(crop, clip_size)
    else:
        view = F.interpolate(crop, size=(clip_size, clip_size), mode="bicubic",
                             align_corners=False)
    if augment:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        if c.flip:
            view = TF.horizontal_flip(view)
        view = TF.affine(view, angle=c.angle, translate=[c.shift[0], c.shift[1]], scale=1.0,
                         shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR)
    return view


def make_views(images: torch.Tensor, clip_size: int, n: int, cut_pow: float, augment: bool,
               seeds: Sequence[int]) -> torch.Tensor:
    """The views CLIP sees of a batch [B, C, H, W]: ``(1 + n) * B`` images at CLIP's input
    size, view-major: the B whole images first (antialiased), then cutout 1 of every sample,
    and so on. ``seeds[b]`` draws sample b's cutouts. Differentiable in ``images``."""
    if len(seeds) != images.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {images.shape[0]} images")
    height, width = images.shape[-2:]
    per_sample = [draw_cutouts(s, n, height, width, clip_size, cut_pow) for s in seeds]
    views = [resize_for_clip(images, clip_size)]
    for k in range(n):
        views.extend(cut(images[b], per_sample[b][k], clip_size, augment)
                     for b in range(images.shape[0]))
    return torch.cat(views)


def mean_over_views(values: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-sample mean of a per-view quantity laid out as :func:`make_views` lays them."""
    return values.view(-1, batch, *values.shape[1:]).mean(dim=0)
