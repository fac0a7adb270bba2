"""The generation options of issue 14 in the app: guide every k steps, an init image with its
strength (or start timestep), an image prompt with its weight, weighted prompts, the denoising
animation (f4) and settings loaded from a run folder or a sample PNG (f5, ``clipterm --from``).

The form's checks are the core's: a value reaches the RunConfig, a wrong one is shown at its
field with the message the CLI prints (placed by ``ConfigError.field``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipterm.cli import main
from clipterm.rerun import read_recorded
from clipterm.tui.app import default_saver
from clipterm.tui.form_model import FormModel, initial_values, pack_distractors
from clipterm.tui.open_screen import OpenRunScreen

from .fakes import FAKE_PACK_JSON, FakeRunner
from .helpers import Notes, run_to_end, until

SIZE = (120, 40)


@pytest.fixture
def model() -> FormModel:
    return FormModel(availability=lambda spec: None)


@pytest.fixture
def values(tmp_path: Path) -> dict[str, str]:
    v = initial_values({"model": str(FAKE_PACK_JSON)}, {})
    v["out_dir"] = str(tmp_path / "out")
    return v


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(path)
    return path


def cli_error(args: list[str], capsys) -> str:
    """The one line `clipterm generate` prints for these options (it fails before loading)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--model", str(FAKE_PACK_JSON), *args])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line.removeprefix("clipterm: error: ")


# ----------------------------------------------------------------------------- the form model
def test_weighted_prompts_reach_the_config(model, values) -> None:
    state = model.read({**values, "prompt": "seven:1|one:-0.5"})
    assert state.errors == {"distractors": "the distractor 'one' is the same as the prompt"}
    spec = state.spec
    distractors = "\n".join(pack_distractors(spec, "seven:1|one:-0.5"))  # the palette's fill
    state = model.read({**values, "prompt": "seven:1|one:-0.5", "distractors": distractors})
    assert state.valid, state.errors
    cfg = state.config
    assert cfg.targets == ("seven", "one") and cfg.weights == (1.0, -0.5)
    assert len(cfg.distractors) == 8 and not {"one", "seven"} & set(cfg.distractors)


@pytest.mark.parametrize("prompt", ["seven:1x|one:1", "seven:0|one:0", "seven|seven:2",
                                    "seven:inf|one:1", "seven:1||one:1", "seven:1|two:1"],
                         ids=["not-a-number", "all-zero", "twice", "infinite", "empty",
                              "a-distractor"])
def test_a_bad_weighted_prompt_reads_as_the_cli_says_it(model, values, prompt, capsys) -> None:
    state = model.read({**values, "prompt": prompt, "distractors": "two\nthree"})
    assert not state.valid and len(state.errors) == 1
    field = "distractors" if "two" in prompt else "prompt"
    assert state.errors[field] == cli_error(["--prompt", prompt, "-d", "two", "-d", "three"],
                                            capsys)


def test_guide_every_reaches_the_config_and_is_checked(model, values, capsys) -> None:
    assert model.read({**values, "guide_every": "3"}).config.guide_every == 3
    assert model.read(values).config.guide_every == 1
    state = model.read({**values, "guide_every": "0"})
    assert state.error_field == "guide_every"
    assert state.describe_errors() == ["Guide every: " + cli_error(["--guide-every", "0"],
                                                                   capsys)]
    assert model.read({**values, "guide_every": "x"}).error_field == "guide_every"
    # a method that does not guide does not read it
    assert model.read({**values, "guide_every": "0", "method": "uncond"}).valid


def test_init_image_and_strength_reach_the_config(model, values, picture, capsys) -> None:
    cfg = model.read({**values, "init_image": str(picture), "strength": "0.3"}).config
    assert (cfg.init_image, cfg.strength) == (str(picture), 0.3)
    cfg = model.read({**values, "init_image": str(picture)}).config
    assert cfg.strength == 0.6  # the core's default
    cfg = model.read({**values, "init_image": str(picture), "strength": "t=250"}).config
    assert cfg.strength == 0.25  # --start-at 250 of the pack's 1000 training steps
    cfg = model.read({**values, "method": "uncond", "init_image": str(picture)}).config
    assert cfg.init_image == str(picture) and cfg.strength == 0.6
    cfg = model.read({**values, "method": "optimize", "init_image": str(picture),
                      "strength": "0.3"}).config
    assert cfg.init_image == str(picture) and cfg.strength is None  # DDIM-inverted instead
    for strength, flag in (("1.5", ["--strength", "1.5"]), ("t=2000", ["--start-at", "2000"])):
        state = model.read({**values, "init_image": str(picture), "strength": strength})
        assert state.error_field == "strength"
        expected = cli_error(["--init-image", str(picture), *flag], capsys)
        assert state.errors["strength"] == expected.replace("--start-at", "Strength")
    state = model.read({**values, "strength": "0.3"})
    assert state.valid and state.warnings == ("Strength needs an Init image: ignored (not "
                                              "recorded)",)


