"""The samplers against diffusers, finite differences, and their own invariants."""

from __future__ import annotations

import copy
import math
import threading

import numpy as np
import pytest
import torch

from clipterm import guidance
from clipterm.config import RunConfig, resolve
from clipterm.guide import CaptionScorer, Guide, clip_view
from clipterm.models import load_pack
from clipterm.optimize import ddim_chain
from clipterm.reporting import Reporter
from clipterm.sampling import sample
from clipterm.schedule import ddim_step, ddpm_step, guidance_shift, make_schedule, predict_x0
from clipterm.seeds import StepNoise, initial_noise


def cfg_for(pack, **kw) -> RunConfig:
    base = dict(method="contrastive", prompt="one", distractors=("zero", "two", "three"), n=4, batch=4)
    base.update(kw)
    return resolve(pack.spec, **base)


def guided_eps(eps, grad, abar_t, scale):
    """The guided noise prediction eps_hat = eps - sqrt(1 - abar_t) gamma grad (the eps form)."""
    return eps - (1 - abar_t).sqrt() * scale * grad


# ----------------------------------------------------------------------------- vs diffusers
@pytest.mark.parametrize("variance_type", ["fixed_large", "fixed_small"])
@pytest.mark.parametrize("steps", [1000, 25])
def test_ddpm_step_equals_diffusers(tiny_loaded, variance_type, steps):
    from diffusers import DDPMScheduler

    cfg = dict(tiny_loaded.scheduler.config)
    cfg["variance_type"] = variance_type
    ref = DDPMScheduler.from_config(cfg)
    ref.set_timesteps(steps)
    sched = make_schedule(ref, "ddpm", steps, torch.device("cpu"))
    sched = type(sched)(**{**sched.__dict__, "variance_type": variance_type})
    torch.manual_seed(0)
    x = torch.randn(3, 3, 8, 8) * 1.5
    eps = torch.randn(3, 3, 8, 8)
    for k in (0, len(sched) // 2, len(sched) - 1):
        t = sched.timesteps[k]
        gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
        expected = ref.step(eps, t, x, generator=gens).prev_sample
        gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
        noise = torch.cat([torch.randn((1, 3, 8, 8), generator=g) for g in gens])
        got, _ = ddpm_step(x, eps, sched.abar[k], sched.abar_prev[k], t, noise,
                           sched.variance_type, sched.clip_sample)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_equals_diffusers(tiny_loaded, eta):
    from diffusers import DDIMScheduler

    ref = DDIMScheduler.from_config(tiny_loaded.scheduler.config)
    ref.set_timesteps(20)
    sched = make_schedule(tiny_loaded.scheduler, "ddim", 20, torch.device("cpu"))
    assert list(sched.timesteps) == [int(t) for t in ref.timesteps]
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 8)
    eps = torch.randn(2, 3, 8, 8)
    for k in (0, 7, 19):
        t = sched.timesteps[k]
        g = torch.Generator().manual_seed(5)
        expected = ref.step(eps, t, x, eta=eta, generator=g).prev_sample
        g = torch.Generator().manual_seed(5)
        noise = torch.randn((2, 3, 8, 8), generator=g)
        got, _ = ddim_step(x, eps, sched.abar[k], sched.abar_prev[k], eta, noise, sched.clip_sample)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_ddim_chain_strides_the_1000_step_schedule(tiny_loaded):
    """The seed built a fresh 50-step schedule (model queried at t=0..49); ours strides 1000."""
    sched = make_schedule(tiny_loaded.scheduler, "ddim", 20, torch.device("cpu"))
    assert sched.timesteps[0] == 950 and sched.timesteps[-1] == 0
    assert all(a - b == 50 for a, b in zip(sched.timesteps, sched.timesteps[1:], strict=False))
    full = tiny_loaded.scheduler.alphas_cumprod
    torch.testing.assert_close(sched.abar, torch.stack([full[t] for t in sched.timesteps]).float())
    assert float(sched.abar[0]) < 0.01  # truly noisy at the start, unlike a fresh short schedule


