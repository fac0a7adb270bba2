"""generate and compare with hostile or mistaken options: one line, exit 2, nothing written;
options a method ignores are named in a warning and not recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.adversarial.harness import (
    assert_ok,
    assert_unchanged,
    assert_user_error,
    no_temp_files,
    run_cli,
    snapshot,
)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    """Hostile files for --init-image and --out."""
    (tmp_path / "text.png").write_text("this is text, not an image")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    full = (tmp_path / "noise.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "adir").mkdir()
    bomb = Image.new("1", (20000, 20000))  # 400 megapixels of nothing: a few kB on disk
    bomb.save(tmp_path / "bomb.png")
    return {
        "MISSING": str(tmp_path / "missing.png"), "TEXT": str(tmp_path / "text.png"),
        "TRUNCATED": str(tmp_path / "truncated.png"), "EMPTY": str(tmp_path / "empty.png"),
        "DIR": str(tmp_path / "adir"), "BOMB": str(tmp_path / "bomb.png"),
        "FILE": str(tmp_path / "plain.txt"), "FILE/SUB": str(tmp_path / "plain.txt" / "sub"),
        "GOOD": str(good),
    }


OPT = ["--method", "optimize"]
CASES = [
    # captions
    ("empty prompt", ["--prompt", ""], "prompt is empty"),
    ("blank prompt", ["--prompt", "   "], "prompt is empty"),
    ("zero-width prompt", ["--prompt", "\u200b\u200d\ufeff"], "prompt is empty"),
    ("control-only prompt", ["--prompt", "\x1b\x07\x08"], "prompt is empty"),
    ("distractor = prompt", ["--prompt", "one", "-d", "ONE"], "same as the prompt"),
    ("empty distractor", ["--prompt", "one", "-d", ""], "distractor is empty"),
    ("invisible distractor", ["--prompt", "one", "-d", "\u2060"], "distractor is empty"),
    ("duplicate distractor", ["--prompt", "one", "-d", "two", "-d", " Two "], "given twice"),
    # numbers
    ("steps 0", ["--steps", "0"], "number of steps must be >= 1"),
    ("steps negative", ["--steps", "-5"], "number of steps must be >= 1"),
    ("steps too many", ["--steps", "1001"], "at most the model's 1000"),
    ("steps huge", ["--steps", "1000000000000"], "at most the model's 1000"),
    ("n 0", ["-n", "0"], "number of samples must be >= 1"),
    ("n negative", ["-n", "-3"], "number of samples must be >= 1"),
    ("n absurd", ["-n", "5000000"], "number of samples must be"),
    ("batch 0", ["--batch", "0"], "batch size must be >= 1"),
    ("scale negative", ["--scale", "-1"], "guidance scale must be >= 0"),
    ("scale nan", ["--scale", "nan"], "must be finite"),
    ("scale inf", ["--scale", "inf"], "must be finite"),
    ("scale -inf", ["--scale", "-inf"], "must be finite"),
    ("eta negative", ["--sampler", "ddim", "--eta", "-0.1"], "eta must be in [0, 1]"),
    ("eta above 1", ["--sampler", "ddim", "--eta", "1.5"], "eta must be in [0, 1]"),
    ("eta nan", ["--sampler", "ddim", "--eta", "nan"], "eta must be finite"),
    ("guide-from 0", ["--guide-from", "0"], "guide-from must be >= 1"),
    ("guide-from negative", ["--guide-from", "-3"], "guide-from must be >= 1"),
    ("guide-from beyond", ["--guide-from", "1001"], "a timestep in 1..1000"),
    ("seed negative", ["--seed", "-1"], "seed must be >= 0"),
    ("seed beyond 63 bits", ["--seed", str(2**64)], "seed must be"),
    ("iters 0", [*OPT, "--iters", "0"], "number of iterations must be >= 1"),
    ("lr 0", [*OPT, "--lr", "0"], "learning rate must be > 0"),
    ("lr negative", [*OPT, "--lr", "-1"], "learning rate must be >= 0"),
    ("lr nan", [*OPT, "--lr", "nan"], "learning rate must be finite"),
    # choices
    ("unknown method", ["--method", "magic"], "unknown method"),
    ("method with escape", ["--method", "\x1b[2Jx"], "unknown method"),
    ("unknown sampler", ["--sampler", "euler"], "unknown sampler"),
    ("unknown clip input", ["--clip-input", "z"], "unknown clip input"),
    ("unknown grad norm", ["--grad-norm", "l2"], "unknown grad norm"),
    ("unknown preset", ["--preset", "nope"], "unknown preset"),
    ("unknown device", ["--device", "tpu"], "unknown device"),
    ("bad cuda index", ["--device", "cuda:x"], "device"),
    # files
    ("init image missing", [*OPT, "--init-image", "MISSING"], "not found"),
    ("init image is text", [*OPT, "--init-image", "TEXT"], "not an image"),
    ("init image truncated", [*OPT, "--init-image", "TRUNCATED"], "init image"),
    ("init image empty", [*OPT, "--init-image", "EMPTY"], "not an image"),
    ("init image is a folder", [*OPT, "--init-image", "DIR"], "is not a file"),
    ("init image bomb", [*OPT, "--init-image", "BOMB"], "too large"),
    ("out is a file", ["--out", "FILE"], "is a file"),
    ("out below a file", ["--out", "FILE/SUB"], "is a file"),
]


@pytest.mark.parametrize(("args", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_generate_rejects(args, needle, tiny_pack, tmp_path, files, capsys):
    args = [files.get(a, a) for a in args]
    out = files["DIR"] if "--out" not in args else None
    cmd = ["generate", "--model", str(tiny_pack), "--steps", "2", "-n", "2", *args]
    if out:
        cmd += ["--out", str(tmp_path / "out")]
    before = snapshot(tmp_path)
    assert_user_error(run_cli(cmd, capsys), needle)
    assert_unchanged(before, tmp_path)


COMPARE_CASES = [
    ("empty methods", ["--methods", ""], "--methods is empty"),
    ("commas only", ["--methods", ",,"], "--methods is empty"),
    ("unknown method", ["--methods", "uncond,banana"], "unknown method 'banana'"),
    ("twice", ["--methods", "uncond,uncond"], "names a method twice"),
    ("bad scale", ["--scale", "nan"], "must be finite"),
]


@pytest.mark.parametrize(("args", "needle"), [c[1:] for c in COMPARE_CASES],
                         ids=[c[0] for c in COMPARE_CASES])
def test_compare_rejects(args, needle, tiny_pack, tmp_path, capsys):
    before = snapshot(tmp_path)
    cmd = ["compare", "--model", str(tiny_pack), "--steps", "2", "-n", "1",
           "--out", str(tmp_path / "out"), *args]
    assert_user_error(run_cli(cmd, capsys), needle)
    assert_unchanged(before, tmp_path)


IGNORED = [
    ("scale with uncond", ["--method", "uncond", "--scale", "5"], "uncond does not use --scale",
     {"scale": None}),
    ("lr with contrastive", ["--lr", "0.3", "--iters", "4"], "does not use --iters, --lr",
     {"lr": None, "opt_iters": None}),
    ("sampler with optimize", [*OPT, "--sampler", "ddpm", "--eta", "0.5"],
     "optimize does not use --sampler, --eta", {"sampler": "ddim", "eta": 0.0}),
    ("eta with ddpm", ["--sampler", "ddpm", "--eta", "0.5"], "ddpm sampler does not use --eta",
     {"eta": 0.0}),
    ("guide-from with uncond", ["--method", "uncond", "--guide-from", "500"],
     "does not use --guide-from", {"guide_from": None}),
    ("strength with optimize", [*OPT, "--init-image", "GOOD", "--strength", "0.5"],
     "optimize does not use --strength", {"strength": None}),
    ("guide-every with uncond", ["--method", "uncond", "--guide-every", "2"],
     "does not use --guide-every", {"guide_every": None}),
    ("image prompt with uncond", ["--method", "uncond", "--image-prompt", "GOOD"],
     "does not use --image-prompt", {"image_prompt": None}),
]


@pytest.mark.parametrize(("args", "needle", "recorded"), [c[1:] for c in IGNORED],
                         ids=[c[0] for c in IGNORED])
def test_ignored_options_are_named_and_not_recorded(args, needle, recorded, tiny_pack, tmp_path,
                                                     files, capsys):
    args = [files.get(a, a) for a in args]
    o = run_cli(["generate", "--model", str(tiny_pack), "--steps", "2", "-n", "1",
                 "--out", str(tmp_path / "out"), *args], capsys)
    assert_ok(o)
    warnings = [ln for ln in o.err.splitlines() if ln.startswith("clipterm: warning: ")]
    assert any(needle in ln for ln in warnings), o.err
    (run_dir,) = (tmp_path / "out").iterdir()
    config = json.loads((run_dir / "run.json").read_text())["config"]
    for key, value in recorded.items():
        assert config[key] == value


def test_captions_equal_once_cut_to_the_clip_context_are_refused(tiny_pack, tmp_path, capsys):
    """The tiny CLIP reads 8 tokens (6 words): these two differ only after that."""
    before = snapshot(tmp_path)
    o = run_cli(["generate", "--model", str(tiny_pack), "--steps", "2", "-n", "1",
                 "--prompt", "a b c d e f seven", "-d", "a b c d e f eight",
                 "--out", str(tmp_path / "out")], capsys)
    assert_user_error(o, "same caption once cut to this CLIP's 8 tokens")
    assert_unchanged(before, tmp_path)


def test_a_long_prompt_is_run_with_a_warning(tiny_pack, tmp_path, capsys):
    o = run_cli(["generate", "--model", str(tiny_pack), "--steps", "2", "-n", "1",
                 "--prompt", "one " * 40, "--out", str(tmp_path / "out")], capsys)
    assert_ok(o)
    assert "the prompt is longer than this CLIP's 8 tokens: only its start is read" in o.err


def test_escape_sequences_in_a_prompt_never_reach_the_terminal(tiny_pack, tmp_path, capsys):
    prompt = "\x1b]0;pwned\x07one\x1b[2J"
    o = run_cli(["generate", "--model", str(tiny_pack), "--steps", "2", "-n", "1", "--method",
                 "spherical", "--prompt", prompt, "--out", str(tmp_path / "out")], capsys)
    assert_ok(o)
    assert "\x1b" not in o.text and "\x07" not in o.text
    assert "mean p('\\x1b]0;pwned\\x07one\\x1b[2J')" in o.out
    (run_dir,) = (tmp_path / "out").iterdir()
    assert "\x1b" not in run_dir.name
    assert json.loads((run_dir / "run.json").read_text())["config"]["prompt"] == prompt


def test_nan_samples_fail_the_run_with_strict_json(tiny_pack, tmp_path, capsys):
    o = run_cli(["generate", "--model", str(tiny_pack), "--steps", "3", "-n", "2",
                 "--scale", "1e30", "--grad-norm", "none", "--preset", "poster",
                 "--out", str(tmp_path / "out")], capsys)
    assert o.code == 1 and "Traceback" not in o.text
    assert "2 of 2 samples are not finite numbers" in o.err
    (run_dir,) = (tmp_path / "out").iterdir()
    def no_constants(name):
        raise AssertionError(f"bare {name} in run.json")

    info = json.loads((run_dir / "run.json").read_text(), parse_constant=no_constants)
    assert info["status"] == "failed" and info["nonfinite_samples"] == [0, 1]
    assert sorted(p.name for p in run_dir.glob("sample-*.png")) == ["sample-00000.png",
                                                                     "sample-00001.png"]
    assert not no_temp_files(run_dir)


def test_output_files_respect_the_umask(tiny_pack, tmp_path, capsys):
    import os

    old = os.umask(0o027)
    try:
        import importlib

        import clipterm.output as output

        importlib.reload(output)  # FILE_MODE is read once, at import
        o = run_cli(["generate", "--model", str(tiny_pack), "--steps", "2", "-n", "1",
                     "--out", str(tmp_path / "out")], capsys)
    finally:
        os.umask(old)
        importlib.reload(output)
    assert_ok(o)
    (run_dir,) = (tmp_path / "out").iterdir()
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir()}
    assert set(modes.values()) == {0o640}, modes
