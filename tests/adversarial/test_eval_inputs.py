"""``clipterm eval`` with hostile or mistaken options and inputs (real images, Inception weights):
one line, exit 2, nothing written, nothing from a file run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.adversarial.evaldata import (
    bomb_png,
    build_judged_pack,
    build_real_folder,
    evil_weights,
    make_run,
)
from tests.adversarial.harness import (
    assert_ok,
    assert_unchanged,
    assert_user_error,
    run_cli,
    snapshot,
)

HAVE_FIDELITY = True
try:
    import torch_fidelity  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs it
    HAVE_FIDELITY = False
needs_fidelity = pytest.mark.skipif(not HAVE_FIDELITY, reason="torch-fidelity not installed")


@pytest.fixture(scope="module")
def world(tiny_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A judged pack, real images and one finished run folder (shared, never modified)."""
    root = tmp_path_factory.mktemp("eval_inputs")
    pack = build_judged_pack(tiny_pack, root / "pack")
    real = build_real_folder(root / "real")
    run = make_run(pack, root / "runs")
    return {"pack": pack, "real": real, "run": run, "root": root}


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    """Hostile real-image folders and weight files."""
    def folder(name: str) -> Path:
        p = tmp_path / name
        p.mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p / "good-0.png")
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(p / "good-1.png")
        return p

    bomb_png(folder("bombs") / "bomb.png")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    full = (tmp_path / "noise.png").read_bytes()
    (folder("truncated") / "cut.png").write_bytes(full[: len(full) // 2])
    (folder("text") / "text.png").write_text("not an image")
    (folder("empty-file") / "empty.png").write_bytes(b"")
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("x")
    (tmp_path / "garbage.pth").write_bytes(b"\x00\x01 not a weight file" * 10)
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
    import torch

    torch.save({"some.other.layer": torch.zeros(3)}, tmp_path / "wrong-keys.pth")
    torch.save([torch.zeros(3)], tmp_path / "a-list.pth")
    (tmp_path / "weights-dir").mkdir()
    return {k: str(tmp_path / v) for k, v in {
        "BOMBS": "bombs", "TRUNCATED": "truncated", "TEXT": "text", "EMPTYFILE": "empty-file",
        "NOIMAGES": "no-images", "MISSING": "nowhere", "GARBAGE": "garbage.pth",
        "GARBAGE_ST": "garbage.safetensors", "WRONGKEYS": "wrong-keys.pth", "LIST": "a-list.pth",
        "WDIR": "weights-dir", "NOWEIGHTS": "no-such-weights.pth", "TMP": ".",
    }.items()}


def _fill(args: list[str], world: dict[str, Path], files: dict[str, str]) -> list[str]:
    names = {"RUN": str(world["run"]), "PACK": str(world["pack"]), "REAL": str(world["real"]),
             **files}
    return [names.get(a, a) for a in args]


BASE = ["eval", "RUN", "--model", "PACK"]
WITH_REAL = [*BASE, "--real", "REAL"]
CASES = [
    # KID options
    ("subset size above both sets", [*WITH_REAL, "--subset-size", "1000"],
     ["largest valid value is 6"]),
    ("subset size above the real set", [*WITH_REAL, "--subset-size", "7"],
     ["largest valid value is 6"]),
    ("subset size 1", [*WITH_REAL, "--subset-size", "1"], ["at least 2"]),
    ("subset size 0", [*WITH_REAL, "--subset-size", "0"], ["at least 2"]),
    ("subset size negative", [*WITH_REAL, "--subset-size", "-4"], ["at least 2"]),
    ("subsets 0", [*WITH_REAL, "--subsets", "0"], ["--subsets"]),
    ("subsets negative", [*WITH_REAL, "--subsets", "-3"], ["--subsets"]),
    ("subsets absurd", [*WITH_REAL, "--subsets", "100000000"], ["--subsets", "1..10000"]),
    ("seed negative", [*WITH_REAL, "--seed", "-1"], ["seed", "0..2**63-1"]),
    ("seed too large", [*WITH_REAL, "--seed", str(2**64)], ["seed"]),
    ("unknown features", [*WITH_REAL, "--features", "pixels"], ["unknown features"]),
    ("features with escapes", [*WITH_REAL, "--features", "\x1b]0;owned\x07"],
     ["unknown features", "\\x1b"]),
    # real images
    ("real folder missing", [*BASE, "--real", "MISSING"], ["not found"]),
    ("real folder without images", [*BASE, "--real", "NOIMAGES"], ["no png or jpeg"]),
    ("real decompression bomb", [*BASE, "--real", "BOMBS"], ["bomb.png", "too large"]),
    ("real truncated png", [*BASE, "--real", "TRUNCATED"], ["cut.png", "damaged"]),
    ("real text named .png", [*BASE, "--real", "TEXT"], ["text.png", "not an image"]),
    ("real empty file", [*BASE, "--real", "EMPTYFILE"], ["empty.png"]),
    ("real unknown digits class", [*BASE, "--real", "digits:eleven"], ["unknown digits class"]),
    ("real cifar10 not downloaded", [*BASE, "--real", "cifar10:cat", "--data-root", "TMP"],
     ["cifar-10 is not under"]),
    ("real unknown dataset class index", [*BASE, "--real", "digits:42"],
     ["unknown digits class"]),
    # packs
    ("model that is not a pack", ["eval", "RUN", "--model", "MISSING", "--real", "REAL"], []),
    ("run's pack not built in", ["eval", "RUN", "--real", "REAL"], ["pass --model"]),
]


@pytest.mark.parametrize("case,args,needles", CASES, ids=[c[0] for c in CASES])
def test_eval_options_and_inputs(case, args, needles, world, files, capsys):
    before = snapshot(world["root"])
    o = run_cli(_fill(args, world, files), capsys)
    assert_user_error(o, *needles)
    assert o.out == ""
    assert_unchanged(before, world["root"])


# ----------------------------------------------------------------------------- Inception weights
INCEPTION = [*WITH_REAL, "--features", "inception"]
WEIGHT_CASES = [
    ("weights file missing", [*INCEPTION, "--inception-weights", "NOWEIGHTS"], ["no such file"]),
    ("weights path a folder", [*INCEPTION, "--inception-weights", "WDIR"], ["no such file"]),
    ("weights garbage", [*INCEPTION, "--inception-weights", "GARBAGE"],
     ["garbage.pth", "refused"]),
    ("weights garbage safetensors", [*INCEPTION, "--inception-weights", "GARBAGE_ST"],
     ["not a valid safetensors file"]),
    ("weights of another network", [*INCEPTION, "--inception-weights", "WRONGKEYS"],
     ["do not fit"]),
    ("weights not a state dict", [*INCEPTION, "--inception-weights", "LIST"],
     ["does not hold a state dict"]),
]


@needs_fidelity
@pytest.mark.parametrize("case,args,needles", WEIGHT_CASES, ids=[c[0] for c in WEIGHT_CASES])
def test_inception_weight_files(case, args, needles, world, files, capsys):
    before = snapshot(world["root"])
    o = run_cli(_fill(args, world, files), capsys)
    assert_user_error(o, "inception", *needles)
    assert_unchanged(before, world["root"])


@needs_fidelity
@pytest.mark.parametrize("where", ["--inception-weights", "torch hub cache"])
def test_a_pickle_that_runs_code_is_refused_and_never_runs(where, world, tmp_path, capsys,
                                                           monkeypatch):
    """The weight file's pickle would create a file when unpickled (as torch-fidelity's own
    loader, weights_only=False, would do): clipterm refuses it and the file never appears."""
    import torch

    marker = tmp_path / "pwned"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    hub = Path(torch.hub.get_dir()) / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    hub.parent.mkdir(parents=True)
    evil = evil_weights(hub if where != "--inception-weights" else tmp_path / "evil.pth", marker)
    # the control: this file really runs code when unpickled the library's way
    control = tmp_path / "control"
    torch.load(evil_weights(tmp_path / "control.pth", control), weights_only=False)
    assert control.exists()

    args = [*_fill(INCEPTION, world, {}), *(["--inception-weights", str(evil)]
                                             if where == "--inception-weights" else [])]
    o = run_cli(args, capsys)
    assert_user_error(o, "inception weights", "refused", "nothing in it was run")
    assert not marker.exists()


@needs_fidelity
def test_inception_weights_not_cached_and_no_download(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    o = run_cli(_fill(INCEPTION, world, {}), capsys)
    assert_user_error(o, "not in torch's hub cache", "--download", "--inception-weights")
    assert not (tmp_path / "empty-torch-home").exists()


# ----------------------------------------------------------------------------- JSON output
def test_json_output_is_strict_and_escapes_nothing_raw(world, capsys):
    o = run_cli([*_fill(WITH_REAL, world, {}), "--json", "--subsets", "5"], capsys)
    assert_ok(o)
    report = json.loads(o.out, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert report["n"] == 6 and report["kid_subsets"] == 5
    assert "\x1b" not in o.out
