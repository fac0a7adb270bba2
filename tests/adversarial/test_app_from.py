"""``clipterm --from PATH`` (the app, its form filled with a recorded run's settings) with paths
that hold no usable settings: one line, exit 2, nothing on disk touched, and the app never
started. (Good paths open the app: see tests/tui/test_generation_options.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.adversarial.harness import assert_unchanged, assert_user_error, run_cli, snapshot


def png(path: Path, text: dict[str, str] | None = None) -> Path:
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(path, pnginfo=info)
    return path


def settings(**change: Any) -> str:
    from clipterm.api import make_config
    from clipterm.packs import get_pack_spec

    cfg = make_config(get_pack_spec("digits"), prompt="seven", method="contrastive", n=2,
                      steps=5).to_dict()
    return json.dumps({"pack": "digits", **cfg, "index": 0, **change})


def build(case: str, root: Path) -> Path:
    """The path ``clipterm --from`` is given for a case (made under ``root``)."""
    root.mkdir(parents=True, exist_ok=True)
    if case == "missing":
        return root / "nothing-here"
    if case == "text-file":
        (root / "notes.png").write_text("not an image")
        return root / "notes.png"
    if case == "png-without-settings":
        return png(root / "plain.png")
    if case == "png-settings-not-json":
        return png(root / "bad.png", {"clipterm": "{not json"})
    if case == "png-settings-invalid":
        return png(root / "bad.png", {"clipterm": settings(n=-1)})
    if case == "png-settings-no-pack":
        return png(root / "bad.png", {"clipterm": settings(pack="", pack_source="")})
    if case == "png-index-negative":
        return png(root / "bad.png", {"clipterm": settings(index=-3)})
    if case == "png-escape-in-prompt":
        return png(root / "bad.png", {"clipterm": settings(prompt="\x1b[31mred", n=0)})
    if case == "folder-without-run-json":
        (root / "run").mkdir()
        return root / "run"
    if case == "run-json-not-json":
        (root / "run").mkdir()
        (root / "run" / "run.json").write_text("{")
        return root / "run"
    raise AssertionError(case)


CASES = [
    ("missing", "no such run folder or sample PNG"),
    ("text-file", "is not an image"),
    ("png-without-settings", "holds no clipterm settings"),
    ("png-settings-not-json", "not valid JSON"),
    ("png-settings-invalid", "the recorded settings are not valid"),
    ("png-settings-no-pack", "does not name its pack"),
    ("png-index-negative", "sample index is not valid"),
    ("png-escape-in-prompt", "the recorded settings are not valid"),
    ("folder-without-run-json", "is not a clipterm run folder"),
    ("run-json-not-json", "is not valid JSON"),
]


@pytest.mark.parametrize(("case", "needle"), CASES, ids=[c for c, _ in CASES])
def test_clipterm_from_refuses_in_one_line(tmp_path, capsys, monkeypatch, case,
                                           needle) -> None:
    import clipterm.tui.app as app_module

    def no_app(**_: Any) -> None:
        raise AssertionError("the app started")

    monkeypatch.setattr(app_module, "run_app", no_app)
    path = build(case, tmp_path / "in")
    before = snapshot(tmp_path)
    outcome = run_cli(["--from", path], capsys)
    assert_user_error(outcome, needle)
    assert_unchanged(before, tmp_path)
