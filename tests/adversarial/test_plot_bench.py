"""Output paths of ``plot --png`` and ``bench --out`` (checked before the work, nothing existing
replaced, files with the umask's mode), and the evaluation options of ``sweep``/``compare``."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.adversarial.evaldata import (
    build_judged_pack,
    build_real_folder,
    copy_run,
    edit_record,
    make_run,
    umask,
)
from tests.adversarial.harness import (
    assert_ok,
    assert_unchanged,
    assert_user_error,
    file_mode,
    run_cli,
    snapshot,
)


@pytest.fixture(scope="module")
def world(tiny_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plot_bench")
    pack = build_judged_pack(tiny_pack, root / "pack")
    return {"pack": pack, "tiny": tiny_pack, "real": build_real_folder(root / "real"),
            "run": make_run(pack, root / "runs"), "root": root}


@pytest.fixture()
def place(tmp_path: Path) -> dict[str, str]:
    """Paths an output may be pointed at."""
    (tmp_path / "old.png").write_bytes(b"precious")
    (tmp_path / "old.json").write_text('{"precious": true}')
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    return {k: str(tmp_path / v) for k, v in {
        "OLDPNG": "old.png", "OLDJSON": "old.json", "DIR": "adir", "NOSUFFIX": "trace",
        "NOPARENT": "missing/trace.png", "UNDERFILE": "afile/trace.png",
        "DANGLINGPNG": "dangling.png", "NOPARENTJSON": "missing/b.json",
        "UNDERFILEJSON": "afile/b.json", "DANGLINGJSON": "dangling.json",
        "NEWJSON": "new.json"}.items()}


def _fill(args, world, place):
    names = {"RUN": str(world["run"]), "PACK": str(world["pack"]), "TINY": str(world["tiny"]),
             "REAL": str(world["real"]), **place}
    return [names.get(a, a) for a in args]


PLOT = ["plot", "RUN"]
BENCH = ["bench", "--model", "TINY", "--methods", "uncond", "--no-baselines", "--no-flops",
         "--batch", "1", "--steps-timed", "1", "--warmup", "1", "--device", "cpu"]
CASES = [
    ("plot png exists", [*PLOT, "--png", "OLDPNG"], ["exists", "never replaces"]),
    ("plot png a folder", [*PLOT, "--png", "DIR"], ["is a folder"]),
    ("plot png without .png", [*PLOT, "--png", "NOSUFFIX"], ["must end in .png"]),
    ("plot png folder missing", [*PLOT, "--png", "NOPARENT"], ["does not exist"]),
    ("plot png under a file", [*PLOT, "--png", "UNDERFILE"], ["does not exist"]),
    ("plot png dangling symlink", [*PLOT, "--png", "DANGLINGPNG"], ["exists"]),
    ("plot width 0", [*PLOT, "--width", "0"], ["--width", "8..400"]),
    ("plot width negative", [*PLOT, "--width", "-5"], ["--width"]),
    ("plot width huge", [*PLOT, "--width", "100000000"], ["--width"]),
    ("plot height 0", [*PLOT, "--height", "0"], ["--height", "4..200"]),
    ("plot height huge", [*PLOT, "--height", "1000000"], ["--height"]),
    ("bench out exists", [*BENCH, "--out", "OLDJSON"], ["exists", "never replaces"]),
    ("bench out a folder", [*BENCH, "--out", "DIR"], ["is a folder"]),
    ("bench out folder missing", [*BENCH, "--out", "NOPARENTJSON"], ["does not exist"]),
    ("bench out under a file", [*BENCH, "--out", "UNDERFILEJSON"], ["does not exist"]),
    ("bench out dangling symlink", [*BENCH, "--out", "DANGLINGJSON"], ["exists"]),
    ("bench unknown method", [*BENCH, "--methods", "uncond,magic", "--out", "NEWJSON"],
     ["unknown method", "magic"]),
    ("bench batch 0", [*BENCH, "--batch", "0", "--out", "NEWJSON"], ["--batch must be >= 1"]),
    ("bench steps-timed 0", [*BENCH, "--steps-timed", "0", "--out", "NEWJSON"],
     ["--steps-timed must be >= 1"]),
    ("bench agreement-steps negative", [*BENCH, "--agreement-steps", "-1", "--out", "NEWJSON"],
     ["--agreement-steps"]),
    ("bench optimize-memory not numbers", [*BENCH, "--optimize-memory", "1,x"],
     ["--optimize-memory"]),
    ("bench precision fp8", [*BENCH, "--precision", "fp8"], ["--precision"]),
    ("bench random weights of digits", ["bench", "--model", "digits", "--random-weights"],
     ["--random-weights", "cifar10"]),
]


@pytest.mark.parametrize("case,args,needles", CASES, ids=[c[0] for c in CASES])
def test_output_paths_and_options(case, args, needles, world, place, capsys):
    """Refused before any work: the one line is the only thing on stderr (no progress)."""
    where = Path(place["OLDPNG"]).parent
    before, run_before = snapshot(where), snapshot(world["run"])
    o = run_cli(_fill(args, world, place), capsys)
    assert_user_error(o, *needles)
    assert len(o.err.splitlines()) == 1, o.err
    assert o.out == ""
    assert_unchanged(before, where)
    assert_unchanged(run_before, world["run"])


def test_plot_png_is_written_new_with_the_umask_mode(world, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = copy_run(world["run"], tmp_path / "run")
    data = edit_record(run, captions=["$\\frac{one", "zero $x^$", "two", "three"])
    assert data["prob_trace"]
    target = tmp_path / "tr\x1bace.png"
    o = run_cli(["plot", run, "--png", target, "--width", "30"], capsys)
    assert_ok(o)
    assert target.read_bytes().startswith(b"\x89PNG")
    assert file_mode(target) == 0o666 & ~umask()
    assert "-> " in o.out and "tr\\x1bace.png" in o.out and "\x1b" not in o.text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bench_out_writes_a_new_strict_json_report(world, tmp_path, capsys):
    target = tmp_path / "bench.json"
    o = run_cli(_fill([*BENCH, "--out", str(target), "--json"], world, {}), capsys)
    assert_ok(o)
    report = json.loads(target.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert report["clipterm"] == "bench" and "uncond" in report["methods"]
    assert json.loads(o.out) == report
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask()


# ----------------------------------------------------------------------------- sweep, compare
EVAL_CASES = [
    ("sweep subsets 0", ["sweep", "--model", "PACK", "--scale", "1", "--eval", "--subsets", "0"],
     ["--subsets"]),
    ("sweep subset size 1", ["sweep", "--model", "PACK", "--scale", "1", "--eval",
                             "--subset-size", "1"], ["at least 2"]),
    ("sweep unknown features", ["sweep", "--model", "PACK", "--scale", "1", "--eval",
                                "--features", "pixels"], ["unknown features"]),
    ("sweep subset size above n", ["sweep", "--model", "PACK", "--scale", "1", "-n", "3",
                                   "--eval", "--real", "REAL", "--subset-size", "5"],
     ["largest valid value is 3"]),
    ("compare subset size above the real set", ["compare", "--model", "PACK", "--methods",
                                                "uncond", "-n", "20", "--eval", "--real",
                                                "REAL", "--subset-size", "15"],
     ["largest valid value is 10"]),
]


@pytest.mark.parametrize("case,args,needles", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_evaluation_options_of_sweep_and_compare(case, args, needles, world, tmp_path, capsys):
    out = tmp_path / "out"
    o = run_cli([*_fill(args, world, {}), "--out", out, "--steps", "2"], capsys)
    assert_user_error(o, *needles)
    assert not out.exists() or list(out.iterdir()) == []
