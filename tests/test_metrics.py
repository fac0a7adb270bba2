"""Evaluation core: KID against references, feature modules, judge scores, real-image loading."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import clipterm
from clipterm.errors import ConfigError, ModelUnavailableError, UserError
from clipterm.metrics import (
    ClipFeatures,
    JudgeFeatures,
    as_nchw_uint8,
    extract_features,
    inception_features,
    judge_scores,
    kid,
)
from clipterm.realdata import load_real_images

SHIPPED_JUDGE = Path(clipterm.__file__).parent / "packs" / "digits" / "judge"


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def numpy_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out with explicit loops over pairs."""
    d = x.shape[1]
    m = x.shape[0]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (m * m)


# ----------------------------------------------------------------------------- KID numbers
def test_kid_same_distribution_is_about_zero_and_different_is_clearly_positive() -> None:
    a, b = gaussian(300, 16, 0), gaussian(300, 16, 1)
    far = gaussian(300, 16, 2, shift=1.0)
    same_mean, same_std = kid(a, b, subset_size=100, subsets=50)
    far_mean, far_std = kid(a, far, subset_size=100, subsets=50)
    assert abs(same_mean) < 0.05
    assert far_mean > 2.0
    assert far_mean > 5 * far_std
    assert same_std > 0.0


def test_kid_identical_sets_is_about_zero() -> None:
    a = gaussian(300, 16, 0)
    far = gaussian(300, 16, 2, shift=1.0)
    ident_mean, _ = kid(a, a.clone(), subset_size=100, subsets=50)
    far_mean, _ = kid(a, far, subset_size=100, subsets=50)
    assert abs(ident_mean) < 0.01 * far_mean
    # torchmetrics' estimator keeps the x_i == y_j pairs in the cross term, so when the two
    # subsets share points (they must, here) the estimate is pulled slightly below zero.
    assert ident_mean < 0.0


def test_kid_matches_numpy_reference_on_the_full_set() -> None:
    x, y = gaussian(12, 5, 3), gaussian(12, 5, 4, shift=0.3)
    expected = numpy_unbiased_mmd2(x.numpy(), y.numpy())
    mean, std = kid(x, y, subset_size=12, subsets=4)
    assert mean == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)  # every subset is the whole set
    assert kid(y, x, subset_size=12, subsets=4)[0] == pytest.approx(expected, rel=1e-10)


