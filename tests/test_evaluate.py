"""Evaluation: the Evaluator, `clipterm eval`, `plot`, `sweep` and `compare --eval` on tiny models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TINY_CAPTIONS
from PIL import Image

import clipterm
from clipterm.cli import main
from clipterm.errors import ConfigError

SHIPPED_JUDGE = Path(clipterm.__file__).parent / "packs" / "digits" / "judge"


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread (thread hand-offs dominate on a busy 2-core box)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def judged_pack(tiny_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pack plus a tiny judge that calls every image 'one' (the default prompt)."""
    import torch

    from clipterm.judge import DigitJudge, JudgeConfig, save_judge

    root = tmp_path_factory.mktemp("judged")
    torch.manual_seed(0)
    judge = DigitJudge(JudgeConfig(image_size=8, channels=(4, 8), feature_dim=6,
                                   class_names=tuple(TINY_CAPTIONS)))
    with torch.no_grad():
        judge.head.weight.zero_()
        judge.head.bias.fill_(-4.0)
        judge.head.bias[TINY_CAPTIONS.index("one")] = 4.0
    save_judge(judge, root / "judge")
    data = json.loads(tiny_pack.read_text())
    for folder in ("ddpm", "clip"):  # a pack names only paths inside its own folder
        shutil.copytree(tiny_pack.parent / folder, root / folder)
    data.update(name="tiny-judged", judge="judge")
    path = root / "pack.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    for i in range(10):
        img = np.zeros((8, 8, 3), np.uint8)
        img[2:6, 3:5] = rng.integers(180, 256)
        Image.fromarray(img).save(folder / f"real-{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def run_dir(judged_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    try:
        main(["generate", "--model", str(judged_pack), "-n", "6", "--batch", "6", "--steps", "2",
              "--out", str(out), "-q"])
    except SystemExit as exc:  # pragma: no cover - a failure shows in the tests below
        assert exc.code == 0
    (folder,) = list(out.iterdir())
    return folder


# ----------------------------------------------------------------------------- eval command
def test_eval_json_on_a_run_against_a_folder(run_dir, judged_pack, real_folder, capsys) -> None:
    code, out, err = run_cli(["eval", str(run_dir), "--model", str(judged_pack), "--real",
                              str(real_folder), "--subsets", "20", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    for key in ("kid_mean", "kid_std", "kid_subset_size", "judged_share", "judge_confidence",
                "mean_target_prob", "n", "n_real", "evaluation"):
        assert key in report
    assert np.isfinite(report["kid_mean"]) and report["kid_std"] >= 0
    assert report["n"] == 6 and report["n_real"] == 10
    assert report["kid_subset_size"] == 6  # min(50, n, n_real)
    assert report["features"] == "judge"
    assert report["judged_share"] == 1.0  # the tiny judge calls everything 'one'
    assert 0.9 < report["judge_confidence"] <= 1.0
    run_info = json.loads((run_dir / "run.json").read_text())
    assert report["mean_target_prob"] == run_info["mean_target_prob"]


def test_eval_human_output_and_clip_features(run_dir, judged_pack, real_folder, capsys) -> None:
    code, out, err = run_cli(["eval", str(run_dir), "--model", str(judged_pack), "--real",
                              str(real_folder), "--features", "clip", "--subset-size", "4"],
                             capsys)
    assert code == 0, err
    assert "KID (clip features, subset size 4 x 100 subsets" in out
    assert "judged share 'one': 1.00" in out
    assert "mean final CLIP p('one')" in out


def test_eval_subset_size_too_large_is_one_line_exit_2(run_dir, judged_pack, real_folder,
                                                       capsys) -> None:
    code, out, err = run_cli(["eval", str(run_dir), "--model", str(judged_pack), "--real",
                              str(real_folder), "--subset-size", "8"], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "subset size 8" in err and "largest valid value is 6" in err


def test_eval_errors_name_the_fix(run_dir, tiny_pack, real_folder, capsys) -> None:
    code, _, err = run_cli(["eval", str(run_dir), "--real", str(real_folder)], capsys)
    assert code == 2 and "pass --model" in err  # run.json names a pack that is not built in
    code, _, err = run_cli(["eval", str(run_dir), "--model", str(tiny_pack), "--real",
                            str(real_folder)], capsys)
    assert code == 2 and "has no judge" in err and "--features clip" in err
    code, _, err = run_cli(["eval", str(run_dir.parent / "nope")], capsys)
    assert code == 2 and "does not exist" in err


# ----------------------------------------------------------------------------- Evaluator
def test_evaluator_real_against_itself_is_near_zero_and_noise_is_far(judged_pack,
                                                                     real_folder) -> None:
    from clipterm.evaluate import Evaluator
    from clipterm.models import load_pack
    from clipterm.realdata import load_folder

    pack = load_pack(str(judged_pack), device="cpu")
    ev = Evaluator.for_run(pack, "one", real=str(real_folder), subsets=50)
    real = load_folder(real_folder, 8)
    same = ev.evaluate(real)
    noise = ev.evaluate(np.random.default_rng(1).integers(0, 256, (10, 8, 8, 3), np.uint8))
    assert same["kid_subset_size"] == 10
    assert same["kid_std"] == pytest.approx(0.0, abs=1e-12)  # every subset is all of it
    assert abs(same["kid_mean"]) < 1e-6 * max(1.0, noise["kid_mean"]) + 1e-9
    assert noise["kid_mean"] > 100 * abs(same["kid_mean"]) and noise["kid_mean"] > 0
    assert "KID on judge features against 10 real images" in ev.describe()


def test_evaluator_for_run_checks_subset_size_before_sampling(judged_pack, real_folder) -> None:
    from clipterm.evaluate import Evaluator
    from clipterm.models import load_pack

    pack = load_pack(str(judged_pack), device="cpu")
    with pytest.raises(ConfigError, match="largest valid value is 10"):
        Evaluator.for_run(pack, "one", real=str(real_folder), subset_size=11, n=100)
    with pytest.raises(ConfigError, match="largest valid value is 4"):
        Evaluator.for_run(pack, "one", real=str(real_folder), subset_size=5, n=4)
    with pytest.raises(ConfigError, match="unknown features"):
        Evaluator.for_run(pack, "one", real=str(real_folder), features="pixels")


def test_clip_features_are_scaled_to_norm_sqrt_d(judged_pack, real_folder) -> None:
    from clipterm.evaluate import Evaluator
    from clipterm.models import load_pack

    pack = load_pack(str(judged_pack), device="cpu")
    ev = Evaluator.for_run(pack, "one", real=str(real_folder), features="clip")
    norms = ev.real_features.norm(dim=1)
    d = ev.real_features.shape[1]
    assert np.allclose(norms.numpy(), np.sqrt(d), rtol=1e-6)
    judge_ev = Evaluator.for_run(pack, "one", real=str(real_folder), features="judge")
    assert judge_ev.feature_scale == "raw"


def test_default_real_spec_per_pack() -> None:
    from clipterm.evaluate import default_real_spec, default_subset_size
    from clipterm.packs import get_pack_spec

    assert default_real_spec(get_pack_spec("digits"), "seven") == "digits:seven"
    assert default_real_spec(get_pack_spec("cifar10"), "Airplane") == "cifar10:Airplane"
    with pytest.raises(ConfigError, match="--real"):
        default_real_spec(get_pack_spec("digits"), "a cat")
    with pytest.raises(ConfigError, match="--real FOLDER"):
        default_real_spec(SimpleNamespace(name="x", real_data=None, captions=()), "cat")
    assert default_subset_size(100, 36) == 36
    assert default_subset_size(100, 1000) == 50
    assert default_subset_size(20, 1000) == 20


@pytest.mark.skipif(not (SHIPPED_JUDGE / "model.safetensors").is_file(), reason="no judge")
def test_digits_reference_with_the_shipped_judge() -> None:
    """Held-out sevens as reference: real sevens score near 0 and are judged sevens; ones are not."""
    from clipterm import data
    from clipterm.evaluate import Evaluator
    from clipterm.judge import load_judge
    from clipterm.packs import get_pack_spec

    pack = SimpleNamespace(name="digits", spec=get_pack_spec("digits"), image_size=32,
                           judge=load_judge(SHIPPED_JUDGE), device="cpu")
    ev = Evaluator.for_run(pack, "seven", n=100, subsets=50)
    assert ev.real_label == "digits:seven" and ev.n_real == 36
    sevens = ev.evaluate(data.real_digit_images("seven", split="train")[:100])
    ones = ev.evaluate(data.real_digit_images("one", split="train")[:100])
    assert sevens["kid_subset_size"] == 36
    assert sevens["judged_share"] > 0.9 and ones["judged_share"] < 0.1
    assert ones["kid_mean"] > 20 * max(sevens["kid_mean"], 0.01)


# ----------------------------------------------------------------------------- plots
def test_terminal_plot_draws_the_curves() -> None:
    from clipterm.plots import LinePlot, Series, terminal_plot

    plot = LinePlot(series=[Series("rising", [0, 1, 2, 3], [0.0, 0.3, 0.6, 0.9], highlight=True),
                            Series("flat", [0, 3], [0.1, 0.1])],
                    title="probe", xlabel="step", ylabel="p", ylim=(0.0, 1.0))
    text = terminal_plot(plot, width=20, height=6)
    lines = text.plain.splitlines()
    assert lines[0] == "probe"
    grid = [ln.split("┤", 1)[-1].split("│", 1)[-1] for ln in lines[2:8]]
    assert all(len(row) == 20 for row in grid)
    assert any("\u2800" < ch <= "\u28ff" for ch in "".join(grid))
    assert grid[0][-1] != " " and grid[0][0] == " "  # the rising curve ends top right ...
    assert grid[-1][0] != " "  # ... and starts bottom left
    assert "rising 0.9" in text.plain and "flat 0.1" in text.plain
    styles = {str(span.style) for span in text.spans}
    assert any("bright_red" in s for s in styles) and any("bright_green" in s for s in styles)


def test_plot_command_renders_text_for_a_run(run_dir, capsys) -> None:
    code, out, err = run_cli(["plot", str(run_dir), "--width", "30"], capsys)
    assert code == 0, err
    assert "CLIP probability of each caption (target 'one')" in out
    for caption in TINY_CAPTIONS:
        assert caption in out
    assert "sampling step" in out


def test_plot_command_png(run_dir, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "trace.png"
    code, out, err = run_cli(["plot", str(run_dir), "--png", str(png)], capsys)
    assert code == 0, err
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 200


def test_png_without_matplotlib_is_a_one_line_error(run_dir, tmp_path, capsys,
                                                    monkeypatch) -> None:
    import clipterm.plots as plots

    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    code, out, err = run_cli(["plot", str(run_dir), "--png", str(tmp_path / "x.png")], capsys)
    assert code == 2 and err.count("\n") == 1 and "clipterm[plots]" in err
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- sweep
@pytest.fixture(scope="module")
def sweep_result(judged_pack: Path, real_folder: Path, tmp_path_factory) -> tuple[dict, Path]:
    import contextlib
    import io

    out = tmp_path_factory.mktemp("sweep")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["sweep", "--model", str(judged_pack), "--method", "contrastive", "--scale",
                  "0.5,2", "--guide-from", "all,500", "-n", "3", "--steps", "2", "--eval",
                  "--real", str(real_folder), "--subsets", "10", "--out", str(out), "--json"])
        except SystemExit as exc:  # pragma: no cover
            assert exc.code == 0
    table = json.loads(buf.getvalue())
    return table, Path(table["folder"])


def test_sweep_writes_one_row_per_grid_point(sweep_result) -> None:
    table, folder = sweep_result
    rows = table["rows"]
    assert [(r["scale"], r["guide_from"]) for r in rows] == [
        (0.5, 1000), (0.5, 500), (2.0, 1000), (2.0, 500)]
    assert all(np.isfinite(r["kid_mean"]) and r["judged_share"] == 1.0 for r in rows)
    assert all(r["n"] == 3 and r["seconds"] > 0 for r in rows)
    md = (folder / "table.md").read_text()
    assert md.count("\n| 0.5 |") == 2 and md.count("\n| 2 |") == 2
    assert "| t < 500 |" in md and "| all steps |" in md
    assert json.loads((folder / "table.json").read_text())["rows"] == rows
    names = sorted(p.name.split("-one-", 1)[1] for p in (folder / "runs").iterdir())
    assert names == ["scale-0.5-from-500", "scale-0.5-from-all", "scale-2-from-500",
                     "scale-2-from-all"]  # named by the swept values, not ...-2, ...-3
    assert_labelled_grid(folder / "grid.png", rows=4, columns=3, image=8)
    # the guidance start changes the samples (same seed, so the same x_T)
    a, b = (np.asarray(Image.open(Path(r["run_dir"]) / "sample-00000.png")) for r in rows[:2])
    assert not np.array_equal(a, b)


def test_sweep_writes_plots_when_matplotlib_is_present(sweep_result) -> None:
    pytest.importorskip("matplotlib")
    _, folder = sweep_result
    for stem in ("kid-vs-scale", "kid-vs-guide-from", "judged-share-vs-scale",
                 "judged-share-vs-guide-from"):
        with Image.open(folder / f"{stem}.png") as im:
            assert im.format == "PNG"
    assert all((r / "prob-trace.png").is_file() for r in (folder / "runs").iterdir())


def test_sweep_rejects_bad_grids(tiny_pack, tmp_path, capsys) -> None:
    base = ["sweep", "--model", str(tiny_pack), "--out", str(tmp_path), "-n", "1"]
    for extra, message in ((["--scale", "1,x"], "'x' is not a number"),
                           (["--guide-from", "0"], "must be a whole number in 1..1000"),
                           (["--scale", "1,1"], "names a value twice"),
                           (["--method", "uncond"], "only spherical and contrastive")):
        code, _, err = run_cli(base + extra, capsys)
        assert code == 2 and message in err, (extra, err)
    assert list(tmp_path.iterdir()) == []


def assert_labelled_grid(path: Path, rows: int, columns: int, image: int) -> None:
    """A grid of ``rows`` x ``columns`` images (enlarged to fit a label) with white label text
    in a black strip on the left."""
    from clipterm.compare import LABEL_MIN_ROW_PX

    with Image.open(path) as im:
        grid = np.asarray(im.convert("RGB"))
    factor = -(-LABEL_MIN_ROW_PX // (image + 2))
    height = (rows * (image + 2) + 2) * factor
    width = (columns * (image + 2) + 2) * factor
    assert grid.shape[0] == height and grid.shape[1] > width
    strip = grid[:, : grid.shape[1] - width]
    for r in range(rows):  # every row has its label beside it
        band = strip[r * height // rows: (r + 1) * height // rows]
        assert (band > 200).any(), f"row {r} has no label"


def test_sweep_with_one_varied_value_names_runs_by_it(judged_pack, tmp_path, capsys) -> None:
    code, out, err = run_cli(["sweep", "--model", str(judged_pack), "--scale", "0.3,1", "-n",
                              "2", "--steps", "2", "--out", str(tmp_path), "-q", "--no-plots"],
                             capsys)
    assert code == 0, err
    (folder,) = tmp_path.iterdir()
    names = sorted(p.name for p in (folder / "runs").iterdir())
    assert [n.rsplit("-one-", 1)[1] for n in names] == ["scale-0.3", "scale-1"]


# ----------------------------------------------------------------------------- compare --eval
def test_compare_eval_table_has_kid_columns(judged_pack, real_folder, tmp_path, capsys) -> None:
    code, out, err = run_cli(["compare", "--model", str(judged_pack), "--methods",
                              "uncond,contrastive", "-n", "3", "--steps", "2", "--eval",
                              "--real", str(real_folder), "--out", str(tmp_path), "-q"], capsys)
    assert code == 0, err
    assert "| KID (mean ± std) | judged share | judge confidence |" in out
    (folder,) = [p for p in tmp_path.iterdir() if p.name.split("-", 2)[-1].startswith("compare")]
    table = json.loads((folder / "table.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["uncond", "contrastive"]
    for r in table["rows"]:
        assert np.isfinite(r["kid_mean"]) and r["kid_subset_size"] == 3
        assert r["judged_share"] == 1.0
    assert "KID on judge features" in table["evaluation"]
    assert table["grid_rows"] == ["uncond", "contrastive"]
    assert_labelled_grid(folder / "grid.png", rows=2, columns=3, image=8)
