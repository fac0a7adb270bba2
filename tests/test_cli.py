"""The CLI: run folders written, and every bad input ends in one line, exit code 2, nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipterm.cli import main
from clipterm.output import read_png_params


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_generate_writes_a_run_folder(tiny_pack, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        ["generate", "--model", str(tiny_pack), "--prompt", "one", "-n", "3", "--batch", "2",
         "--steps", "4", "--out", str(out), "--seed", "5"], capsys)
    assert code == 0, err
    (run_dir,) = list(out.iterdir())
    files = sorted(p.name for p in run_dir.iterdir())
    assert files == ["grid.png", "run.json", "sample-00000.png", "sample-00001.png", "sample-00002.png"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["n_done"] == 3
    assert info["config"]["seed"] == 5 and info["config"]["method"] == "contrastive"
    assert info["captions"] == ["one", "zero", "two", "three"]
    assert set(info["mean_probs"]) == set(info["captions"])
    assert torch.__version__.startswith(info["versions"]["torch"])
    assert info["device"] == "cpu" and info["timings"]["seconds"] > 0
    params = read_png_params(run_dir / "sample-00001.png")
    assert params["index"] == 1 and params["prompt"] == "one" and params["steps"] == 4
    assert str(run_dir) in stdout
    # plain progress lines on a non-terminal stderr
    assert "contrastive:" in err and "steps" in err


def test_generate_never_overwrites(tiny_pack, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["generate", "--model", str(tiny_pack), "-n", "1", "--steps", "2", "--out", str(out), "-q"]
    assert run_cli(args, capsys)[0] == 0
    assert run_cli(args, capsys)[0] == 0
    assert len(list(out.iterdir())) == 2


def test_generate_json_output(tiny_pack, tmp_path, capsys):
    code, stdout, _ = run_cli(["generate", "--model", str(tiny_pack), "-n", "2", "--steps", "2",
                               "--method", "uncond", "--out", str(tmp_path), "--json"], capsys)
    assert code == 0
    data = json.loads(stdout)
    assert data["status"] == "complete" and len(data["samples"]) == 2


def test_distractors_with_spherical_warn(tiny_pack, tmp_path, capsys):
    code, _, err = run_cli(["generate", "--model", str(tiny_pack), "--method", "spherical", "-d", "two",
                            "-n", "1", "--steps", "2", "--out", str(tmp_path), "-q"], capsys)
    assert code == 0
    assert "warning: spherical does not guide with distractors" in err


def test_compare_writes_grid_and_table(tiny_pack, tmp_path, capsys):
    code, stdout, err = run_cli(
        ["compare", "--model", str(tiny_pack), "--methods", "uncond,contrastive", "-n", "2",
         "--steps", "3", "--out", str(tmp_path), "-q"], capsys)
    assert code == 0, err
    (folder,) = [p for p in tmp_path.iterdir() if "compare" in p.name]
    table = json.loads((folder / "table.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["uncond", "contrastive"]
    assert all(r["seconds"] > 0 and 0 <= r["mean_target_prob"] <= 1 for r in table["rows"])
    grid = np.asarray(Image.open(folder / "grid.png"))
    from clipterm.compare import labelled_rows_grid

    rows = [np.full((2, 8, 8, 3), v, np.uint8) for v in (0, 255)]
    expected = labelled_rows_grid(rows, ["uncond", "contrastive"])
    assert grid.shape == expected.shape  # two labelled rows of two 8-pixel samples
    assert "| uncond |" in stdout


def test_models_lists_packs(capsys):
    code, out, _ = run_cli(["models", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert "cifar10" in rows and rows["cifar10"]["captions"][0] == "airplane"
    # no network here: the cifar10 pack is not cached in this test environment
    assert rows["cifar10"]["available"] is False


BAD_INPUTS = [
    (["--prompt", "   "], "prompt is empty"),
    (["--prompt", "one", "-d", "one"], "same as the prompt"),
    (["--prompt", "one", "-d", "two", "-d", "two"], "given twice"),
    (["--steps", "0"], "number of steps must be >= 1"),
    (["--steps", "1001"], "at most the model's 1000"),
    (["-n", "0"], "number of samples must be >= 1"),
    (["--batch", "-1"], "batch size must be >= 1"),
    (["--scale", "-1"], "scale must be >= 0"),
    (["--scale", "nan"], "scale must be finite"),
    (["--scale", "inf"], "scale must be finite"),
    (["--method", "magic"], "unknown method"),
    (["--model", "no-such-pack"], "unknown model"),
    (["--device", "tpu"], "unknown device"),
    (["--preset", "nope"], "unknown preset"),
    (["--method", "optimize", "--init-image", "MISSING"], "not found"),
    (["--method", "optimize", "--init-image", "NOTIMAGE"], "not an image"),
    (["--method", "optimize", "--init-image", "CORRUPT"], "Pillow can read"),
    (["--out", "FILE"], "is a file"),
    (["--out", "FILE/sub"], "is a file"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_nothing_written(tiny_pack, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "notimage.png").write_text("this is text")
    png = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    (tmp_path / "corrupt.png").write_bytes(png.read_bytes()[:40])
    subst = {"MISSING": str(tmp_path / "missing.png"), "NOTIMAGE": str(tmp_path / "notimage.png"),
             "CORRUPT": str(tmp_path / "corrupt.png"), "FILE": str(tmp_path / "file.txt"),
             "FILE/sub": str(tmp_path / "file.txt" / "sub")}
    extra = [subst.get(a, a) for a in extra]
    args = ["generate", "--model", str(tiny_pack), "--steps", "2", "-n", "1", "--out", str(out), *extra]
    if "--model" in extra:
        args = args[:1] + args[3:]
    before = tree(tmp_path)
    code, stdout, err = run_cli(args, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipterm: error: "), err
    assert message in lines[0]
    assert tree(tmp_path) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_absent_is_a_clear_error(tiny_pack, tmp_path, capsys):
    code, _, err = run_cli(["generate", "--model", str(tiny_pack), "--device", "cuda", "-n", "1",
                            "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_hub_model_names_cache_and_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err = run_cli(["generate", "--model", "cifar10", "--steps", "2", "-n", "1",
                            "--device", "cpu", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    line = err.strip()
    assert "google/ddpm-cifar10-32" in line and "HF_HUB_OFFLINE" in line
    assert "clipterm models --download cifar10" in line and len(line.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ctrl_c_keeps_finished_samples(tiny_pack, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipterm", "generate", "--model", str(tiny_pack), "-n", "40",
         "--batch", "2", "--steps", "60", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if out.exists() and any(out.rglob("sample-00001.png")):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no batch finished in time")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (run_dir,) = list(out.iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "incomplete"
    assert 2 <= info["n_done"] < 40
    assert len(list(run_dir.glob("sample-*.png"))) == info["n_done"] == len(info["samples"])
    assert f"stopped by SIGINT: {info['n_done']} of 40 samples kept in {run_dir}" in err


def test_main_called_in_process_puts_the_signal_handlers_back(tiny_pack, tmp_path):
    """An embedding program (or a test) that calls main(argv) keeps its own handlers; only the
    console entry point (argv None) ignores the stop signals while Python exits."""
    def mine(signum, frame):  # pragma: no cover - never delivered
        pass

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, mine)
    try:
        for argv in (["models", "--bogus"],
                     ["generate", "--model", str(tiny_pack), "-n", "1", "--steps", "2",
                      "--out", str(tmp_path), "-q"]):
            try:
                main(argv)
            except SystemExit as exc:  # the usage error exits 2; the run returns
                assert exc.code == 2
            assert signal.getsignal(signal.SIGTERM) is mine
            assert {s: signal.getsignal(s) for s in before} == before
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