def test_guidance_shift_is_the_posters_mean():
    """DDPM step + shift = (x - beta/sqrt(1-abar) eps + gamma beta g)/sqrt(alpha), the seed's update,
    and for both samplers the shift is what eps_hat = eps - sqrt(1-abar) gamma g changes in an
    unclipped step."""
    torch.manual_seed(2)
    x, eps, g = (torch.randn(3, 2, 4, 4, dtype=torch.float64) for _ in range(3))
    abar_prev = torch.tensor(0.6, dtype=torch.float64)
    abar_t = torch.tensor(0.55, dtype=torch.float64)
    alpha, beta, gamma = abar_t / abar_prev, 1 - abar_t / abar_prev, 3.0

    plain, _ = ddpm_step(x, eps, abar_t, abar_prev, 5, None, "fixed_large", None)
    got = plain + guidance_shift("ddpm", g, abar_t, abar_prev, gamma)
    poster = (x - beta / (1 - abar_t).sqrt() * eps + gamma * beta * g) / alpha.sqrt()
    torch.testing.assert_close(got, poster)
    hat = guided_eps(eps, g, abar_t, gamma)
    for eta in (0.0, 0.5):
        a, _ = ddim_step(x, hat, abar_t, abar_prev, eta, None, None)
        b, _ = ddim_step(x, eps, abar_t, abar_prev, eta, None, None)
        torch.testing.assert_close(guidance_shift("ddim", g, abar_t, abar_prev, gamma, eta), a - b)


def test_unclipped_ddpm_run_is_the_seed_update(tiny_loaded):
    """clip_x0=False (the poster preset) runs the seed's update with no clip anywhere:
    x = (x - beta/sqrt(1-abar) eps) / sqrt(alpha) + sqrt(beta) z, here with gamma = 0."""
    from dataclasses import replace

    pack = tiny_loaded
    cfg = cfg_for(pack, method="uncond", n=3, batch=3, steps=6, sampler="ddpm", clip_x0=False)
    got = sample(pack, cfg)
    sched = make_schedule(pack.scheduler, "ddpm", 6, pack.device)
    assert sched.clip_sample is not None  # the model's scheduler clips; this run must not
    idx = [0, 1, 2]
    x = initial_noise(cfg.seed, idx, (3, 8, 8), pack.device)
    noise = StepNoise(cfg.seed, idx, (3, 8, 8), pack.device)
    clipped_somewhere = False
    with torch.no_grad():
        for k, t in enumerate(sched.timesteps):
            abar, alpha = sched.abar[k], sched.abar[k] / sched.abar_prev[k]
            beta = 1 - alpha
            eps = pack.unet(x, torch.full((3,), t, dtype=torch.long)).sample
            clipped_somewhere |= bool((predict_x0(x, eps, abar).abs() > 1).any())
            x = (x - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
            z = noise()
            if t > 0:
                x = x + beta.sqrt() * z
    expected = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(got.images.astype(int) - expected.astype(int)).max() <= 1
    assert clipped_somewhere  # so the default (clipping) run differs from this one
    default = sample(pack, replace(cfg, clip_x0=True))
    assert not np.array_equal(default.images, got.images)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_guidance_moves_along_the_gradient_when_x0_is_clipped(kind):
    """Early in the chain x0_hat lies far outside [-1, 1]. Pushing eps_hat through the clipping
    step loses the x0 part of the correction, and for DDIM the rest points *against* the gradient
    (the bug that made guidance lower p(target) on clip_sample models). The shift never does."""
    torch.manual_seed(3)
    abar_t, abar_prev = torch.tensor(0.05), torch.tensor(0.07)
    x, eps, g = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    x = 5 * x  # x0_hat = (x - sqrt(1-abar) eps) / sqrt(abar) is saturated almost everywhere
    assert (predict_x0(x, eps, abar_t).abs() > 1).float().mean() > 0.9

    def step(e):
        if kind == "ddpm":
            return ddpm_step(x, e, abar_t, abar_prev, 5, None, "fixed_large", 1.0)[0]
        return ddim_step(x, e, abar_t, abar_prev, 0.0, None, 1.0)[0]

    shift = guidance_shift(kind, g, abar_t, abar_prev, 1.0)
    assert float((shift * g).sum()) > 0
    through_clip = step(guided_eps(eps, g, abar_t, 1.0)) - step(eps)
    if kind == "ddim":
        assert float((through_clip * g).sum()) < 0
    else:
        assert float(through_clip.abs().sum()) < 0.1 * float(shift.abs().sum())


# ----------------------------------------------------------------------------- gradients
@pytest.fixture(scope="module")
def pack64(tiny_pack):
    """The tiny pack in float64, for finite differences."""
    p = copy.copy(load_pack(str(tiny_pack), device="cpu", cache=False))
    p.unet = copy.deepcopy(p.unet).double()
    p.clip = copy.deepcopy(p.clip).double()
    p._text_cache = {}
    return p


@pytest.mark.parametrize("method", ["contrastive", "spherical"])
@pytest.mark.parametrize("clip_input", ["x0", "xt"])
def test_guidance_gradient_matches_finite_differences(pack64, method, clip_input):
    cfg = cfg_for(pack64, method=method, clip_input=clip_input, n=2, batch=2)
    text = pack64.encode_text(cfg.captions)
    scale = pack64.logit_scale
    t = 600
    abar = pack64.scheduler.alphas_cumprod[t].double()
    torch.manual_seed(3)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    guide = Guide(pack64, cfg, CaptionScorer(pack64, cfg.captions))
    grad, _, _ = guide.gradient(x, t, abar)

    def f(xx: torch.Tensor) -> float:
        with torch.no_grad():
            eps = pack64.unet(xx, torch.full((2,), t, dtype=torch.long)).sample
            x0 = predict_x0(xx, eps, abar) if clip_input == "x0" else xx
            emb = pack64.encode_clip_input(clip_view(cfg, xx, x0), already_normalised=False)
            logits = scale * emb @ text.T
            if method == "contrastive":
                return float((logits[:, 0] - torch.logsumexp(logits, dim=1)).sum())
            return float(-guidance.spherical_distance(emb, text[0]).sum())

    gen = torch.Generator().manual_seed(4)
    for _ in range(3):
        v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        h = 1e-5
        fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
        ad = float((grad * v).sum())
        assert math.isclose(ad, fd, rel_tol=1e-4, abs_tol=1e-8), (ad, fd)
    assert float(grad.abs().sum()) > 0


def test_spherical_distance_formula():
    theta = torch.tensor([0.0, 0.3, 1.0, math.pi / 2, math.pi])
    a = torch.stack([torch.ones_like(theta), torch.zeros_like(theta)], dim=1)
    b = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    torch.testing.assert_close(guidance.spherical_distance(a, b), theta**2 / 2, atol=1e-6, rtol=1e-5)


def test_contrastive_log_prob_is_log_softmax_at_target():
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.1, 1.0]]), dim=-1)
    txt = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    logits = 10 * img @ txt.T
    expected = logits[:, 0] - torch.logsumexp(logits, dim=1)
    torch.testing.assert_close(guidance.contrastive_log_prob(img, txt, 10.0), expected)
    probs = guidance.caption_probs(img, txt, 10.0)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))


