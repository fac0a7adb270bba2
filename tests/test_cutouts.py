"""CLIP's views of images larger than its input (cutouts), and the UNet's gradient checkpointing.

On a tiny 64x64 model with a 16x16 CLIP (tests/tiny_big.py), loaded through the real loaders."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipterm import guidance
from clipterm.config import RunConfig, resolve
from clipterm.cutouts import draw_cutouts, make_views, mean_over_views, resize_for_clip
from clipterm.errors import ConfigError
from clipterm.guide import CaptionScorer, Guide
from clipterm.models import load_pack
from clipterm.packs import get_pack_spec
from clipterm.sampling import sample
from clipterm.schedule import predict_x0
from clipterm.seeds import cutout_seeds
from tests.tiny_big import CLIP_SIZE, SIZE, build_unet_folder, write_pack


@pytest.fixture(scope="module")
def big_pack_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinybig")
    build_unet_folder(root / "ddpm")
    return write_pack(root, "ddpm")


@pytest.fixture(scope="module")
def big(big_pack_path):
    return load_pack(str(big_pack_path), device="cpu", cache=False)


def cfg(pack, **kw) -> RunConfig:
    base = dict(method="contrastive", n=2, batch=2, steps=6, seed=3)
    base.update(kw)
    return resolve(pack.spec, **base)


# ----------------------------------------------------------------------------- the views
def test_views_are_the_whole_image_then_the_cutouts_at_clips_size():
    images = torch.rand(3, 3, SIZE, SIZE)
    views = make_views(images, CLIP_SIZE, 4, 1.0, False, [1, 2, 3])
    assert views.shape == (3 * 5, 3, CLIP_SIZE, CLIP_SIZE)
    # the whole image, antialiased: what resize_for_clip gives
    torch.testing.assert_close(views[:3], resize_for_clip(images, CLIP_SIZE), rtol=0, atol=0)
    # cutout k of sample b is that crop area-averaged to CLIP's input
    c = draw_cutouts(2, 4, SIZE, SIZE, CLIP_SIZE, 1.0)[3]
    crop = images[1:2, :, c.top : c.top + c.size, c.left : c.left + c.size]
    torch.testing.assert_close(views[3 + 3 * 3 + 1], F.adaptive_avg_pool2d(crop, CLIP_SIZE)[0])
    assert mean_over_views(torch.arange(15.0), 3).tolist() == [6.0, 7.0, 8.0]


@pytest.mark.parametrize("cut_pow", [0.5, 1.0, 3.0])
def test_cutouts_lie_inside_the_image_and_are_at_least_clips_input(cut_pow):
    cuts = draw_cutouts(7, 400, SIZE, 48, CLIP_SIZE, cut_pow)
    for c in cuts:
        assert CLIP_SIZE <= c.size <= 48
        assert 0 <= c.top <= SIZE - c.size and 0 <= c.left <= 48 - c.size
        assert abs(c.angle) <= 10 and all(abs(s) <= 0.05 * CLIP_SIZE for s in c.shift)
    sizes = np.array([c.size for c in cuts])
    # cut_pow shapes the sizes as u ** cut_pow does: a larger exponent, smaller crops
    expected = CLIP_SIZE + (48 - CLIP_SIZE) / (1 + cut_pow)
    assert abs(sizes.mean() - expected) < 2.5, (sizes.mean(), expected)


def test_larger_cut_pow_makes_smaller_crops_from_the_same_draws():
    a = draw_cutouts(5, 50, SIZE, SIZE, CLIP_SIZE, 1.0)
    b = draw_cutouts(5, 50, SIZE, SIZE, CLIP_SIZE, 4.0)
    assert all(y.size <= x.size for x, y in zip(a, b, strict=True))
    assert sum(y.size < x.size for x, y in zip(a, b, strict=True)) > 25


def test_an_image_smaller_than_clips_input_is_cut_whole_and_resized_bicubic():
    images = torch.rand(1, 3, 8, 8)
    views = make_views(images, CLIP_SIZE, 2, 1.0, False, [4])
    ref = F.interpolate(images, size=(CLIP_SIZE, CLIP_SIZE), mode="bicubic", align_corners=False)
    for v in views:
        torch.testing.assert_close(v, ref[0], rtol=0, atol=0)


def test_resize_for_clip_keeps_upscaling_bit_identical_and_antialiases_shrinking():
    small = torch.rand(2, 3, 32, 32)
    plain = F.interpolate(small, size=(224, 224), mode="bicubic", align_corners=False)
    assert torch.equal(resize_for_clip(small, 224), plain)  # the 32 px default, bit for bit
    # a one-pixel checkerboard: antialiased, it shrinks to near-flat grey (bicubic leaves some
    # moire at 256 -> 224); without antialiasing, pixels are skipped and it aliases twice as much
    board = (torch.arange(256)[:, None] + torch.arange(256)[None, :]) % 2
    board = board.float().expand(1, 3, 256, 256)
    aa = resize_for_clip(board, 224)
    aliased = F.interpolate(board, size=(224, 224), mode="bicubic", align_corners=False)
    assert float(aa.std()) < 0.5 * float(aliased.std())
    assert abs(float(aa.mean()) - 0.5) < 0.01


def test_augmentation_keeps_the_crops_and_moves_them_differentiably():
    images = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    plain = make_views(images, CLIP_SIZE, 3, 1.0, False, [8, 9])
    aug = make_views(images, CLIP_SIZE, 3, 1.0, True, [8, 9])
    torch.testing.assert_close(aug[:2], plain[:2])  # the whole image is never augmented
    assert not torch.allclose(aug[2:], plain[2:])
    # each augmented cutout is its plain cutout flipped / turned / shifted: same pixel budget
    assert torch.allclose(aug[2:].mean(dim=(1, 2, 3)), plain[2:].mean(dim=(1, 2, 3)), atol=0.15)
    (grad,) = torch.autograd.grad(aug.sum(), images)
    assert float(grad.abs().sum()) > 0


# ----------------------------------------------------------------------------- (seed, i, t)
def test_cutouts_of_sample_i_depend_only_on_seed_i_and_timestep(big):
    c = cfg(big, cutouts=3, augment=True)
    guide = Guide(big, c, CaptionScorer(big, c.captions))
    torch.manual_seed(0)
    x = torch.randn(3, 3, SIZE, SIZE)
    views = guide.bind([4, 7, 9]).views(x, x, 500)
    alone = guide.bind([7]).views(x[1:2], x[1:2], 500)
    per_sample = views.view(4, 3, 3, CLIP_SIZE, CLIP_SIZE)
    torch.testing.assert_close(per_sample[:, 1], alone, rtol=0, atol=0)
    # another timestep, seed or index: other crops
    assert not torch.equal(guide.bind([7]).views(x[1:2], x[1:2], 480), alone)
    other_seed = Guide(big, cfg(big, cutouts=3, augment=True, seed=4), guide.scorer)
    assert not torch.equal(other_seed.bind([7]).views(x[1:2], x[1:2], 500), alone)
    assert cutout_seeds(3, [7], 500) != cutout_seeds(3, [8], 500)


def close_images(a: np.ndarray, b: np.ndarray) -> None:
    """Equal but for CPU kernels' rounding, which differs with the batch size (at 64x64 even
    unguided samples move by one level in ~0.04% of the values): at most one level, rarely."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005, (diff.max(), (diff > 0).mean())


