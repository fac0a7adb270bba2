"""`sweep` and `compare` vary and apply the options of a guided run beyond scale and start step:
guide every k-th step, an init image's strength, an image prompt's weight, weighted prompts,
animations. Driven through the CLI on the tiny pack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipterm.cli import main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    """An 8x8 RGB image (the tiny pack's size): a bright cross on black."""
    img = np.zeros((8, 8, 3), np.uint8)
    img[3:5, :] = 230
    img[:, 3:5] = 230
    path = tmp_path_factory.mktemp("img") / "cross.png"
    Image.fromarray(img).save(path)
    return path


def sweep(tiny_pack: Path, out: Path, capsys, *extra: str) -> tuple[dict, Path]:
    code, stdout, err = run_cli(["sweep", "--model", tiny_pack, "-n", "2", "--steps", "4",
                                 "--scale", "1", "--out", out, "--json", "--no-plots", *extra],
                                capsys)
    assert code == 0, err
    table = json.loads(stdout)
    return table, Path(table["folder"])


def run_names(folder: Path) -> list[str]:
    """What ends each run folder's name, after the prompt's slug (``one``)."""
    return sorted(p.name.rsplit("-one-", 1)[1] for p in (folder / "runs").iterdir())


def config_of(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())["config"]


def sample(run_dir: str | Path, i: int = 0) -> np.ndarray:
    with Image.open(Path(run_dir) / f"sample-{i:05d}.png") as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


# ----------------------------------------------------------------------------- sweep
def test_sweep_varies_guide_every(tiny_pack, tmp_path, capsys):
    table, folder = sweep(tiny_pack, tmp_path, capsys, "--guide-every", "1,2,3")
    rows = table["rows"]
    assert [r["guide_every"] for r in rows] == [1, 2, 3]
    assert table["varied"] == ["guide_every"]
    assert run_names(folder) == ["every-1", "every-2", "every-3"]
    assert [config_of(r["run_dir"])["guide_every"] for r in rows] == [1, 2, 3]
    md = (folder / "table.md").read_text()
    assert "| scale | guide from | guide every | n |" in md
    assert "| 1 | all steps | 2 | 2 |" in md
    # guiding fewer steps changes the samples (same seed, so the same x_T and noise)
    assert not np.array_equal(sample(rows[0]["run_dir"]), sample(rows[2]["run_dir"]))


def test_sweep_guide_every_1_equals_generate(tiny_pack, tmp_path, capsys):
    table, _ = sweep(tiny_pack, tmp_path / "s", capsys, "--guide-every", "1,2")
    code, _, err = run_cli(["generate", "--model", tiny_pack, "-n", "2", "--steps", "4",
                            "--scale", "1", "--out", tmp_path / "g", "-q"], capsys)
    assert code == 0, err
    (run_dir,) = (tmp_path / "g").iterdir()
    for i in range(2):
        assert np.array_equal(sample(table["rows"][0]["run_dir"], i), sample(run_dir, i))


def test_sweep_varies_the_strength_of_an_init_image(tiny_pack, picture, tmp_path, capsys):
    table, folder = sweep(tiny_pack, tmp_path, capsys, "--init-image", picture,
                          "--strength", "0,0.5,1")
    rows = table["rows"]
    assert [r["strength"] for r in rows] == [0.0, 0.5, 1.0]
    assert run_names(folder) == ["strength-0", "strength-0.5", "strength-1"]
    cfgs = [config_of(r["run_dir"]) for r in rows]
    assert [c["strength"] for c in cfgs] == [0.0, 0.5, 1.0]
    assert all(c["init_image"] == str(picture) for c in cfgs)
    assert table["init_image"] == str(picture)
    md = (folder / "table.md").read_text()
    assert "| scale | guide from | strength | n |" in md and "| 1 | all steps | 0.5 | 2 |" in md
    assert "init image" in md.splitlines()[0]
    original = np.asarray(Image.open(picture).convert("RGB")).astype(np.int16)
    diffs = [np.abs(sample(r["run_dir"]) - original).mean() for r in rows]
    assert diffs[0] < 3  # strength 0 gives the image back
    assert diffs[2] > 20  # strength 1 ignores it


def test_sweep_varies_the_image_prompt_weight(tiny_pack, picture, tmp_path, capsys):
    table, folder = sweep(tiny_pack, tmp_path, capsys, "--image-prompt", picture,
                          "--image-weight", "0.5,-2")
    rows = table["rows"]
    assert [r["image_weight"] for r in rows] == [0.5, -2.0]
    assert run_names(folder) == ["image-weight--2", "image-weight-0.5"]
    cfgs = [config_of(r["run_dir"]) for r in rows]
    assert [(c["image_prompt"], c["image_weight"]) for c in cfgs] == [
        (str(picture), 0.5), (str(picture), -2.0)]
    assert "| image weight |" in (folder / "table.md").read_text()


def test_sweep_two_axes_name_runs_by_both(tiny_pack, tmp_path, capsys):
    table, folder = sweep(tiny_pack, tmp_path, capsys, "--scale", "0.5,2", "--guide-every",
                          "1,4")
    assert [(r["scale"], r["guide_every"]) for r in table["rows"]] == [
        (0.5, 1), (0.5, 4), (2.0, 1), (2.0, 4)]
    assert run_names(folder) == ["scale-0.5-every-1", "scale-0.5-every-4", "scale-2-every-1",
                                 "scale-2-every-4"]
    assert table["varied"] == ["scale", "guide_every"]


def test_sweep_plots_against_the_new_values(tiny_pack, picture, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, _, err = run_cli(["sweep", "--model", tiny_pack, "-n", "1", "--steps", "2",
                            "--scale", "1", "--init-image", picture, "--strength", "0.2,0.8",
                            "--guide-every", "1,2", "--out", tmp_path, "-q", "--plots"], capsys)
    assert code == 0, err
    (folder,) = tmp_path.iterdir()
    for stem in ("clip-prob-vs-strength", "clip-prob-vs-guide-every"):
        with Image.open(folder / f"{stem}.png") as im:
            assert im.format == "PNG"
    assert not (folder / "clip-prob-vs-scale.png").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--guide-every", "0"], "--guide-every: '0' must be a whole number in 1..1000"),
    (["--guide-every", "1,x"], "--guide-every: 'x' must be a whole number"),
    (["--guide-every", "2,2"], "--guide-every names a value twice"),
    (["--strength", "0.5"], "give --init-image IMG"),
    (["--init-image", "PIC", "--strength", "1.5"], "--strength: 1.5 must be a finite number in 0..1"),
    (["--init-image", "PIC", "--strength", "nan"], "--strength: nan must be a finite number"),
    (["--init-image", "PIC", "--strength", ","], "--strength is empty"),
    (["--image-weight", "1,2"], "give --image-prompt IMG"),
    (["--image-prompt", "PIC", "--image-weight", "0,1"], "0 leaves the image prompt out"),
    (["--image-prompt", "PIC", "--image-weight", "inf"], "--image-weight: inf must be"),
    (["--init-image", "MISSING", "--strength", "0.5"], "not found"),
], ids=["every-0", "every-word", "every-twice", "strength-no-image", "strength-above-1",
        "strength-nan", "strength-empty", "weight-no-image", "weight-0", "weight-inf",
        "init-missing"])