def test_nonfinite_gradients_are_dropped_and_counted():
    g = torch.ones(3, 2, 2, 2)
    g[1, 0, 0, 0] = float("nan")
    g[2, 1, 1, 1] = float("inf")
    out, bad = guidance.drop_nonfinite(g)
    assert int(bad) == 2
    assert torch.isfinite(out).all()
    assert float(out[0].sum()) == 8 and float(out[1].abs().sum()) == 0


def test_rms_normalise_unit_rms_per_sample():
    g = torch.randn(4, 3, 8, 8) * torch.tensor([1e-6, 1.0, 5.0, 300.0]).view(4, 1, 1, 1)
    n = guidance.rms_normalise(g)
    torch.testing.assert_close(n.pow(2).mean(dim=(1, 2, 3)).sqrt(), torch.ones(4), rtol=1e-4, atol=1e-4)


def test_checkpointed_and_plain_backprop_agree(tiny_loaded):
    sched = make_schedule(tiny_loaded.scheduler, "ddim", 8, torch.device("cpu"))
    x_T = initial_noise(0, [0, 1], (3, 8, 8), torch.device("cpu"))
    target = tiny_loaded.encode_text(("one",))[0]
    grads = []
    for ckpt in (True, False):
        p = x_T.clone().requires_grad_(True)
        x0 = ddim_chain(tiny_loaded, p, sched, use_checkpoint=ckpt)
        loss = guidance.cosine_distance(tiny_loaded.encode_image((x0 + 1) / 2), target).sum()
        loss.backward()
        grads.append(p.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    assert float(grads[0].abs().sum()) > 0


# ----------------------------------------------------------------------------- runs
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("method", ["contrastive", "spherical"])
def test_scale_zero_reproduces_uncond_exactly(tiny_loaded, sampler, method):
    eta = 0.5 if sampler == "ddim" else 0.0
    base = sample(tiny_loaded, cfg_for(tiny_loaded, method="uncond", sampler=sampler, eta=eta, steps=6,
                                       distractors=None))
    guided = sample(tiny_loaded, cfg_for(tiny_loaded, method=method, sampler=sampler, eta=eta,
                                         steps=6, scale=0.0))
    np.testing.assert_array_equal(base.images, guided.images)


def test_guidance_changes_samples_and_raises_target_probability(tiny_loaded):
    base = sample(tiny_loaded, cfg_for(tiny_loaded, method="uncond", steps=8, n=8, batch=8))
    guided = sample(tiny_loaded, cfg_for(tiny_loaded, method="contrastive", steps=8, n=8, batch=8,
                                         scale=3.0))
    assert not np.array_equal(base.images, guided.images)
    assert guided.mean_target_prob > base.mean_target_prob


def test_same_seed_same_samples_across_batch_sizes(tiny_loaded):
    a = sample(tiny_loaded, cfg_for(tiny_loaded, method="contrastive", n=5, batch=5, steps=5))
    b = sample(tiny_loaded, cfg_for(tiny_loaded, method="contrastive", n=5, batch=2, steps=5))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    # and a shard of the indices gives the same images as the whole run
    part = sample(tiny_loaded, cfg_for(tiny_loaded, method="contrastive", n=5, batch=5, steps=5),
                  indices=[3, 4])
    np.testing.assert_array_equal(part.images, a.images[3:])
    assert list(part.indices) == [3, 4]


def test_initial_noise_depends_only_on_seed_and_index():
    a = initial_noise(7, [0, 1, 2, 3], (3, 4, 4), torch.device("cpu"))
    b = initial_noise(7, [2, 3], (3, 4, 4), torch.device("cpu"))
    torch.testing.assert_close(a[2:], b)
    c = initial_noise(8, [0], (3, 4, 4), torch.device("cpu"))
    assert not torch.equal(a[0], c[0])
    n1 = StepNoise(7, [5, 6], (3, 4, 4), torch.device("cpu"))
    n2 = StepNoise(7, [6], (3, 4, 4), torch.device("cpu"))
    torch.testing.assert_close(n1()[1:], n2())


def test_methods_start_from_the_same_xT(tiny_loaded):
    """optimize with zero iterations' worth of change (lr tiny) stays near DDIM-from-the-same-x_T."""
    ddim = sample(tiny_loaded, cfg_for(tiny_loaded, method="uncond", sampler="ddim", steps=4, n=2, batch=2))
    opt = sample(tiny_loaded, cfg_for(tiny_loaded, method="optimize", steps=4, n=2, batch=2,
                                      opt_iters=1, lr=1e-9))
    assert np.abs(ddim.images.astype(int) - opt.images.astype(int)).max() <= 1


def test_optimize_reduces_the_clip_loss(tiny_loaded):
    res = sample(tiny_loaded, cfg_for(tiny_loaded, method="optimize", steps=4, n=2, batch=2,
                                      opt_iters=6, lr=0.3))
    assert len(res.losses) == 6
    assert res.losses[-1] < res.losses[0]


def test_optimize_from_init_image(tiny_loaded, tmp_path):
    from PIL import Image

    img = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([img] * 3, -1)).save(tmp_path / "init.png")
    res = sample(tiny_loaded, cfg_for(tiny_loaded, method="optimize", steps=4, n=1, batch=1,
                                      opt_iters=2, init_image=str(tmp_path / "init.png")))
    assert res.images.shape == (1, 8, 8, 3) and res.completed