@pytest.mark.slow
def test_samples_with_cutouts_do_not_depend_on_the_batch(big):
    whole = sample(big, cfg(big, n=3, batch=3, cutouts=3, augment=True))
    one_by_one = sample(big, cfg(big, n=3, batch=1, cutouts=3, augment=True))
    close_images(whole.images, one_by_one.images)
    part = sample(big, cfg(big, n=3, batch=3, cutouts=3, augment=True), indices=[2])
    close_images(part.images, whole.images[2:])


# ----------------------------------------------------------------------------- guidance
@pytest.fixture(scope="module")
def big64(big_pack_path):
    p = copy.copy(load_pack(str(big_pack_path), device="cpu", cache=False))
    p.unet = copy.deepcopy(p.unet).double()
    p.clip = copy.deepcopy(p.clip).double()
    p._text_cache = {}
    return p


@pytest.mark.parametrize("method", ["contrastive", "spherical"])
def test_gradient_with_cutouts_is_the_mean_objectives_gradient(big64, method):
    """Finite differences of the mean over the views (whole image + 3 cutouts), in float64."""
    c = cfg(big64, method=method, cutouts=3, augment=True)
    guide = Guide(big64, c, CaptionScorer(big64, c.captions)).bind([0, 1])
    text, scale = big64.encode_text(c.captions), big64.logit_scale
    t = 600
    abar = big64.scheduler.alphas_cumprod[t].double()
    torch.manual_seed(3)
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    grad, _, _ = guide.gradient(x, t, abar)
    seeds = cutout_seeds(c.seed, [0, 1], t)

    def f(xx: torch.Tensor) -> float:
        with torch.no_grad():
            eps = big64.unet(xx, torch.full((2,), t, dtype=torch.long)).sample
            views = make_views((predict_x0(xx, eps, abar) + 1) / 2, CLIP_SIZE, 3, 1.0, True, seeds)
            emb = big64.encode_clip_input(views, already_normalised=False)
            if method == "contrastive":
                logits = scale * emb @ text.T
                obj = logits[:, 0] - torch.logsumexp(logits, dim=1)
            else:
                obj = -guidance.spherical_distance(emb, text[0])
            return float(obj.view(4, 2).mean(0).sum())

    gen = torch.Generator().manual_seed(4)
    for _ in range(2):
        v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        h = 1e-5
        fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
        ad = float((grad * v).sum())
        assert math.isclose(ad, fd, rel_tol=1e-4, abs_tol=1e-8), (ad, fd)


