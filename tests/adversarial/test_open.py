"""``clipterm open RUN_DIR`` with folders that cannot be shown: one line, exit 2, the folder
untouched, and the app never started. (A good folder opens the app: see tests/tui.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.adversarial.harness import (
    assert_unchanged,
    assert_usage_error,
    assert_user_error,
    run_cli,
    snapshot,
)


def config() -> dict:
    """A run.json config as the core writes it today."""
    from clipterm.api import make_config
    from clipterm.packs import get_pack_spec

    return make_config(get_pack_spec("digits"), prompt="seven", distractors=["one", "two"],
                       method="contrastive", n=2, batch=2, steps=5, seed=0).to_dict()


def write_run(folder: Path, run: object | None = None, samples: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(samples):
        name = f"sample-{i:05d}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / name)
        entries.append({"index": i, "file": name, "probs": {"seven": 0.8, "one": 0.1,
                                                            "two": 0.1}})
    if run is None:
        run = {"clipterm": "run", "status": "complete", "pack": "digits", "config": config(),
               "captions": ["seven", "one", "two"], "samples": entries,
               "prob_trace": [[1, 980, [0.3, 0.4, 0.3]], [5, 0, [0.8, 0.1, 0.1]]]}
    (folder / "run.json").write_text(run if isinstance(run, str) else json.dumps(run))
    return folder


def good(folder: Path) -> dict:
    write_run(folder)
    return json.loads((folder / "run.json").read_text())


def case_missing(tmp: Path) -> Path:
    return tmp / "nothing-here"


def case_a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file"


def case_no_run_json(tmp: Path) -> Path:
    (tmp / "run").mkdir()
    return tmp / "run"


def case_not_json(tmp: Path) -> Path:
    return write_run(tmp / "run", "{not json")


def case_not_utf8(tmp: Path) -> Path:
    folder = write_run(tmp / "run")
    (folder / "run.json").write_bytes(b"\xff\xfe{}")
    return folder


def case_a_list(tmp: Path) -> Path:
    return write_run(tmp / "run", [1, 2])


def case_too_deep(tmp: Path) -> Path:
    return write_run(tmp / "run", "[" * 100000 + "]" * 100000)


def case_no_config(tmp: Path) -> Path:
    run = good(tmp / "run")
    del run["config"]
    return write_run(tmp / "run", run)


def case_bad_config(tmp: Path) -> Path:
    run = good(tmp / "run")
    run["config"]["steps"] = 0
    return write_run(tmp / "run", run)


def case_config_wrong_types(tmp: Path) -> Path:
    run = good(tmp / "run")
    run["config"]["n"] = "lots"
    return write_run(tmp / "run", run)


def case_no_samples(tmp: Path) -> Path:
    run = good(tmp / "run")
    run["samples"] = []
    return write_run(tmp / "run", run)


def case_samples_not_list(tmp: Path) -> Path:
    run = good(tmp / "run")
    run["samples"] = "all of them"
    return write_run(tmp / "run", run)


def case_path_outside(tmp: Path) -> Path:
    secret = tmp / "secret.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(secret)
    run = good(tmp / "run")
    run["samples"][0]["file"] = "../secret.png"
    return write_run(tmp / "run", run)


def case_absolute_path(tmp: Path) -> Path:
    run = good(tmp / "run")
    run["samples"][0]["file"] = "/etc/passwd"
    return write_run(tmp / "run", run)


def case_symlink_outside(tmp: Path) -> Path:
    secret = tmp / "secret.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(secret)
    folder = write_run(tmp / "run")
    (folder / "sample-00000.png").unlink()
    os.symlink(secret, folder / "sample-00000.png")
    return folder


def case_damaged_png(tmp: Path) -> Path:
    folder = write_run(tmp / "run")
    (folder / "sample-00001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return folder


def case_bomb_png(tmp: Path) -> Path:
    folder = write_run(tmp / "run")
    Image.new("1", (20000, 20000)).save(folder / "sample-00001.png")
    return folder


def case_mixed_sizes(tmp: Path) -> Path:
    folder = write_run(tmp / "run")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "sample-00001.png")
    return folder


def case_bad_index(tmp: Path) -> Path:
    run = good(tmp / "run")
    run["samples"][0]["index"] = "zero"
    return write_run(tmp / "run", run)


def case_escape_in_name(tmp: Path) -> Path:
    return tmp / "run\x1b]0;owned\x07"


def case_escape_in_prompt(tmp: Path) -> Path:
    run = good(tmp / "run")
    run["config"]["prompt"] = "\x1b[2Jseven"
    run["samples"][0]["file"] = "../x.png"
    return write_run(tmp / "run", run)


CASES = [
    ("missing folder", case_missing, "is not a folder"),
    ("a file", case_a_file, "is not a folder"),
    ("no run.json", case_no_run_json, "no run.json"),
    ("run.json not JSON", case_not_json, "not valid JSON"),
    ("run.json not UTF-8", case_not_utf8, "not UTF-8"),
    ("run.json a list", case_a_list, "not a clipterm run record"),
    ("run.json nested too deep", case_too_deep, "nested too deeply"),
    ("no config", case_no_config, "config"),
    ("config out of range", case_bad_config, "number of steps"),
    ("config wrong types", case_config_wrong_types, "number of samples"),
    ("no samples", case_no_samples, "no finished samples"),
    ("samples not a list", case_samples_not_list, "lists no samples"),
    ("sample path outside", case_path_outside, "expected sample-NNNNN.png"),
    ("sample absolute path", case_absolute_path, "expected sample-NNNNN.png"),
    ("sample symlink outside", case_symlink_outside, "leads outside"),
    ("damaged png", case_damaged_png, "not an image"),
    ("decompression bomb", case_bomb_png, "too large"),
    ("mixed image sizes", case_mixed_sizes, "the others"),
    ("sample index not a number", case_bad_index, "sample index"),
    ("escape in folder name", case_escape_in_name, "\\x1b"),
    ("escape in prompt", case_escape_in_prompt, "expected sample-NNNNN.png"),
]


@pytest.mark.parametrize(("make", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_open_refuses_what_it_cannot_show(tmp_path, capsys, monkeypatch, make, needle) -> None:
    import clipterm.tui.app as app_module

    def never(**kw):  # the app must not start for a folder it cannot show
        raise AssertionError("the app was started")

    monkeypatch.setattr(app_module, "run_app", never)
    folder = make(tmp_path)
    before = snapshot(tmp_path)
    outcome = run_cli(["open", str(folder)], capsys)
    assert_user_error(outcome, needle)
    assert_unchanged(before, tmp_path)


def test_open_needs_a_folder(capsys) -> None:
    assert_usage_error(run_cli(["open"], capsys), "Missing argument")


def test_a_good_folder_starts_the_app_with_the_run(tmp_path, capsys, monkeypatch) -> None:
    import clipterm.tui.app as app_module

    opened = []
    monkeypatch.setattr(app_module, "run_app", lambda **kw: opened.append(kw["open_run"]))
    folder = write_run(tmp_path / "run")
    before = snapshot(tmp_path)
    outcome = run_cli(["open", str(folder)], capsys)
    assert outcome.code == 0, outcome.err
    (past,) = opened
    assert past.result.config.prompt == "seven" and len(past.result.images) == 2
    assert_unchanged(before, tmp_path)
