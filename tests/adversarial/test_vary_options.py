"""sweep and compare with hostile or mistaken values of the options they vary or apply beyond
scale and start step (guide every k-th step, an init image and its strength, an image prompt and
its weight, weighted prompts, animations): one line, exit 2, nothing written or changed."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Images good and bad (made once: the bomb takes a moment)."""
    tmp_path = tmp_path_factory.mktemp("images")
    good = tmp_path / "good.png"
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(good)
    (tmp_path / "text.png").write_text("this is text, not an image")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    full = (tmp_path / "noise.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "adir").mkdir()
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 400 megapixels, a few kB
    return {"GOOD": str(good), "TEXT": str(tmp_path / "text.png"),
            "TRUNCATED": str(tmp_path / "truncated.png"), "DIR": str(tmp_path / "adir"),
            "BOMB": str(tmp_path / "bomb.png"), "MISSING": str(tmp_path / "missing.png")}


@pytest.fixture()
def files(images: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The images, and an output folder that already holds an earlier result."""
    out = tmp_path / "out"
    (out / "20260101-000000-sweep-contrastive-one").mkdir(parents=True)
    (out / "20260101-000000-sweep-contrastive-one" / "table.json").write_text('{"earlier": 1}')
    return {**images, "OUT": str(out)}


INIT = ["--init-image", "GOOD"]
IMG = ["--image-prompt", "GOOD"]
SWEEP_CASES = [
    # --guide-every
    ("every 0", ["--guide-every", "0"], ["--guide-every", "1..1000"]),
    ("every negative", ["--guide-every", "-2"], ["--guide-every", "whole number"]),
    ("every beyond the model", ["--guide-every", "1001"], ["--guide-every", "1..1000"]),
    ("every huge", ["--guide-every", "1" + "0" * 30], ["--guide-every", "whole number"]),
    ("every fraction", ["--guide-every", "1.5"], ["--guide-every", "whole number"]),
    ("every superscript digit", ["--guide-every", "\u00b2"], ["--guide-every", "whole number"]),
    ("every fullwidth digit", ["--guide-every", "\uff12"], ["--guide-every", "whole number"]),
    ("every word", ["--guide-every", "often"], ["--guide-every", "whole number"]),
    ("every empty", ["--guide-every", " , "], ["--guide-every is empty"]),
    ("every twice", ["--guide-every", "2, 2"], ["names a value twice"]),
    ("every with escape", ["--guide-every", "\x1b[2J"], ["--guide-every"]),
    ("guide-from superscript digit", ["--guide-from", "\u00b9"], ["--guide-from"]),
    # --strength
    ("strength without init image", ["--strength", "0.5"], ["--init-image"]),
    ("strength negative", [*INIT, "--strength", "-0.1"], ["--strength", "0..1"]),
    ("strength above 1", [*INIT, "--strength", "0.5,1.01"], ["--strength", "0..1"]),
    ("strength nan", [*INIT, "--strength", "nan"], ["--strength", "finite"]),
    ("strength inf", [*INIT, "--strength", "1e400"], ["--strength", "finite"]),
    ("strength word", [*INIT, "--strength", "half"], ["--strength", "not a number"]),
    ("strength twice spelled apart", [*INIT, "--strength", "0.5,5e-1"], ["names a value twice"]),
    ("strength empty", [*INIT, "--strength", ","], ["--strength is empty"]),
    ("strength with escape", [*INIT, "--strength", "\x1b]0;x\x07"], ["--strength"]),
    ("strength for uncond", ["--method", "uncond", *INIT, "--strength", "0.5"],
     ["spherical and contrastive"]),
    # the init image itself
    ("init image missing", ["--init-image", "MISSING", "--strength", "0.5"], ["not found"]),
    ("init image is text", ["--init-image", "TEXT", "--strength", "0.5"], ["not an image"]),
    ("init image truncated", ["--init-image", "TRUNCATED", "--strength", "0.5"],
     ["init image"]),
    ("init image a folder", ["--init-image", "DIR", "--strength", "0.5"], ["is not a file"]),
    ("init image bomb", ["--init-image", "BOMB", "--strength", "0.5"], ["too large"]),
    # --image-weight and the image prompt
    ("image weight without image", ["--image-weight", "1,2"], ["--image-prompt"]),
    ("image weight 0", [*IMG, "--image-weight", "0,1"], ["0 leaves the image prompt out"]),
    ("image weight -0", [*IMG, "--image-weight", "-0"], ["0 leaves the image prompt out"]),
    ("image weight absurd", [*IMG, "--image-weight", "1e7"], ["--image-weight"]),
    ("image weight nan", [*IMG, "--image-weight", "nan"], ["--image-weight", "finite"]),
    ("image weight word", [*IMG, "--image-weight", "heavy"], ["not a number"]),
    ("image prompt missing", ["--image-prompt", "MISSING", "--image-weight", "1"],
     ["not found"]),
    ("image prompt is text", ["--image-prompt", "TEXT", "--image-weight", "1"],
     ["not an image"]),
    # weighted prompts
    ("prompt twice with weights", ["-p", "one:1|ONE:-1"], ["given twice"]),
    ("prompt weights all 0", ["-p", "one:0|two:0"], ["weight"]),
    ("prompt weight not finite", ["-p", "one:1|two:nan"], ["weight"]),
]

COMPARE_CASES = [
    ("strength without init image", ["--strength", "0.5"], ["--init-image"]),
    ("strength above 1", [*INIT, "--strength", "1.5"], ["strength"]),
    ("strength nan", [*INIT, "--strength", "nan"], ["strength"]),
    ("strength for optimize alone", ["--methods", "optimize", *INIT, "--strength", "0.3"],
     ["no --strength"]),
    ("image weight without image", ["--image-weight", "2"], ["--image-prompt"]),
    ("image weight nan", [*IMG, "--image-weight", "nan"], ["weight"]),
    ("every with no guided method", ["--methods", "uncond,optimize", "--guide-every", "2"],
     ["--guide-every", "none of uncond, optimize guides"]),
    ("guide-from with no guided method", ["--methods", "uncond", "--guide-from", "500"],
     ["--guide-from"]),
    ("image prompt with no guided method", ["--methods", "uncond", *IMG], ["--image-prompt"]),
    ("every 0", ["--guide-every", "0"], ["guide-every"]),
    ("every beyond the model", ["--guide-every", "5000"], ["guide-every"]),
    ("init image missing", ["--init-image", "MISSING"], ["not found"]),
    ("init image bomb", ["--init-image", "BOMB"], ["too large"]),
    ("init image a folder", ["--init-image", "DIR"], ["is not a file"]),
    ("image prompt truncated", ["--image-prompt", "TRUNCATED"], ["image prompt"]),
    ("animate unknown format", ["--animate", "avi"], ["avi"]),
    ("animate with escape", ["--animate", "\x1b[31mgif"], ["animat"]),
    ("prompt twice with weights", ["-p", "one:1", "-p", "one:-1"], ["given twice"]),
    ("prompt weights all 0", ["-p", "one:0|two:0"], ["weight"]),
]


def _fill(args: list[str], files: dict[str, str]) -> list[str]:
    return [files.get(a, a) for a in args]


@pytest.mark.parametrize(("args", "needles"), [c[1:] for c in SWEEP_CASES],
                         ids=[c[0] for c in SWEEP_CASES])
def test_sweep_rejects(args, needles, tiny_pack, tmp_path, files, capsys):
    before = snapshot(tmp_path)
    o = run_cli(["sweep", "--model", tiny_pack, "--steps", "2", "-n", "1", "--scale", "1",
                 "--out", files["OUT"], *_fill(args, files)], capsys)
    assert_user_error(o, *needles)
    assert_unchanged(before, tmp_path)
    assert no_temp_files(tmp_path) == []


@pytest.mark.parametrize(("args", "needles"), [c[1:] for c in COMPARE_CASES],
                         ids=[c[0] for c in COMPARE_CASES])
def test_compare_rejects(args, needles, tiny_pack, tmp_path, files, capsys):
    before = snapshot(tmp_path)
    o = run_cli(["compare", "--model", tiny_pack, "--steps", "2", "-n", "1",
                 "--out", files["OUT"], *_fill(args, files)], capsys)
    assert_user_error(o, *needles)
    assert_unchanged(before, tmp_path)
    assert no_temp_files(tmp_path) == []


EDGES = [
    ("sweep strength 0 and 1", ["sweep", "--scale", "1", *INIT, "--strength", "0,1"], 2),
    ("sweep guide every beyond the steps", ["sweep", "--scale", "1", "--guide-every", "1,50"],
     2),
    ("sweep negative image weight", ["sweep", "--scale", "1", *IMG, "--image-weight", "-1"], 1),
    ("compare every method from an init image", ["compare", *INIT, "--strength", "0",
                                                 "--methods", "uncond,contrastive,optimize"],
     3),
]


@pytest.mark.parametrize(("args", "runs"), [c[1:] for c in EDGES], ids=[c[0] for c in EDGES])
def test_edge_values_run_and_keep_the_earlier_results(args, runs, tiny_pack, files, capsys):
    """Values at the edges of their range run; the earlier folder in --out is left alone."""
    out = Path(files["OUT"])
    earlier = snapshot(out / "20260101-000000-sweep-contrastive-one")
    o = run_cli([args[0], "--model", tiny_pack, "--steps", "2", "-n", "1", "--out", out, "-q",
                 *(["--no-plots"] if args[0] == "sweep" else []), *_fill(args[1:], files)],
                capsys)
    assert_ok(o)
    assert_unchanged(earlier, out / "20260101-000000-sweep-contrastive-one")
    made = [p for p in out.iterdir() if not p.name.startswith("20260101")]
    if args[0] == "sweep":
        (folder,) = made
        assert len(list((folder / "runs").iterdir())) == runs
    else:
        assert len([p for p in made if "compare" not in p.name]) == runs
    assert no_temp_files(out) == []
