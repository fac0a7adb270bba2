"""scripts/reproduce_results.py, which writes docs/RESULTS.md and the digits pack's quality entry."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reproduce_results", ROOT / "scripts" / "reproduce_results.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(script: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    rc = script.main(["--quick", "--threads", "1", "--init-count", "2", "--out", str(out / "runs"),
                      "--page", str(out / "RESULTS.md"), "--img", str(out / "img")])
    assert rc == 0
    return out


@pytest.mark.slow
def test_quick_run_writes_the_page_images_and_results(quick_run: Path) -> None:
    page = (quick_run / "RESULTS.md").read_text()
    for heading in ("## The table", "### x_T optimisation from a real image",
                    "## Which of the poster's conclusions hold here", "## Ablations"):
        assert heading in page
    for name in ("results-grid.png", "results-init-image.png"):
        assert (quick_run / "img" / name).stat().st_size > 0
    (results,) = quick_run.glob("runs/*/results.json")
    r = json.loads(results.read_text())
    assert {x["method"] for x in r["records"]} == {"uncond", "spherical", "contrastive", "optimize"}
    assert len(r["records"]) == 8  # 4 methods x seeds 0,1
    init = r["init_image"]
    assert init["n"] == 2 and init["source"] == "one" and "_before" not in init
    assert 0.0 <= init["judged_target_share"] <= 1.0
    # the options section: guide every k-th step, init image strengths, weighted prompts
    assert "## Guide every k-th step, init images, weighted prompts" in page
    o = r["options"]
    assert [row["guide_every"] for row in o["guide_every"]] == [1, 2]
    assert [row["guided_steps"] for row in o["guide_every"]] == [3, 2]  # of 3 steps
    assert all(len(row["per_seed"]) == 2 for row in o["guide_every"])
    strengths = o["init_image"]["strengths"]
    assert [row["strength"] for row in strengths] == [0.0, 1.0]
    assert o["init_image"]["judged"]["share_source"] == 1.0  # the judge calls the image a one
    # strength 0 gives the init image back (a pixel or so of rounding); 1 is far from it
    assert all(x["pixel_mad"] < 2 and x["share_source"] == 1.0 for x in strengths[0]["per_seed"])
    assert all(x["pixel_mad"] > 10 for x in strengths[1]["per_seed"])
    assert [row["prompt"] for row in o["weighted"]] == ["seven", "seven:1|one:-1"]
    assert "| `seven:1\\|one:-1` |" in page  # the | escaped inside the table


def test_only_options_replaces_just_its_section(script: ModuleType) -> None:
    old = script.OPTIONS_BEGIN + "\nold numbers\n" + script.OPTIONS_END
    page = f"# Results\n\n{old}\n## Measurement choices\n\ntext\n"
    new = f"{script.OPTIONS_BEGIN}\nnew numbers\n{script.OPTIONS_END}\n"
    out = script.splice_options(page, new)
    assert out == f"# Results\n\n{new.rstrip()}\n## Measurement choices\n\ntext\n"
    # a page without the section gets it before "Measurement choices", once
    fresh = script.splice_options("# Results\n\n## Measurement choices\n", new)
    assert fresh == f"# Results\n\n{new}\n## Measurement choices\n"
    assert script.splice_options(fresh, new) == fresh


@pytest.mark.slow
def test_manifest_quality_entry(script: ModuleType, quick_run: Path, tmp_path: Path) -> None:
    (results,) = quick_run.glob("runs/*/results.json")
    r = json.loads(results.read_text())
    manifest = tmp_path / "manifest.json"
    shutil.copy(ROOT / "clipterm" / "packs" / "digits" / "manifest.json", manifest)
    before = json.loads(manifest.read_text())
    args = argparse.Namespace(model="digits", quick=False, preset=None, steps=None, n=6,
                              manifest=manifest)
    from clipterm.models import load_pack

    pack = load_pack("digits", device="cpu")
    script.write_manifest_quality(r, ["uncond", "spherical", "contrastive", "optimize"], [0, 1],
                                  "seven", pack, args)
    after = json.loads(manifest.read_text())
    assert after["models"] == before["models"] and after["files"] == before["files"]
    q = after["quality"]
    shares = [x["judged_share"] for x in r["records"] if x["method"] == "contrastive"]
    assert q["methods"]["contrastive"]["judged_share_per_seed"] == [round(v, 3) for v in shares]
    assert q["bars"]["met_share"] == (q["methods"]["contrastive"]["judged_share_mean"] >= 0.8
                                      and q["methods"]["spherical"]["judged_share_mean"] >= 0.6)
    assert 0.9 < q["judge_confidence_real_test_digits"] <= 1.0
    assert q["optimize_from_init_image"]["n"] == 2
    assert "contrastive: 3 ddim steps, scale" in q["setting"]


@pytest.mark.slow
def test_write_manifest_refuses_non_default_runs(script: ModuleType, quick_run: Path) -> None:
    args = argparse.Namespace(model="digits", quick=True, preset=None, steps=3, n=6,
                              manifest=quick_run / "never.json")
    with pytest.raises(SystemExit, match="default settings"):
        script.write_manifest_quality({}, [], [], "seven", None, args)
    assert not (quick_run / "never.json").exists()
