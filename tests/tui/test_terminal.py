"""The app in a real terminal (tmux): what a user sees at 80x24 and 120x40, under NO_COLOR, with
fast typing, F2 then Ctrl+C, and quitting. Slow; skipped without tmux.

Most cases run the app on the fake pack and sampler (tests/tui/fake_app.py: deterministic, no
torch), since what is tested is the terminal; one runs ``clipterm`` itself on the tiny real pack.
Every wait is for something on the screen, with a generous timeout; nothing is timed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .fakes import CAPTIONS, FAKE_PACK_JSON, FakeRunner
from .tmux import Tmux, have_tmux

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not have_tmux(), reason="tmux is not installed")]

FAKE_APP = f"{sys.executable} -m tests.tui.fake_app"
START = 120.0  # seconds: Python, Textual and the app starting on a loaded machine
BURST = ["s", "e", "v", "e", "n", *["BSpace"] * 6, "t", "h", "r", "e", "e"]


def env(tmp_path, **extra: str) -> dict[str, str]:
    return {"TERM": "xterm-256color", "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "HF_HUB_OFFLINE": "1", **extra}


def chromatic_colours(ansi: str) -> set[str]:
    """The SGR colours on the screen that are not greys (NO_COLOR allows shades of grey)."""
    found = set()
    for params in re.findall(r"\x1b\[([0-9;]*)m", ansi):
        codes = [int(c) if c else 0 for c in params.split(";")]
        i = 0
        while i < len(codes):
            if codes[i] in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    n = codes[i + 2]
                    cube = n - 16
                    grey = n >= 232 or n in (0, 7, 8, 15) or (
                        16 <= n <= 231 and cube // 36 == cube // 6 % 6 == cube % 6)
                    if not grey:
                        found.add(f"{codes[i]};5;{n}")
                    i += 3
                    continue
                if codes[i + 1] == 2 and i + 4 < len(codes):
                    r, g, b = codes[i + 2: i + 5]
                    if max(r, g, b) - min(r, g, b) > 2:
                        found.add(f"{codes[i]};2;{r};{g};{b}")
                    i += 5
                    continue
            elif 30 <= codes[i] <= 37 and codes[i] not in (30, 37) or (
                    90 <= codes[i] <= 97 and codes[i] not in (90, 97)):
                found.add(str(codes[i]))
            i += 1
    return found


def caption_lines(screen: str) -> dict[str, str]:
    """The bars' line of each caption on the screen."""
    out = {}
    for line in screen.splitlines():
        for caption in CAPTIONS:
            if f"▸{caption} " in line or f"■  {caption} " in line:
                out[caption] = line
    return out


def prompt_text(screen: str) -> str:
    """The prompt field's text: the line under the "Prompt" heading."""
    lines = [line.split("▕")[0].strip() for line in screen.splitlines()]  # the form's column
    for i, line in enumerate(lines[:-1]):
        if line == "Prompt":
            return lines[i + 1]
    raise AssertionError("no prompt field on screen:\n" + screen)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_a_run_shows_every_caption_with_its_percentage(tmp_path, size) -> None:
    with Tmux(f"{FAKE_APP} --delay 0.3 --steps 10", *size, env=env(tmp_path)) as term:
        term.wait_for("Run  ctrl+r", START)
        term.send("C-r")
        screen = term.wait_for("step 3/10", 60)
        lines = caption_lines(screen)
        assert set(lines) == set(CAPTIONS), screen
        assert all(line.rstrip().endswith("%") and line.count("%") == 2
                   for line in lines.values()), screen
        assert screen.count("▀") >= 32 * 16  # the selected sample, pixel-exact, and thumbnails
        assert "p(caption)" in screen  # the live trace
        term.wait_for("finished: 16 samples", 60)
        term.send("C-q")
        term.wait_for("not saved", 30)
        term.send("q")
        assert term.wait_exit(30) == 0


def recorded_run(tmp_path) -> Path:
    """A run folder of the fake pack with every issue-14 option the form has a field for."""
    from clipterm.api import make_config
    from clipterm.output import RunWriter
    from clipterm.packs import spec_from_json

    picture = tmp_path / "picture.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(picture)
    spec = spec_from_json(FAKE_PACK_JSON)
    cfg = make_config(spec, prompt="seven:1|one:-0.5", method="contrastive", n=16, steps=10,
                      guide_every=3, init_image=str(picture), strength=0.3,
                      image_prompt=str(picture), image_weight=0.5)
    result = FakeRunner()(None, cfg)
    writer = RunWriter.create(tmp_path / "runs", cfg, "fakepack", pack_source=str(FAKE_PACK_JSON))
    writer.add_batch(result.indices.tolist(), result.images, result.probs)
    return writer.finish(result)