def test_image_prompt_and_weight_reach_the_config(model, values, picture, tmp_path) -> None:
    cfg = model.read({**values, "image_prompt": str(picture), "image_weight": "0.5"}).config
    assert (cfg.image_prompt, cfg.image_weight) == (str(picture), 0.5)
    assert model.read({**values, "image_prompt": str(picture)}).config.image_weight == 1.0
    state = model.read({**values, "image_prompt": str(picture), "image_weight": "abc"})
    assert state.error_field == "image_weight"
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    for path, needle in ((not_an_image, "is not an image"), (tmp_path / "gone.png", "not found")):
        state = model.read({**values, "image_prompt": str(path)})
        assert state.error_field == "image_prompt" and needle in state.errors["image_prompt"]
        state = model.read({**values, "init_image": str(path)})
        assert state.error_field == "init_image" and needle in state.errors["init_image"]


# ----------------------------------------------------------------------------- the app
async def test_the_new_fields_reach_the_run(make_app, picture) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner, n=2)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one("#prompt")
        prompt.value = ""
        prompt.focus()
        await pilot.press(*"seven:1|one:-0.5")
        app.form.fill_distractors_from_pack()  # the palette's "Distractors from pack"
        for name, value in (("guide_every", "2"), ("init_image", str(picture)),
                            ("strength", "t=400"), ("image_prompt", str(picture)),
                            ("image_weight", "-1")):
            app.form.set_value(name, value)
        await run_to_end(pilot)
        (cfg,) = runner.configs
        assert cfg.targets == ("seven", "one") and cfg.weights == (1.0, -0.5)
        assert (cfg.guide_every, cfg.init_image, cfg.strength) == (2, str(picture), 0.4)
        assert (cfg.image_prompt, cfg.image_weight) == (str(picture), -1.0)


async def test_a_refusal_is_shown_at_its_field(make_app) -> None:
    app = make_app(runner=FakeRunner())
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        notes = Notes(app)
        widget = app.query_one("#guide_every")
        widget.focus()
        await pilot.press("0")
        await until(pilot, lambda: widget.has_class("-field-error"))
        assert widget.tooltip == "guide-every must be >= 1 (got 0)"
        assert app.query_one("#run").disabled
        app.form.set_value("guide_every", "")
        app.form.set_value("prompt", "seven:1|seven:2")
        assert app.query_one("#prompt").has_class("-field-error")
        await pilot.press("ctrl+r")
        assert "cannot run: Prompt: the prompt 'seven' is given twice" in notes
        assert app.focused is app.query_one("#prompt")


