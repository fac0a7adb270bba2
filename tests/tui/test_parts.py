"""Unit tests of the TUI's pure parts: rendering, coalescing, caching, themes, text."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rich.color import ColorTriplet

from clipterm.errors import ModelUnavailableError
from clipterm.events import StepEvent
from clipterm.tui.bars import bar
from clipterm.tui.form_model import initial_values
from clipterm.tui.halfblock import UPPER_HALF, fit_factor, halfblock_lines, resize, xterm256
from clipterm.tui.latest import LatestSlot
from clipterm.tui.pack_cache import PackCache
from clipterm.tui.runner import describe_error
from clipterm.tui.status_line import clock, describe_event, sparkline
from clipterm.tui.themes import load_themes, repo_themes_dir


def test_halfblocks_are_pixel_exact() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    lines = halfblock_lines(img)
    assert len(lines) == 16 and all(len(line) == 32 for line in lines)
    for y in (0, 7, 15):
        for x in (0, 13, 31):
            seg = lines[y][x]
            assert seg.text == UPPER_HALF
            assert seg.style.color.get_truecolor() == ColorTriplet(*img[2 * y, x])
            assert seg.style.bgcolor.get_truecolor() == ColorTriplet(*img[2 * y + 1, x])


def test_odd_height_has_no_background_on_the_last_row() -> None:
    img = np.full((3, 2, 3), 200, dtype=np.uint8)
    lines = halfblock_lines(img)
    assert len(lines) == 2 and lines[1][0].style.bgcolor is None


def test_256_colours_keep_grey_pixels_grey() -> None:
    """A 256-colour terminal (tmux without truecolor): grey and near-grey pixels come from the
    grey ramp (no coloured speckles in grey digits); colours from the cube; never the 16
    system colours, which themes redefine."""
    greys = np.array([[[v, v, v] for v in range(0, 256, 5)]], dtype=np.uint8)
    tinted = np.array([[[120, 118, 128], [60, 66, 57], [200, 190, 205]]], dtype=np.uint8)
    for img in (greys, tinted):
        idx = xterm256(img)
        assert np.all((idx >= 232) | (idx == 16) | (idx == 231)), idx
    assert xterm256(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)).tolist() == [[16, 231]]
    # grey levels stay in order (no level maps darker than a darker one)
    order = xterm256(greys)[0]
    values = [0 if i == 16 else 255 if i == 231 else 8 + 10 * (i - 232) for i in order]
    assert values == sorted(values)
    colours = xterm256(np.array([[[255, 0, 0], [0, 0, 255], [0, 135, 95]]], np.uint8))[0]
    assert colours.tolist() == [196, 21, 16 + 36 * 0 + 6 * 2 + 1]
    assert np.all(xterm256(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)) >= 16)
    lines = halfblock_lines(tinted, colours="256")
    assert lines[0][0].style.color.number == xterm256(tinted)[0, 0]


def test_every_preview_segment_has_a_style() -> None:
    """Textual's NO_COLOR filter fails on segments without a style."""
    img = np.zeros((5, 4, 3), dtype=np.uint8)
    assert all(seg.style is not None for line in halfblock_lines(img) for seg in line)


def test_resize_repeats_pixels_and_box_filters() -> None:
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    big = resize(img, 8, 8)
    assert np.array_equal(big[::2, ::2], img) and np.array_equal(big[1::2, 1::2], img)
    small = resize(img, 2, 2)
    assert np.array_equal(small[0, 0], img[:2, :2].mean(axis=(0, 1)).round().astype(np.uint8))


def test_fit_factor_prefers_whole_upscales() -> None:
    assert fit_factor(32, 32, 34, 16) == 1.0
    assert fit_factor(8, 8, 34, 16) == 4.0
    assert fit_factor(32, 32, 70, 40) == 2.0
    assert fit_factor(32, 32, 20, 10) == 0.5


def test_latest_slot_keeps_only_the_newest() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.take() is None
    for i in range(5):
        slot.put(i)
    assert slot.take() == 4 and slot.take() is None
    assert slot.counts == (5, 1)