def test_kid_matches_torchmetrics_used_directly() -> None:
    from torchmetrics.image.kid import KernelInceptionDistance

    gen, real = gaussian(40, 8, 5, shift=0.2), gaussian(60, 8, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = KernelInceptionDistance(feature=nn.Identity(), subsets=20, subset_size=30)
    metric.update(real, real=True)
    metric.update(gen, real=False)
    torch.manual_seed(11)
    tm_mean, tm_std = metric.compute()
    mean, std = kid(gen, real, subset_size=30, subsets=20, seed=11)
    assert mean == pytest.approx(float(tm_mean), rel=1e-9)
    assert std == pytest.approx(float(tm_std), rel=1e-9)


def test_kid_std_is_the_population_std_over_subsets() -> None:
    """Replays torchmetrics' draws (per subset: randperm(real), then randperm(fake))."""
    gen, real = gaussian(30, 6, 7, shift=0.5), gaussian(45, 6, 8)
    subset_size, subsets, seed = 10, 15, 3
    torch.manual_seed(seed)
    values = []
    for _ in range(subsets):
        r = real[torch.randperm(len(real))[:subset_size]].numpy()
        f = gen[torch.randperm(len(gen))[:subset_size]].numpy()
        values.append(numpy_unbiased_mmd2(r, f))
    mean, std = kid(gen, real, subset_size=subset_size, subsets=subsets, seed=seed)
    assert mean == pytest.approx(np.mean(values), rel=1e-9)
    assert std == pytest.approx(np.std(values, ddof=0), rel=1e-9)
    assert std != pytest.approx(np.std(values, ddof=1), rel=1e-3)


def test_kid_is_seeded_and_leaves_the_global_rng_alone() -> None:
    gen, real = gaussian(50, 4, 9, shift=0.3), gaussian(50, 4, 10)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = kid(gen, real, subset_size=10, subsets=10, seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)
    assert kid(gen, real, subset_size=10, subsets=10, seed=5) == first
    assert kid(gen, real, subset_size=10, subsets=10, seed=6) != first


def test_kid_subset_size_too_large_names_the_largest_valid_value() -> None:
    gen, real = gaussian(40, 4, 0), gaussian(60, 4, 1)
    with pytest.raises(ConfigError) as info:
        kid(gen, real, subset_size=50)
    message = str(info.value)
    assert "\n" not in message
    assert "largest valid value is 40" in message
    assert "50" in message
    with pytest.raises(ConfigError, match="largest valid value is 40"):
        kid(gen, real, subset_size=1)
    assert kid(gen, real, subset_size=40, subsets=2)[0] == pytest.approx(
        kid(gen, real, subset_size=40, subsets=2)[0]
    )


def test_kid_rejects_mismatched_feature_sizes() -> None:
    with pytest.raises(ValueError, match="feature sizes differ"):
        kid(gaussian(10, 4, 0), gaussian(10, 5, 1), subset_size=5)


# ----------------------------------------------------------------------------- features
def tiny_judge(seed: int = 0, favour: int | None = None):
    from clipterm.judge import DigitJudge, JudgeConfig

    torch.manual_seed(seed)
    judge = DigitJudge(JudgeConfig(image_size=8, channels=(4, 8), feature_dim=6))
    if favour is not None:
        with torch.no_grad():
            judge.head.weight.zero_()
            judge.head.bias.fill_(-5.0)
            judge.head.bias[favour] = 5.0
    return judge.eval()


def random_images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_as_nchw_uint8_layouts() -> None:
    nhwc = random_images(2, 5, 0)
    nchw = as_nchw_uint8(nhwc)
    assert nchw.shape == (2, 3, 5, 5) and nchw.dtype == torch.uint8
    assert torch.equal(as_nchw_uint8(nchw), nchw)
    assert torch.equal(as_nchw_uint8(nchw.float() / 255.0), nchw)  # rounded back exactly


def test_judge_features_accept_uint8_and_float_and_use_eval_mode() -> None:
    judge = tiny_judge()
    images = as_nchw_uint8(random_images(5, 8, 1))
    expected = judge.features(images.float() / 255.0)
    module = JudgeFeatures(judge, batch_size=2)
    assert torch.allclose(module(images), expected, atol=1e-6)
    assert torch.allclose(module(images.float() / 255.0), expected, atol=1e-6)
    judge.train()
    assert torch.allclose(module(images), expected, atol=1e-6)  # BatchNorm running stats
    assert judge.training


def test_clip_features_are_the_packs_own_embeddings_in_batches(tiny_loaded) -> None:
    """ClipFeatures goes through the pack's encode path (resize, normalise, encode, unit norm),
    batch by batch, from uint8 or [0, 1] input."""
    images = as_nchw_uint8(random_images(5, tiny_loaded.image_size, 3))
    with torch.no_grad():
        expected = tiny_loaded.encode_image(images.float() / 255.0).cpu()
    module = ClipFeatures(tiny_loaded, batch_size=2)
    got = module(images)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(module(images.float() / 255.0), expected, atol=1e-6)


def test_inception_without_torch_fidelity_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails, whatever is installed
    with pytest.raises(ModelUnavailableError) as info:
        inception_features()
    assert "\n" not in str(info.value)
    assert "torch-fidelity" in str(info.value)


@pytest.mark.slow
def test_inception_features_from_files_in_the_real_format_match_the_library(tmp_path) -> None:
    """torch-fidelity's own Inception-v3 names and shapes (random weights), as a .pth and as
    safetensors: clipterm's checked loading gives exactly the network the library builds."""
    pytest.importorskip("torch_fidelity")
    from safetensors.torch import save_file
    from torchmetrics.image.fid import NoTrainInceptionV3

    from tests.adversarial.evaldata import inception_state_dict

    state = inception_state_dict()
    torch.save(state, tmp_path / "inception.pth")
    save_file(state, str(tmp_path / "inception.safetensors"))
    images = as_nchw_uint8(random_images(2, 8, 4))
    reference = NoTrainInceptionV3(  # our own file of plain tensors: safe to hand the library
        name="inception-v3-compat", features_list=["2048"],
        feature_extractor_weights_path=str(tmp_path / "inception.pth"))
    with torch.no_grad():
        expected = reference(images).float()
    for name in ("inception.pth", "inception.safetensors"):
        got = inception_features(tmp_path / name)(images)
        assert got.shape == (2, 2048)
        assert torch.allclose(got, expected, atol=1e-5), name


# ----------------------------------------------------------------------------- judge scores
def test_judge_scores_count_the_judged_class() -> None:
    judge = tiny_judge(favour=3)
    images = random_images(7, 8, 4)
    hit = judge_scores(judge, images, target_index=3)
    assert hit["target_share"] == 1.0
    assert hit["histogram"] == [0, 0, 0, 7, 0, 0, 0, 0, 0, 0]
    assert hit["confidence"] == pytest.approx(hit["target_probability"])
    assert hit["confidence"] > 0.99
    miss = judge_scores(judge, images, target_index=2)
    assert miss["target_share"] == 0.0
    assert miss["target_probability"] < 0.01
    assert hit["class_names"][3] == "three"


def test_judge_scores_agree_with_the_logits() -> None:
    judge = tiny_judge(seed=1)
    images = random_images(40, 8, 5)
    with torch.no_grad():
        probs = torch.softmax(judge(as_nchw_uint8(images).float() / 255.0), dim=-1)
    judged = probs.argmax(dim=1)
    target = int(judged[0])
    scores = judge_scores(judge, images, target_index=target)
    assert scores["n"] == 40
    assert sum(scores["histogram"]) == 40
    assert scores["histogram"] == torch.bincount(judged, minlength=10).tolist()
    assert scores["target_share"] == pytest.approx(float((judged == target).float().mean()))
    assert scores["confidence"] == pytest.approx(float(probs.max(dim=1).values.mean()), rel=1e-5)
    with pytest.raises(ConfigError, match="outside"):
        judge_scores(judge, images, target_index=10)


@pytest.mark.skipif(not SHIPPED_JUDGE.is_dir(), reason="the digits pack has no judge yet")
def test_shipped_judge_recognises_real_sevens() -> None:
    from clipterm.judge import load_judge

    judge = load_judge(SHIPPED_JUDGE)
    sevens = load_real_images("digits:seven", 32)
    scores = judge_scores(judge, sevens, target_index=7)
    assert scores["target_share"] > 0.9
    assert scores["confidence"] > 0.5


# ----------------------------------------------------------------------------- Evaluator
def test_evaluator_scores_are_kid_and_judge_scores_of_its_features() -> None:
    from clipterm.evaluate import Evaluator

    judge = tiny_judge(seed=2)
    gen, real = random_images(12, 8, 6), random_images(15, 8, 7)
    feats = JudgeFeatures(judge)
    ev = Evaluator(features="judge", feature_module=feats, real_label="test",
                   real_features=extract_features(feats, real).double(), subset_size=10,
                   subsets=5, judge=judge, target_index=1)
    result = ev.evaluate(gen)
    expected = kid(feats(as_nchw_uint8(gen)), feats(as_nchw_uint8(real)), 10, 5, seed=0)
    assert (result["kid_mean"], result["kid_std"]) == pytest.approx(expected)
    assert result["n"] == 12 and result["n_real"] == 15
    scores = judge_scores(judge, gen, 1)
    assert result["judged_share"] == scores["target_share"]
    assert result["judge_confidence"] == scores["confidence"]
    with pytest.raises(ConfigError, match="largest valid value is 12"):
        Evaluator(features="judge", feature_module=feats, real_label="test",
                  real_features=ev.real_features, subset_size=13).evaluate(gen)


# ----------------------------------------------------------------------------- real images
def test_load_folder_converts_resizes_and_sorts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.full((16, 16), 200, dtype=np.uint8)).save(tmp_path / "a.png")  # grey
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(tmp_path / "c.PNG")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "d.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_real_images(str(tmp_path), 16)
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.uint8
    assert (images[0] == 200).all()  # a.png first, grey replicated to RGB