async def test_f4_writes_the_animation_into_the_saved_folder(make_app) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner, n=3, steps=10, saver=default_saver)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        notes = Notes(app)
        await pilot.press("f4")
        assert "nothing to animate yet" in notes
        await run_to_end(pilot)
        await pilot.press("f4")  # not saved yet: saved first, with its animation
        await until(pilot, lambda: bool(app.shown.animations))
        (folder,) = app.saved_paths
        (gif,) = app.shown.animations
        assert gif == folder / "animation.gif"
        with Image.open(gif) as im:
            assert im.n_frames == 10  # one frame per step of the 10-step chain
            im.seek(im.n_frames - 1)
            last = np.asarray(im.convert("RGB"))
        with Image.open(folder / "grid.png") as grid:
            assert last.shape == np.asarray(grid).shape[:2] + (3,)
        assert json.loads((folder / "run.json").read_text())["animations"] == ["animation.gif"]
        assert len(list(folder.parent.iterdir())) == 1  # one folder, saved once
        await pilot.press("f4")
        assert "already written" in notes
        app.form.set_value("animate", "apng")
        await run_to_end(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        (second,) = app.saved_paths
        await pilot.press("f4")  # saved already: the animation joins the folder
        await until(pilot, lambda: bool(app.shown.animations))
        assert app.shown.animations == [second / "animation.png"]
        with Image.open(second / "animation.png") as im:
            assert im.format == "PNG" and im.n_frames == 10
        record = json.loads((second / "run.json").read_text())
        assert record["animations"] == ["animation.png"] and len(record["samples"]) == 3


async def test_f4_refuses_runs_it_cannot_animate(make_app, tmp_path) -> None:
    runner = FakeRunner(pause_at=3)
    app = make_app(runner=runner, n=2, saver=default_saver)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        notes = Notes(app)
        await pilot.press("ctrl+r")
        await until(pilot, runner.paused.is_set)
        await pilot.press("f4")
        assert "a run is going" in notes and "f4 writes its animation" in notes
        await pilot.press("escape")
        runner.release.set()
        await until(pilot, lambda: not app.running)
        await pilot.press("f4")
        assert "nothing to animate: no sample of this run finished" in notes
        assert not (tmp_path / "out").exists()


async def test_f5_loads_a_run_folders_and_a_samples_settings(make_app, picture) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner, n=3, steps=10, seed=5, saver=default_saver)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        notes = Notes(app)
        for name, value in (("prompt", "seven:1|one:-0.5"), ("guide_every", "2"),
                            ("init_image", str(picture)), ("strength", "0.3"),
                            ("method", "spherical")):
            app.form.set_value(name, value)
        app.form.fill_distractors_from_pack()
        await run_to_end(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        (folder,) = app.saved_paths
        recorded = runner.configs[0]
        for source in (folder, folder / "sample-00002.png"):
            for name, value in (("prompt", "three"), ("seed", "9"), ("guide_every", ""),
                                ("init_image", ""), ("strength", ""), ("method", "uncond")):
                app.form.set_value(name, value)
            await pilot.press("f5")
            await until(pilot, lambda: isinstance(app.screen, OpenRunScreen)
                        and bool(app.screen.query("#open-path")))
            app.screen.query_one("#open-path").value = str(source)
            await pilot.press("enter")
            await until(pilot, lambda: app.form.state.values["seed"] == "5")
            assert app.form.state.config == recorded
            assert "loaded" in notes
        assert "settings of sample #2 of" in notes
        before = app.form.values()
        for path, needle in ((folder / "nope", "no such run folder or sample PNG"),
                             (folder / "run.json", "is not an image"),
                             (picture, "holds no clipterm settings"),
                             (folder.parent, "is not a clipterm run folder (no run.json)")):
            assert not app.load_settings(path)
            assert app.form.values() == before
            assert notes.messages[-1].startswith("cannot load settings: ")
            assert needle in notes.messages[-1] and "\n" not in notes.messages[-1]


def test_settings_without_a_field_are_named(tmp_path) -> None:
    from clipterm.api import make_config
    from clipterm.packs import spec_from_json
    from clipterm.rerun import Recorded
    from clipterm.tui.form_model import values_from_recorded

    spec = spec_from_json(FAKE_PACK_JSON)
    plain = make_config(spec, prompt="seven", method="contrastive", n=2)
    values, notes = values_from_recorded(Recorded(str(FAKE_PACK_JSON), plain))
    assert notes == [] and values["prompt"] == "seven" and values["guide_every"] == ""
    odd = make_config(spec, prompt="seven", method="contrastive", n=2, cutouts=8,
                      grad_norm="none", sampler="ddim", eta=0.5)
    values, (note,) = values_from_recorded(Recorded(str(FAKE_PACK_JSON), odd))
    assert note.startswith("the form has no field for eta 0.5, grad norm none, cutouts 8:")
    assert values["sampler"] == "ddim"


async def test_clipterm_from_prefills_the_form(make_app, tmp_path) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner, n=2, seed=4, steps=10, saver=default_saver)
    async with app.run_test(size=SIZE) as pilot:
        app.form.set_value("prompt", "two:2|five:1")
        app.form.fill_distractors_from_pack()
        await run_to_end(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        (folder,) = app.saved_paths
    recorded = read_recorded(folder)
    again = make_app(runner=FakeRunner(), settings=recorded, seed=8, model=None,
                     config_dir=tmp_path / "other-config")
    async with again.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: again.form.state.config is not None)
        cfg = again.form.state.config
        assert cfg.targets == ("two", "five") and cfg.weights == (2.0, 1.0)
        assert cfg.seed == 8  # an option given beside --from overrides the recorded one
        assert (cfg.n, cfg.steps) == (2, 10)