def test_pack_cache_loads_once_for_concurrent_callers() -> None:
    calls: list[tuple[str, str]] = []

    def loader(model: str, device: str) -> object:
        calls.append((model, device))
        time.sleep(0.05)
        return object()

    cache = PackCache(loader)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("m", "cpu"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [("m", "cpu")] and len({id(r) for r in results}) == 1
    assert cache.peek("m", "cpu") is results[0] and cache.peek("m", "cuda") is None


def test_pack_cache_does_not_cache_failures() -> None:
    attempts = []

    def loader(model: str, device: str) -> str:
        attempts.append(model)
        if len(attempts) == 1:
            raise ModelUnavailableError("not yet")
        return "pack"

    cache = PackCache(loader)
    with pytest.raises(ModelUnavailableError):
        cache.get("m", "cpu")
    assert cache.get("m", "cpu") == "pack" and len(attempts) == 2


def test_shipped_themes_load_and_broken_ones_are_reported(tmp_path) -> None:
    (tmp_path / "bad-toml.toml").write_text("name = ")
    (tmp_path / "bad-colour.toml").write_text('name = "x"\nprimary = "not-a-colour"\n')
    (tmp_path / "unknown.toml").write_text('name = "y"\nprimary = "#fff"\nsparkle = 1\n')
    (tmp_path / "mine.toml").write_text(
        'name = "mine"\nprimary = "#112233"\ndark = false\n[variables]\ntarget-bar = "#00ff00"\n'
    )
    report = load_themes([repo_themes_dir(), tmp_path, tmp_path / "missing"])
    names = {t.name for t in report.themes}
    assert {"clipterm-night", "clipterm-paper", "clipterm-phosphor", "mine"} <= names
    mine = next(t for t in report.themes if t.name == "mine")
    assert mine.dark is False and mine.variables["target-bar"] == "#00ff00"
    assert len(report.errors) == 3
    joined = "\n".join(report.errors)
    assert "bad-toml.toml skipped: not valid TOML" in joined
    assert "'not-a-colour' is not a colour" in joined
    assert "unknown key 'sparkle'" in joined


def _event(**kw: object) -> StepEvent:
    base: dict[str, object] = dict(
        method="contrastive",
        phase="sample",
        step=25,
        total=50,
        timestep=500,
        batch_index=0,
        n_batches=1,
        sample_offset=0,
        n_samples=4,
        elapsed=5.0,
        captions=("a", "b"),
        probs=None,
        preview=None,
    )
    base.update(kw)
    return StepEvent(**base)  # type: ignore[arg-type]


def test_status_text_has_rate_eta_and_loss() -> None:
    text = describe_event(_event(), "cpu")
    assert text == "contrastive · step 25/50 · t=500 · 5.0 it/s · 0:05 elapsed · ETA 0:05 · cpu"
    opt = describe_event(
        _event(method="optimize", phase="optimize", step=3, total=10, loss=0.25, elapsed=3.0),
        "cuda:0",
        "512 MiB",
        losses=[0.5, 0.4, 0.25],
    )
    assert "iter 3/10" in opt and "loss 0.2500 █▅▁" in opt and "512 MiB" in opt
    assert sparkline([1.0, 1.0]) == "▄▄" and sparkline([]) == ""
    assert clock(3725) == "1:02:05"


def test_bar_fills_in_eighths() -> None:
    assert bar(0.5, 4) == "██  "
    assert bar(1 / 8, 4) == "▌   " and bar(1 / 16, 4) == "▎   "
    assert bar(float("nan"), 3) == "   " and bar(2.0, 2) == "██"


def test_errors_read_as_one_line() -> None:
    from clipterm.config import RunConfig

    oom = RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")
    assert describe_error(oom, RunConfig(method="uncond", prompt="x", distractors=(), n=64, batch=64, steps=5, seed=0)) == (
        "out of memory: try a smaller batch (now 64) or fewer samples"
    )
    assert describe_error(ModelUnavailableError("no weights")) == "no weights"
    assert describe_error(KeyError("x")) == "KeyError: 'x'"


def test_initial_values_prefer_options_then_memory() -> None:
    remembered = {"model": "cifar10", "prompt": "cat", "distractors": "dog\nbird", "seed": "7"}
    same = initial_values({"model": None}, remembered)
    assert (same["prompt"], same["distractors"], same["seed"]) == ("cat", "dog\nbird", "7")
    # a prompt from the command line drops itself from the remembered distractors
    prompt = initial_values({"prompt": "dog"}, remembered)
    assert prompt["prompt"] == "dog" and prompt["distractors"] == "bird"
    # another model: the remembered prompt belongs to the old one
    other = initial_values({"model": "digits"}, remembered)
    assert other["model"] == "digits" and other["prompt"] != "cat" and other["seed"] == "7"