def test_sweep_rejects_bad_values(tiny_pack, picture, tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    extra = [str(picture) if a == "PIC" else str(tmp_path / "nope.png") if a == "MISSING"
             else a for a in extra]
    code, stdout, err = run_cli(["sweep", "--model", tiny_pack, "-n", "1", "--out", out,
                                 *extra], capsys)
    assert code == 2 and needle in err, err
    assert err.startswith("clipterm: error: ") and err.count("\n") == 1
    assert not out.exists()


# ----------------------------------------------------------------------------- compare
def test_compare_applies_the_new_options_to_every_method(tiny_pack, picture, tmp_path, capsys):
    code, stdout, err = run_cli(
        ["compare", "--model", tiny_pack, "--methods", "uncond,contrastive,optimize", "-n", "2",
         "--steps", "4", "--scale", "1", "-p", "one:1", "-p", "two:-0.5", "--guide-every", "2",
         "--guide-from", "600", "--init-image", picture, "--strength", "0.5",
         "--image-prompt", picture, "--image-weight", "0.5", "--out", tmp_path, "--json", "-q"],
        capsys)
    assert code == 0, err
    table = json.loads(stdout)
    assert table["prompt"] == "one:1|two:-0.5"
    assert table["init_image"] == str(picture) and table["image_prompt"] == str(picture)
    rows = {r["method"]: r for r in table["rows"]}
    cfgs = {m: config_of(r["run_dir"]) for m, r in rows.items()}
    c = cfgs["contrastive"]
    assert (c["guide_every"], c["guide_from"], c["strength"], c["init_image"]) == (
        2, 600, 0.5, str(picture))
    assert (c["image_prompt"], c["image_weight"]) == (str(picture), 0.5)
    assert (c["prompt"], c["more_prompts"], c["weights"]) == ("one", ["two"], [1.0, -0.5])
    u = cfgs["uncond"]
    assert (u["strength"], u["init_image"], u["guide_every"], u["image_prompt"]) == (
        0.5, str(picture), None, None)
    o = cfgs["optimize"]
    assert (o["init_image"], o["strength"], o["guide_every"]) == (str(picture), None, None)
    for m, row in rows.items():  # the table records what each run used
        assert {k: row[k] for k in ("guide_every", "guide_from", "strength", "init_image",
                                    "image_prompt", "image_weight")} == {
            k: cfgs[m][k] for k in ("guide_every", "guide_from", "strength", "init_image",
                                    "image_prompt", "image_weight")}
    (folder,) = [p for p in tmp_path.iterdir() if "compare" in p.name]
    md = (folder / "table.md").read_text()
    assert "| method | guide from | guide every | strength | image weight | n |" in md
    assert "| contrastive | t < 600 | 2 | 0.5 | 0.5 | 2 |" in md
    assert "| uncond | - | - | 0.5 | - | 2 |" in md


def test_compare_writes_an_animation_per_method(tiny_pack, tmp_path, capsys):
    code, _, err = run_cli(["compare", "--model", tiny_pack, "--methods", "uncond,contrastive",
                            "-n", "2", "--steps", "3", "--animate", "gif", "--out", tmp_path,
                            "-q"], capsys)
    assert code == 0, err
    runs = [p for p in tmp_path.iterdir() if "compare" not in p.name]
    assert len(runs) == 2
    for run_dir in runs:
        assert json.loads((run_dir / "run.json").read_text())["animations"]
        with Image.open(run_dir / "animation.gif") as im:
            assert im.n_frames > 1


@pytest.mark.parametrize("extra, needle", [
    (["--strength", "0.5"], "--strength goes with an --init-image"),
    (["--image-weight", "2"], "--image-weight goes with an --image-prompt"),
    (["--methods", "uncond", "--guide-every", "2"], "--guide-every steers guidance"),
    (["--methods", "uncond,optimize", "--image-prompt", "PIC"], "--image-prompt steers guidance"),
    (["--methods", "optimize", "--init-image", "PIC", "--strength", "0.3"], "has no --strength"),
    (["--guide-every", "0"], "guide-every"),
    (["--init-image", "PIC", "--strength", "2"], "strength"),
    (["--animate", "avi"], "avi"),
    (["--init-image", "MISSING"], "not found"),
], ids=["strength-no-image", "weight-no-image", "every-unguided", "image-prompt-unguided",
        "strength-optimize", "every-0", "strength-2", "animate-avi", "init-missing"])
def test_compare_rejects_bad_values(tiny_pack, picture, tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    extra = [str(picture) if a == "PIC" else str(tmp_path / "nope.png") if a == "MISSING"
             else a for a in extra]
    code, _, err = run_cli(["compare", "--model", tiny_pack, "-n", "1", "--out", out, *extra],
                           capsys)
    assert code == 2 and needle in err, err
    assert err.startswith("clipterm: error: ") and err.count("\n") == 1
    assert not out.exists()