def test_events_carry_previews_and_probabilities(tiny_loaded):
    events = []
    cfg = cfg_for(tiny_loaded, method="contrastive", n=3, batch=2, steps=4)
    reporter = Reporter(events.append, interval=float("inf"), trace_points=2)
    res = sample(tiny_loaded, cfg, reporter=reporter)
    assert [(e.batch_index, e.step) for e in events] == [(0, 2), (0, 4), (1, 2), (1, 4)]
    e = events[0]
    assert e.preview.dtype == np.uint8 and e.preview.shape == (2, 8, 8, 3)
    assert e.probs.shape == (2, 4)
    np.testing.assert_allclose(e.probs.sum(axis=1), 1.0, atol=1e-5)
    assert e.total == 4 and e.n_batches == 2 and e.captions == cfg.captions
    assert events[-1].progress == 1.0
    assert res.probs.shape == (3, 4) and len(res.prob_trace) == 2


def test_cancel_mid_run_returns_partial_results(tiny_loaded):
    cancel = threading.Event()
    seen = []

    def on_event(ev):
        seen.append(ev)
        if ev.batch_index == 1 and ev.step == 2:
            cancel.set()

    cfg = cfg_for(tiny_loaded, method="contrastive", n=6, batch=2, steps=5)
    res = sample(tiny_loaded, cfg, on_event=on_event, cancel=cancel)
    assert not res.completed
    assert list(res.indices) == [0, 1]
    assert res.images.shape[0] == 2
    assert max(e.step for e in seen if e.batch_index == 1) == 2
    assert res.partial_preview is not None and res.partial_preview.shape == (2, 8, 8, 3)


