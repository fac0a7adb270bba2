"""``clipterm eval`` and ``clipterm plot`` on damaged, hostile or unfinished run folders: one
line and exit 2, or a warning where the rest can be used; nothing read outside the folder,
nothing written, nothing from the folder printed raw."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.adversarial.evaldata import (
    bomb_png,
    build_judged_pack,
    build_real_folder,
    copy_run,
    edit_record,
    make_run,
)
from tests.adversarial.harness import (
    assert_ok,
    assert_unchanged,
    assert_user_error,
    run_cli,
    snapshot,
)


@pytest.fixture(scope="module")
def world(tiny_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run_folders")
    pack = build_judged_pack(tiny_pack, root / "pack")
    return {"pack": pack, "real": build_real_folder(root / "real"),
            "run": make_run(pack, root / "runs"), "root": root}


@pytest.fixture()
def run(world, tmp_path) -> Path:
    """A fresh copy of the finished run folder, to damage."""
    return copy_run(world["run"], tmp_path / "run")


def evaluate(folder: Path, world: dict[str, Path], capsys, *extra: str):
    return run_cli(["eval", folder, "--model", world["pack"], "--real", world["real"],
                    "--subsets", "5", *extra], capsys)


def plot(folder: Path, capsys, *extra: str):
    return run_cli(["plot", folder, "--width", "30", *extra], capsys)


# ----------------------------------------------------------------------------- damage
def _truncate(run: Path) -> None:
    data = (run / "sample-00001.png").read_bytes()
    (run / "sample-00001.png").write_bytes(data[: len(data) // 2])


def _resize(run: Path) -> None:
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(run / "sample-00002.png")


def _text_png(run: Path) -> None:
    (run / "sample-00000.png").write_text("not an image")


def _bomb(run: Path) -> None:
    bomb_png(run / "sample-00003.png")


def _all_missing(run: Path) -> None:
    for p in run.glob("sample-*.png"):
        p.unlink()


def _file(name: str) -> Callable[[Path], None]:
    def change(run: Path) -> None:
        data = json.loads((run / "run.json").read_text())
        data["samples"][0]["file"] = name
        (run / "run.json").write_text(json.dumps(data))
    return change


def _samples(value) -> Callable[[Path], None]:
    return lambda run: edit_record(run, samples=value)


def _record(**changes) -> Callable[[Path], None]:
    return lambda run: edit_record(run, **changes)


def _config(**changes) -> Callable[[Path], None]:
    def change(run: Path) -> None:
        data = json.loads((run / "run.json").read_text())
        data["config"].update(changes)
        (run / "run.json").write_text(json.dumps(data))
    return change


def _raw(text: bytes) -> Callable[[Path], None]:
    return lambda run: (run / "run.json").write_bytes(text)


def _symlink_out(run: Path) -> None:
    outside = run.parent / "outside.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside)
    (run / "sample-00000.png").unlink()
    (run / "sample-00000.png").symlink_to(outside)


def _symlink_passwd(run: Path) -> None:
    (run / "sample-00000.png").unlink()
    (run / "sample-00000.png").symlink_to("/etc/passwd")


def _symlink_loop(run: Path) -> None:
    (run / "sample-00000.png").unlink()
    (run / "sample-00000.png").symlink_to(run / "sample-00000.png")


def _record_link_out(run: Path) -> None:
    outside = run.parent / "elsewhere.json"
    outside.write_text((run / "run.json").read_text())
    (run / "run.json").unlink()
    (run / "run.json").symlink_to(outside)


def _record_dir(run: Path) -> None:
    (run / "run.json").unlink()
    (run / "run.json").mkdir()


def _record_gone(run: Path) -> None:
    (run / "run.json").unlink()


def _sample_dir(run: Path) -> None:
    (run / "sample-00000.png").unlink()
    (run / "sample-00000.png").mkdir()


def _fifo(run: Path) -> None:
    (run / "sample-00000.png").unlink()
    os.mkfifo(run / "sample-00000.png")


def _twice(run: Path) -> None:
    data = json.loads((run / "run.json").read_text())
    data["samples"].append(dict(data["samples"][0]))
    (run / "run.json").write_text(json.dumps(data))


def _empty_folder(run: Path) -> None:
    for p in run.iterdir():
        p.unlink()


def _nested(run: Path) -> None:
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)


def _huge_number(run: Path) -> None:
    text = (run / "run.json").read_text()
    (run / "run.json").write_text(text.replace('"seed": 0', '"seed": ' + "9" * 5000, 1))


# (id, damage, eval needles, plot needles); None: that command must succeed
ERRORS = [
    ("truncated png", _truncate, ["sample-00001.png", "damaged"], None),
    ("mixed sizes", _resize, ["differ in size", "16x16"], None),
    ("text named .png", _text_png, ["sample-00000.png", "not an image"], None),
    ("decompression bomb sample", _bomb, ["sample-00003.png", "too large"], None),
    ("every sample file missing", _all_missing, ["no samples to evaluate", "missing"], None),
    ("file ../../x.png", _file("../../x.png"), ["outside the run folder", "refused"], None),
    ("file /etc/passwd", _file("/etc/passwd"), ["outside the run folder", "refused"], None),
    ("file with .. inside", _file("sub/../sample-00001.png"), ["outside the run folder"], None),
    ("file not a string", _file(5), ["samples[0]", "file"], None),
    ("file empty", _file(""), ["samples[0]"], None),
    ("file names a folder", _sample_dir, ["sample-00000.png", "not a file"], None),
    ("sample symlink leading out", _symlink_out, ["leads outside the run folder"], None),
    ("sample symlink to /etc/passwd", _symlink_passwd, ["leads outside"], None),
    ("sample symlink loop", _symlink_loop, ["sample-00000.png", "cannot be opened"], None),
    ("sample is a fifo", _fifo, ["not a file"], None),
    ("sample listed twice", _twice, ["twice"], None),
    ("samples not a list", _samples("sample-00000.png"), ["samples must be a list"], None),
    ("samples entry not an object", _samples([5]), ["samples[0]"], None),
    ("samples empty, pngs on disk", _samples([]),
     ["run.json lists no samples", "6 sample pngs", "not listed"], None),
    ("run.json not json", _raw(b"{not json"), ["not valid json"], ["not valid json"]),
    ("run.json truncated", _raw(b'{"clipterm": "run", "samples": [{"fi'), ["not valid json"],
     ["not valid json"]),
    ("run.json a list", _raw(b"[]"), ["not a clipterm run record"],
     ["not a clipterm run record"]),
    ("run.json an empty object", _raw(b"{}"), ["not a clipterm run record"],
     ["not a clipterm run record"]),
    ("run.json a string", _raw(b'"run"'), ["not a clipterm run record"],
     ["not a clipterm run record"]),
    ("run.json not utf-8", _raw(b'{"clipterm": "run", "pack": "\xff\xfe"}'), ["utf-8"],
     ["utf-8"]),
    ("run.json empty", _raw(b""), ["not valid json"], ["not valid json"]),
    ("run.json nested 100000 deep", _nested, ["not valid json"], ["not valid json"]),
    ("run.json 5000-digit number", _huge_number, ["not valid json"], ["not valid json"]),
    ("run.json a folder", _record_dir, ["run.json is not a file"], ["run.json is not a file"]),
    ("run.json missing", _record_gone, ["no run.json"], ["no run.json"]),
    ("run.json a link out of the folder", _record_link_out, ["outside the run folder"],
     ["outside the run folder"]),
    ("empty folder", _empty_folder, ["no run.json"], ["no run.json"]),
    ("config not an object", _record(config=5), ["config", "json object"], None),
    ("prompt a number", _config(prompt=5), ["config.prompt", "string"], None),
    ("seed a string", _config(seed="0"), ["config.seed", "whole number"], None),
    ("seed true", _config(seed=True), ["config.seed"], None),
    ("n a float", _config(n=1e308), ["config.n", "whole number"], None),
    ("status unknown", _record(status="bogus"), ["status"], None),
    ("mean_target_prob a string", _record(mean_target_prob="high"), ["mean_target_prob"], None),
    ("timings not an object", _record(timings=[1]), ["timings"], None),
    ("captions not a list", _record(captions="one"), ["captions"], ["captions"]),
    ("captions of numbers", _record(captions=[1, 2]), ["captions"], ["captions"]),
    ("no prompt anywhere", lambda r: (_config(prompt=None)(r), edit_record(r, captions=[])),
     ["names no prompt"], ["captions"]),
    ("prob_trace a string", _record(prob_trace="abc"), None, ["prob_trace must be a list"]),
    ("prob_trace row too short", _record(prob_trace=[[0, 999]]), None, ["prob_trace[0]"]),
    ("prob_trace wrong caption count", _record(prob_trace=[[0, 999, [0.5]]]), None,
     ["prob_trace[0]", "(4)"]),
    ("prob_trace text probability", _record(prob_trace=[[0, 999, ["a", 0, 0, 0]]]), None,
     ["prob_trace[0]"]),
    ("prob_trace missing", _record(prob_trace=...), None, ["no probability trace"]),
]


@pytest.mark.parametrize("case,damage,eval_needles,plot_needles", ERRORS,
                         ids=[c[0] for c in ERRORS])
def test_damaged_run_folders(case, damage, eval_needles, plot_needles, run, world, capsys):
    damage(run)
    before = snapshot(run.parent)
    o = evaluate(run, world, capsys)
    if eval_needles is None:
        assert_ok(o)
    else:
        assert_user_error(o, *eval_needles)
    p = plot(run, capsys)
    if plot_needles is None:
        assert_ok(p)
    else:
        assert_user_error(p, *plot_needles)
    assert_unchanged(before, run.parent)


@pytest.mark.parametrize("pack,needle", [(..., "does not name its pack"),
                                         ("", "does not name its pack"),
                                         ("nope\x1b[2J", "not a built-in pack")],
                         ids=["pack missing", "pack empty", "pack unknown with escapes"])
def test_the_runs_pack_without_model(pack, needle, run, world, capsys):
    edit_record(run, pack=pack)
    before = snapshot(run.parent)
    o = run_cli(["eval", run, "--real", world["real"]], capsys)
    assert_user_error(o, needle, "--model")
    assert_unchanged(before, run.parent)


def test_run_folder_that_is_a_file(tmp_path, world, capsys):
    (tmp_path / "file").write_text("x")
    for o in (evaluate(tmp_path / "file", world, capsys), plot(tmp_path / "file", capsys)):
        assert_user_error(o, "is not a folder")


# ----------------------------------------------------------------------------- warnings
def _warnings(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("clipterm: warning: ")]


def test_one_missing_sample_is_a_warning_and_the_rest_is_used(run, world, capsys):
    (run / "sample-00003.png").unlink()
    o = evaluate(run, world, capsys, "--json")
    assert_ok(o)
    (line,) = _warnings(o.err)
    assert "sample-00003.png" in line and "evaluating the 5 found" in line
    assert json.loads(o.out)["n"] == 5


@pytest.mark.parametrize("alive", [False, True], ids=["process gone", "process alive"])
def test_a_run_still_marked_running(alive, run, world, capsys):
    """A run killed mid-way (run.json says running, its process is gone): eval uses the samples
    listed and says so in one warning line."""
    pid = os.getpid() if alive else 2**22 + 12345  # above Linux's pid_max: no such process
    data = edit_record(run, status="running", pid=pid, host=socket.gethostname())
    data["samples"] = data["samples"][:4]
    (run / "run.json").write_text(json.dumps(data))
    o = evaluate(run, world, capsys, "--json")
    assert_ok(o)
    (line,) = _warnings(o.err)
    needle = "still running" if alive else "no process is making the run"
    assert needle in line and "evaluating the 4 samples" in line
    assert json.loads(o.out)["n"] == 4


@pytest.mark.parametrize("status", ["incomplete", "aborted", "failed"])
def test_unfinished_runs_are_evaluated_with_a_warning(status, run, world, capsys):
    edit_record(run, status=status)
    o = evaluate(run, world, capsys)
    assert_ok(o)
    (line,) = _warnings(o.err)
    assert f"the run is {status}" in line and "evaluating the 6 samples" in line


def test_nan_and_infinity_in_run_json_read_as_missing_and_json_out_is_strict(run, world,
                                                                             capsys):
    text = (run / "run.json").read_text()
    data = json.loads(text)
    data["mean_target_prob"] = float("nan")
    data["config"]["scale"] = float("inf")
    (run / "run.json").write_text(json.dumps(data))  # bare NaN and Infinity, as old versions
    o = evaluate(run, world, capsys, "--json")
    assert_ok(o)
    report = json.loads(o.out, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert report["mean_target_prob"] is None and report["scale"] is None
    text_out = evaluate(run, world, capsys)
    assert_ok(text_out)
    assert "mean final CLIP p('one'): - (from run.json)" in text_out.out


ESC = "\x1b]0;owned\x07\x1b[2J"


def test_escape_sequences_from_run_json_never_reach_the_terminal(run, world, capsys):
    data = json.loads((run / "run.json").read_text())
    data["config"]["method"] = "contrastive" + ESC
    data["status"] = "complete"
    data["captions"] = ["one" + ESC, "zero\u202e", "two", "three"]
    (run / "run.json").write_text(json.dumps(data))
    for o in (evaluate(run, world, capsys), plot(run, capsys)):
        assert_ok(o)
        assert "\x1b" not in o.text and "\x07" not in o.text and "\u202e" not in o.text
        assert "\\x1b" in o.text