def test_80x24_with_the_generation_options_shows_bars_step_and_run(tmp_path) -> None:
    """Settings with guide-every, init image, strength, image prompt and a weighted prompt
    loaded into the form (--from): at 80x24 a run still shows every caption with its
    percentage, the step counter and the way to run, without scrolling."""
    folder = recorded_run(tmp_path)
    with Tmux(f"{FAKE_APP} --delay 0.3 --from {folder}", 80, 24, env=env(tmp_path)) as term:
        term.wait_for("Run  ctrl+r", START)
        term.wait_for(lambda s: "seven:1|one:-0.5" in s and "^r Run" in s, 30)
        term.send("C-r")
        screen = term.wait_for("step 3/10", 60)
        lines = caption_lines(screen)
        assert set(lines) == set(CAPTIONS), screen
        assert all(line.rstrip().endswith("%") and line.count("%") == 2
                   for line in lines.values()), screen
        assert "contrastive · step 3/10" in screen and "^r Run" in screen
        term.wait_for("finished: 16 samples", 60)
        term.send("C-f")  # back to the form: the loaded fields, below the first screenful
        screen = term.wait_for("Run  ctrl+r", 30)
        assert "seven:1|one:-0.5" in screen
        term.send("C-q")
        term.wait_for("not saved", 30)
        term.send("q")
        assert term.wait_exit(30) == 0


def test_no_color_starts_runs_and_quits(tmp_path) -> None:
    with Tmux(f"{FAKE_APP} --delay 0.05", 80, 24, env=env(tmp_path, NO_COLOR="1")) as term:
        term.wait_for("Run  ctrl+r", START)
        term.send("C-r")
        screen = term.wait_for("finished: 16 samples", 60)
        assert len(caption_lines(screen)) == len(CAPTIONS) and "Traceback" not in screen
        assert not chromatic_colours(term.capture(ansi=True))  # only greys reach the screen
        term.send("C-q")
        term.wait_for("not saved", 30)
        term.send("q")
        assert term.wait_exit(30) == 0


@pytest.mark.parametrize("running", [False, True], ids=["idle", "during-a-run"])
def test_a_key_burst_ends_with_exactly_what_was_typed(tmp_path, running) -> None:
    size = (120, 40) if running else (80, 24)  # during a run the form is beside the results
    # one batch of 1000 steps at 0.05 s: the run outlasts the typing even on a loaded machine
    with Tmux(f"{FAKE_APP} --delay 0.05 --steps 1000", *size, env=env(tmp_path)) as term:
        term.wait_for("Run  ctrl+r", START)
        if running:
            term.send("C-r")
            term.wait_for("contrastive · step ", 60)
        for _ in range(4):
            term.send("C-a", "C-k")  # empty the prompt (the cursor is in it)
            term.wait_for(lambda s: prompt_text(s) in ("", "a caption, or weighted: a:1|b:-0.5"), 30)
            term.send(*BURST)
            screen = term.wait_for(lambda s: prompt_text(s).endswith("e")
                                   and len(prompt_text(s)) >= 5, 30)
            assert prompt_text(screen) == "three", screen
            if running:
                assert "contrastive · step" in screen  # still running while typing
        term.send("C-q")
        assert term.wait_exit(30) == 0


def test_f2_then_ctrl_c_returns_to_the_app_with_the_run(tmp_path) -> None:
    with Tmux(f"{FAKE_APP} --delay 0.01", 80, 24, env=env(tmp_path)) as term:
        term.wait_for("Run  ctrl+r", START)
        term.send("C-r")
        term.wait_for("finished: 16 samples", 60)
        term.send("F2")
        term.wait_for("any key returns to clipterm", 60)
        term.send("C-c")
        screen = term.wait_for("finished: 16 samples", 30)
        assert term.exit_code() is None and "▸seven" in screen  # still there, run and all
        term.send("F2")
        term.wait_for("any key returns to clipterm", 60)
        term.send("Escape")
        term.wait_for("finished: 16 samples", 30)
        term.send("C-q")
        term.wait_for("not saved", 30)  # the unsaved run was not lost on the way
        term.send("Escape")
        term.wait_for("finished: 16 samples", 30)
        term.send("C-q")
        term.wait_for("not saved", 30)
        term.send("q")
        assert term.wait_exit(30) == 0


def test_quitting_during_a_run_returns_to_the_shell(tmp_path) -> None:
    with Tmux(f"{FAKE_APP} --delay 0.5 --steps 1000", 80, 24, env=env(tmp_path)) as term:
        term.wait_for("Run  ctrl+r", START)
        term.send("C-r")
        term.wait_for("step 2/1000", 60)
        term.send("C-q")  # nothing finished: no question
        assert term.wait_exit(30) == 0


def test_clipterm_on_the_tiny_pack_runs_saves_and_quits(tmp_path, tiny_pack) -> None:
    command = (f"{sys.executable} -m clipterm --model {tiny_pack} --device cpu -n 4 --steps 6 "
               "--reset")
    with Tmux(command, 80, 24, env=env(tmp_path), cwd=tmp_path) as term:
        term.wait_for("Run  ctrl+r", START)
        term.send("C-r")
        screen = term.wait_for("finished: 4 samples", 300)
        assert "▸one" in screen and screen.count("%") >= 8
        term.send("C-q")
        term.wait_for("not saved", 30)
        term.send("s")  # save, then quit
        assert term.wait_exit(60) == 0
    (folder,) = (tmp_path / "out").iterdir()  # the form's "Save to", in the working folder
    assert len(list(folder.glob("sample-*.png"))) == 4 and (folder / "run.json").is_file()