class _OutOfMemoryAbove(torch.nn.Module):
    """The UNet, failing like CUDA does for batches larger than ``limit``."""

    def __init__(self, unet, limit: int):
        super().__init__()
        self.unet, self.limit, self.config = unet, limit, unet.config
        self.batches: list[int] = []

    def forward(self, x, t):
        self.batches.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")
        return self.unet(x, t)


def test_oom_splits_the_batch_and_keeps_samples(tiny_loaded):
    ref = sample(tiny_loaded, cfg_for(tiny_loaded, method="uncond", n=4, batch=4, steps=3))
    pack = copy.copy(tiny_loaded)
    pack.unet = _OutOfMemoryAbove(tiny_loaded.unet, 2)
    res = sample(pack, cfg_for(tiny_loaded, method="uncond", n=4, batch=4, steps=3))
    assert pack.unet.batches[0] == 4 and res.oom_splits == 1
    np.testing.assert_array_equal(res.images, ref.images)


def test_oom_with_one_sample_fails_the_run_keeping_finished_batches(tiny_loaded):
    from clipterm.errors import RunFailed

    pack = copy.copy(tiny_loaded)
    pack.unet = _OutOfMemoryAbove(tiny_loaded.unet, 0)
    written = []
    with pytest.raises(RunFailed, match="out of memory"):
        sample(pack, cfg_for(tiny_loaded, method="uncond", n=2, batch=2, steps=3),
               on_batch=lambda idx, *_: written.append(idx))
    assert written == []


def test_guide_from_limits_guidance_to_later_timesteps(tiny_loaded, monkeypatch):
    seen: list[int] = []
    real = Guide.gradient

    def spy(self, x, t, abar_t):
        seen.append(t)
        return real(self, x, t, abar_t)

    monkeypatch.setattr(Guide, "gradient", spy)
    sample(tiny_loaded, cfg_for(tiny_loaded, steps=6, n=1, batch=1, guide_from=500))
    sched = make_schedule(tiny_loaded.scheduler, "ddpm", 6, torch.device("cpu"))
    assert seen == [t for t in sched.timesteps if t < 500] and len(seen) == 4
    seen.clear()
    sample(tiny_loaded, cfg_for(tiny_loaded, steps=6, n=1, batch=1))
    assert seen == list(sched.timesteps)


def test_nan_gradients_in_a_run_are_dropped_not_propagated(tiny_loaded, monkeypatch):
    real = Guide.gradient

    def poisoned(self, x, t, abar_t):
        grad, eps, emb = real(self, x, t, abar_t)
        grad = grad.clone()
        grad[0] = float("nan")
        return grad, eps, emb

    monkeypatch.setattr(Guide, "gradient", poisoned)
    res = sample(tiny_loaded, cfg_for(tiny_loaded, steps=5, n=2, batch=2, scale=2.0))
    assert res.nonfinite_skipped == 5
    assert np.isfinite(res.probs).all()
    # sample 0 got no guidance at all: it equals the unguided sample 0
    monkeypatch.setattr(Guide, "gradient", real)
    base = sample(tiny_loaded, cfg_for(tiny_loaded, method="uncond", steps=5, n=2, batch=2,
                                       distractors=None))
    np.testing.assert_array_equal(res.images[0], base.images[0])


def test_samples_that_overflow_are_flagged_and_saved_black(tiny_loaded):
    res = sample(tiny_loaded, cfg_for(tiny_loaded, steps=4, n=2, batch=2, scale=1e30,
                                      grad_norm="none", clip_x0=False))
    assert res.nonfinite_samples == [0, 1]
    assert (res.images == 0).all() and np.isfinite(res.probs).all()


def test_sample_takes_only_a_resolved_config(tiny_loaded):
    with pytest.raises(TypeError, match="RunConfig"):
        sample(tiny_loaded, {"method": "uncond"})
