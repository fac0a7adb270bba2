"""Pilot tests of the run form: typing, method-dependent fields, validation, remembered values."""

from __future__ import annotations

import json

from textual.widgets import Button, Input, Label, Select

from clipterm.tui.app import ClipTermApp
from clipterm.tui.distractors import DistractorList

from .helpers import until

SIZE = (120, 40)


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
        await pilot.pause()
        state = app.form.state
        assert state.valid, state.error
        assert state.config.prompt == "three"
        assert state.config.distractors == ("one", "two")
        assert state.config.method == "contrastive"
        assert state.config.scale == 2.0  # the fake pack's contrastive default
        assert not app.query_one("#run", Button).disabled


async def test_distractors_reorder_with_alt_arrows(make_app) -> None:
    app = make_app(distractors=["one", "two", "three"])
    async with app.run_test(size=SIZE) as pilot:
        area = app.query_one("#distractors", DistractorList)
        area.focus()
        area.cursor_location = (0, 1)
        await pilot.press("alt+down")
        await pilot.pause()
        assert area.distractors == ("two", "one", "three")
        assert area.cursor_location[0] == 1
        await pilot.press("alt+up", "alt+up")  # the second press is at the top: no-op
        await pilot.pause()
        assert area.distractors == ("one", "two", "three")
        assert app.form.state.config.distractors == ("one", "two", "three")


async def test_switching_method_shows_the_right_fields(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:

        def shown(name: str) -> bool:
            return bool(app.query_one(f"#row-{name}").display)

        assert shown("scale") and shown("clip_input") and shown("guide_from")
        assert not shown("opt_iters") and not shown("lr") and not shown("init_image")
        app.query_one("#method", Select).value = "optimize"
        await pilot.pause()
        assert shown("opt_iters") and shown("lr") and shown("init_image")
        assert not shown("scale") and not shown("sampler") and not shown("guide_from")
        assert app.form.state.config.method == "optimize"
        assert app.form.state.config.opt_iters == 3
        app.query_one("#method", Select).value = "uncond"
        await pilot.pause()
        assert shown("sampler") and not shown("scale") and not shown("opt_iters")
        # distractors only score the samples for uncond: still valid
        assert app.form.state.valid
        assert app.form.state.config.method == "uncond"


async def test_invalid_input_disables_run_with_a_message(make_app) -> None:
    runner_app: ClipTermApp = make_app()
    app = runner_app
    async with app.run_test(size=SIZE) as pilot:
        steps = app.query_one("#steps", Input)
        steps.focus()
        await pilot.press(*"abc")
        await pilot.pause()
        assert app.query_one("#run", Button).disabled
        assert steps.has_class("-invalid")
        error = str(app.query_one("#form-error", Label).render())
        assert "Steps" in error and "'abc' is not a whole number" in error
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not app.running and app._runner.configs == []  # type: ignore[attr-defined]
        # a core ConfigError is flagged at its field: more steps than the model was trained for
        steps.value = "5000"
        await pilot.pause()
        assert steps.has_class("-invalid")
        assert "at most the model's 1000" in str(app.query_one("#form-error", Label).render())
        # a distractor equal to the prompt flags the distractor list
        steps.value = ""
        app.query_one("#distractors", DistractorList).load_text("seven\none")
        await pilot.pause()
        assert app.form.state.error_field == "distractors"
        assert app.query_one("#distractors").has_class("-invalid")
        assert not steps.has_class("-invalid")
        assert app.query_one("#run", Button).disabled
        # fixing it enables Run again
        app.query_one("#distractors", DistractorList).load_text("one")
        await pilot.pause()
        assert not app.query_one("#run", Button).disabled
        assert str(app.query_one("#form-error", Label).render()) == ""


async def test_empty_prompt_and_unknown_model_are_flagged(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#prompt", Input).value = "  "
        await pilot.pause()
        assert app.form.state.error_field == "prompt"
        assert app.query_one("#prompt").has_class("-invalid")
        app.query_one("#prompt", Input).value = "seven"
        app.query_one("#model", Input).value = "no-such-pack"
        await pilot.pause()
        assert app.form.state.error_field == "model"
        assert "unknown model 'no-such-pack'" in app.form.state.error
        assert app.query_one("#run", Button).disabled


async def test_command_line_options_prefill_the_form(make_app) -> None:
    app = make_app(prompt="three", method="spherical", steps=7, scale=1.5, n=4, seed=9)
    async with app.run_test(size=SIZE):
        cfg = app.form.state.config
        assert (cfg.prompt, cfg.method, cfg.steps, cfg.scale, cfg.n, cfg.seed) == (
            "three",
            "spherical",
            7,
            1.5,
            4,
            9,
        )
        # the pack's other captions become the distractors; the prompt is not among them
        assert "three" not in cfg.distractors and "seven" in cfg.distractors


async def test_form_values_are_remembered_and_reset_forgets(make_app, tmp_path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#prompt", Input).value = "four"
        app.query_one("#seed", Input).value = "42"
        await pilot.pause()
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
