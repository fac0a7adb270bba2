"""Pilot tests of the run form: typing (bursts too), method-dependent fields, validation,
switching packs, remembered values."""

from __future__ import annotations

import json

from textual.widgets import Button, Input, Label, Select

from clipterm.tui.distractors import DistractorList

from .fakes import FakeRunner
from .helpers import burst, until

SIZE = (120, 40)
BURST = [*"seven", *["backspace"] * 6, *"three"]


async def settled(pilot, value, expected: str, timeout: float = 20.0) -> None:
    """Wait until ``value()`` is ``expected`` and stays so; fail with what it was instead."""
    try:
        await until(pilot, lambda: value() == expected, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"typed {expected!r}, got {value()!r}") from None
    await pilot.pause(0.2)
    assert value() == expected


async def test_typing_prompt_and_distractors_builds_the_config(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one("#prompt", Input)
        prompt.value = ""
        prompt.focus()
        await pilot.press(*"three")
        distractors = app.query_one("#distractors", DistractorList)
        distractors.load_text("")
        distractors.focus()
        await pilot.press(*"one", "enter", *"two", "enter", "enter")  # a blank line is ignored
        state = app.form.read_now()
        assert state.valid, state.errors
        assert state.config.prompt == "three"
        assert state.config.distractors == ("one", "two")
        assert state.config.method == "contrastive"
        assert state.config.scale == 2.0  # the fake pack's contrastive default
        assert not app.query_one("#run", Button).disabled


async def test_a_key_burst_keeps_every_key_in_order(make_app) -> None:
    """seven, six backspaces, three, all at once (as a fast typist or a paste delivers them):
    the prompt ends as exactly "three", every time."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one("#prompt", Input)
        for _ in range(5):
            prompt.value = "x"
            prompt.cursor_position = 1
            prompt.focus()
            await pilot.pause()
            burst(app, *BURST)
            await settled(pilot, lambda: prompt.value, "three")
        await until(pilot, lambda: app.form.state.values["prompt"] == "three")


async def test_a_key_burst_during_a_run_keeps_every_key(make_app) -> None:
    runner = FakeRunner(delay=0.01)
    app = make_app(runner=runner, steps=1000, n=16)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.grid.count > 0)  # previews are being drawn
        prompt = app.query_one("#prompt", Input)
        for _ in range(3):
            prompt.value = ""
            prompt.focus()
            await pilot.pause()
            burst(app, *BURST)
            await settled(pilot, lambda: prompt.value, "three")
        assert app.running
        await pilot.press("escape")
        await until(pilot, lambda: not app.running)


async def test_a_burst_in_the_distractor_list_keeps_every_key(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        area = app.query_one("#distractors", DistractorList)
        area.load_text("")
        area.focus()
        await pilot.pause()
        burst(app, *"one", "enter", *"tow", "backspace", "backspace", *"wo")
        await settled(pilot, lambda: area.text, "one\ntwo")


async def test_distractors_reorder_with_alt_arrows(make_app) -> None:
    app = make_app(distractors=["one", "two", "three"])
    async with app.run_test(size=SIZE) as pilot:
        area = app.query_one("#distractors", DistractorList)
        area.focus()
        area.cursor_location = (0, 1)
        await pilot.press("alt+down")
        assert area.distractors == ("two", "one", "three")
        assert area.cursor_location[0] == 1
        await pilot.press("alt+up", "alt+up")  # the second press is at the top: no-op
        assert area.distractors == ("one", "two", "three")
        assert app.form.read_now().config.distractors == ("one", "two", "three")


async def test_switching_method_shows_the_right_fields(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:

        def shown(name: str) -> bool:
            return bool(app.query_one(f"#row-{name}").display)

        guided = ("scale", "clip_input", "guide_from", "guide_every", "image_prompt",
                  "image_weight")
        assert all(shown(f) for f in (*guided, "init_image", "strength", "animate"))
        assert not shown("opt_iters") and not shown("lr")
        app.query_one("#method", Select).value = "optimize"
        await until(pilot, lambda: shown("opt_iters"))
        assert shown("lr") and shown("init_image")  # optimize DDIM-inverts its init image
        assert not any(shown(f) for f in (*guided, "sampler", "strength"))
        assert app.form.state.config.method == "optimize"
        assert app.form.state.config.opt_iters == 3
        app.query_one("#method", Select).value = "uncond"
        await until(pilot, lambda: shown("sampler") and not shown("opt_iters"))
        assert not any(shown(f) for f in guided)
        assert shown("init_image") and shown("strength")
        # distractors only score the samples for uncond: still valid
        assert app.form.state.valid
        assert app.form.state.config.method == "uncond"


async def test_invalid_input_disables_run_with_a_message(make_app) -> None:
    runner = FakeRunner()
    app = make_app(runner=runner)
    async with app.run_test(size=SIZE) as pilot:
        steps = app.query_one("#steps", Input)
        steps.focus()
        await pilot.press(*"abc")
        await until(pilot, lambda: app.form.state.values["steps"] == "abc")
        assert app.query_one("#run", Button).disabled
        assert steps.has_class("-field-error")
        error = str(app.query_one("#form-error", Label).render())
        assert error == "✗ Steps: 'abc' is not a whole number"  # the label once
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not app.running and runner.configs == []
        # a core ConfigError is flagged at its field: more steps than the model was trained for
        app.form.set_value("steps", "5000")
        assert steps.has_class("-field-error")
        assert "at most the model's 1000" in str(app.query_one("#form-error", Label).render())
        # a distractor equal to the prompt flags the distractor list
        app.form.set_value("steps", "")
        app.form.set_value("distractors", "seven\none")
        assert app.form.state.error_field == "distractors"
        assert app.query_one("#distractors").has_class("-field-error")
        assert not steps.has_class("-field-error")
        assert app.query_one("#run", Button).disabled
        # fixing it enables Run again
        app.form.set_value("distractors", "one")
        await pilot.pause()
        assert not app.query_one("#run", Button).disabled
        assert str(app.query_one("#form-error", Label).render()) == ""


async def test_messages_name_the_field_once_in_words(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE):
        app.form.set_value("scale", "abc")
        assert app.form.state.describe_errors() == ["Scale: 'abc' is not a number"]
        app.form.set_value("scale", "")
        app.form.set_value("n", "0")
        (line,) = app.form.state.describe_errors()
        assert line.startswith("Samples: ") and "number of samples" in line
        app.form.set_value("n", "4")
        app.form.set_value("prompt", "   ")
        (line,) = app.form.state.describe_errors()
        assert line.startswith("Prompt: ") and "--" not in line


async def test_empty_prompt_and_unknown_model_are_flagged(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE):
        app.form.set_value("prompt", "  ")
        assert app.form.state.error_field == "prompt"
        assert app.query_one("#prompt").has_class("-field-error")
        app.form.set_value("prompt", "seven")
        app.form.set_value("model", "no-such-pack")
        assert app.form.state.error_field == "model"
        assert "unknown model 'no-such-pack'" in app.form.state.error
        assert app.query_one("#run", Button).disabled


async def test_switching_packs_offers_the_new_packs_captions(make_app) -> None:
    app = make_app(model="cifar10")
    async with app.run_test(size=SIZE) as pilot:
        assert app.form.values()["prompt"] == "airplane"
        app.form.set_value("model", "digits")
        await until(pilot, lambda: app.form.values()["prompt"] == "seven")
        state = app.form.read_now()
        assert state.valid and "airplane" not in state.config.distractors
        assert state.config.distractors == ("zero", "one", "two", "three", "four", "five",
                                            "six", "eight", "nine")
        # captions the user wrote are kept
        app.form.set_value("prompt", "a red bird")
        app.form.set_value("distractors", "a cat")
        app.form.set_value("model", "cifar10")
        await pilot.pause()
        assert app.form.values()["prompt"] == "a red bird"


async def test_command_line_options_prefill_the_form(make_app) -> None:
    app = make_app(prompt="three", method="spherical", steps=7, scale=1.5, n=4, seed=9)
    async with app.run_test(size=SIZE):
        cfg = app.form.state.config
        assert (cfg.prompt, cfg.method, cfg.steps, cfg.scale, cfg.n, cfg.seed) == (
            "three", "spherical", 7, 1.5, 4, 9)
        # the pack's other captions become the distractors; the prompt is not among them
        assert "three" not in cfg.distractors and "seven" in cfg.distractors


async def test_form_values_are_remembered_and_reset_forgets(make_app, tmp_path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.form.set_value("prompt", "four")
        app.form.set_value("seed", "42")
        await pilot.press("ctrl+q")
    saved = json.loads((tmp_path / "config" / "last.json").read_text())
    assert saved["prompt"] == "four" and saved["seed"] == "42"

    again = make_app()
    async with again.run_test(size=SIZE):
        assert again.query_one("#prompt", Input).value == "four"
        assert again.query_one("#seed", Input).value == "42"
        assert "four" not in again.form.state.config.distractors

    fresh = make_app(reset=True)
    async with fresh.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: fresh.form.state.values["prompt"] == "seven")
        assert fresh.query_one("#seed", Input).value == "0"
    assert not (tmp_path / "config" / "last.json").exists()