def test_load_folder_reports_a_corrupt_file(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(UserError) as info:
        load_real_images(str(tmp_path), 8)
    assert "broken.png" in str(info.value)
    assert "\n" not in str(info.value)


def test_load_folder_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no PNG or JPEG"):
        load_real_images(str(tmp_path), 8)
    with pytest.raises(ConfigError, match="not found"):
        load_real_images(str(tmp_path / "nowhere"), 8)


def test_load_digits_class_and_errors() -> None:
    from clipterm.data import real_digit_images

    sevens = load_real_images("digits:seven", 32)
    assert sevens.dtype == np.uint8 and sevens.shape[1:] == (32, 32, 3)
    assert np.array_equal(sevens, real_digit_images("seven", split="test"))
    assert np.array_equal(load_real_images("digits:7", 32), sevens)
    assert load_real_images("digits:seven", 16).shape[1:] == (16, 16, 3)
    with pytest.raises(ConfigError, match="zero, one, two"):
        load_real_images("digits:eleven", 32)


def test_cifar10_missing_is_a_one_line_error_and_unknown_class_lists_names(tmp_path) -> None:
    with pytest.raises(ModelUnavailableError) as info:
        load_real_images("cifar10:airplane", 32, data_root=tmp_path)
    assert "\n" not in str(info.value) and "--download" in str(info.value)
    with pytest.raises(ConfigError, match="airplane, automobile, bird"):
        load_real_images("cifar10:plane", 32, data_root=tmp_path)


def test_cifar10_selects_the_class_and_resizes(monkeypatch) -> None:
    import torchvision.datasets

    class FakeCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            n = 6 if train else 4
            self.data = np.stack([np.full((32, 32, 3), i, dtype=np.uint8) for i in range(n)])
            self.targets = [i % 2 for i in range(n)]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    test = load_real_images("cifar10:automobile", 16)
    assert test.shape == (2, 16, 16, 3)
    assert [int(im[0, 0, 0]) for im in test] == [1, 3]
    assert load_real_images("cifar10:airplane", 32, split="all").shape == (5, 32, 32, 3)