@pytest.mark.slow
def test_guidance_with_cutouts_raises_the_targets_probability_as_without(big):
    base = sample(big, cfg(big, method="uncond", n=6, batch=6, steps=8))
    plain = sample(big, cfg(big, n=6, batch=6, steps=8, scale=3.0, cutouts=0))
    cut = sample(big, cfg(big, n=6, batch=6, steps=8, scale=3.0, cutouts=4, augment=True))
    assert plain.mean_target_prob > base.mean_target_prob + 0.05
    assert cut.mean_target_prob > base.mean_target_prob + 0.05
    assert not np.array_equal(cut.images, plain.images)


# ----------------------------------------------------------------------------- checkpointing
def test_checkpointing_gives_the_same_gradient_and_is_really_used(big, monkeypatch):
    import torch.utils.checkpoint as ckpt

    calls = []
    real = ckpt.checkpoint

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(ckpt, "checkpoint", spy)
    abar = big.scheduler.alphas_cumprod[700]
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    grads = {}
    for on in (False, True):
        c = cfg(big, cutouts=2, grad_checkpointing=on)
        from clipterm.runtime import set_gradient_checkpointing

        set_gradient_checkpointing(big.unet, on)
        calls.clear()
        grads[on], _, _ = Guide(big, c, CaptionScorer(big, c.captions)).gradient(x, 700, abar)
        assert bool(calls) == on
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-5, atol=1e-7)
    assert float(grads[True].abs().sum()) > 0


@pytest.mark.slow
def test_each_run_sets_checkpointing_as_its_config_says(big):
    sample(big, cfg(big, steps=2, n=1, batch=1, grad_checkpointing=True))
    assert big.unet.is_gradient_checkpointing
    sample(big, cfg(big, method="optimize", steps=2, n=1, batch=1, opt_iters=1))
    assert not big.unet.is_gradient_checkpointing  # optimize checkpoints per step itself
    sample(big, cfg(big, steps=2, n=1, batch=1))  # the pack's default: on
    assert big.unet.is_gradient_checkpointing
    sample(big, cfg(big, steps=2, n=1, batch=1, grad_checkpointing=False))
    assert not big.unet.is_gradient_checkpointing


# ----------------------------------------------------------------------------- the config
def test_pack_defaults_flow_into_the_config_and_the_user_overrides_them(big_pack_path):
    spec = get_pack_spec(str(big_pack_path))
    c = resolve(spec, method="contrastive")
    assert (c.cutouts, c.cut_pow, c.augment, c.grad_checkpointing) == (4, 1.0, False, True)
    c = resolve(spec, method="spherical", cutouts=0, cut_pow=2.0, augment=True,
                grad_checkpointing=False)
    assert (c.cutouts, c.cut_pow, c.augment, c.grad_checkpointing) == (0, 2.0, True, False)
    assert any("--cut-pow and --augment" in w for w in c.warnings)
    u = resolve(spec, method="uncond", cutouts=8)
    assert u.cutouts is None and any("uncond does not use --cutouts" in w for w in u.warnings)
    assert "cutouts" in c.to_dict() and u.to_dict()["cutouts"] is None


def test_the_32px_packs_keep_the_single_resize():
    for name in ("digits", "cifar10"):
        c = resolve(get_pack_spec(name), method="contrastive", prompt=None)
        assert (c.cutouts, c.augment, c.grad_checkpointing) == (0, False, False)
    poster = resolve(get_pack_spec("church"), method="contrastive", preset="poster")
    assert poster.cutouts == 0  # the seed's single resize, even on a 256x256 pack


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("cutouts", -1, "cutouts must be >= 0"),
    ("cutouts", 257, "cutouts must be <= 256"),
    ("cutouts", 2.5, "must be a whole number"),
    ("cut_pow", 0.0, "must be > 0"),
    ("cut_pow", float("nan"), "must be finite"),
    ("cut_pow", 11.0, "in [0, 10]"),
    ("augment", 1, "--augment must be true or false"),
    ("grad_checkpointing", "yes", "--grad-checkpointing must be true or false"),
])
def test_bad_view_options_name_their_field(big_pack_path, field, value, needle):
    with pytest.raises(ConfigError, match=None) as err:
        resolve(get_pack_spec(str(big_pack_path)), method="contrastive", **{field: value})
    assert err.value.field == field and needle in str(err.value)


def test_a_run_json_from_before_cutouts_still_reads(big_pack_path):
    c = resolve(get_pack_spec(str(big_pack_path)), method="contrastive")
    old = {k: v for k, v in c.to_dict().items()
           if k not in ("cutouts", "cut_pow", "augment", "grad_checkpointing")}
    back = RunConfig.from_dict(old)
    assert (back.cutouts, back.cut_pow, back.augment, back.grad_checkpointing) == (0, 1.0, False, False)
    assert RunConfig.from_dict(c.to_dict()) == c
