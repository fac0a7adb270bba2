"""Pilot tests of the app around the run: themes, help, command palette, sample selection."""

from __future__ import annotations

from clipterm.tui.help_screen import HelpScreen
from clipterm.tui.themes import repo_themes_dir

from .fakes import FakeRunner
from .helpers import Notes, run_to_end

SIZE = (120, 40)


async def test_theme_toggle_and_broken_theme_reported_once(make_app, tmp_path) -> None:
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "broken.toml").write_text("primary = [")
    app = make_app(theme_dirs=[repo_themes_dir(), themes])
    # Count every notification ever posted (shown ones expire after a few seconds, and a slow
    # machine can take longer than that to cycle the themes).
    posted: list[str] = []
    real_notify = app.notify

    def notify(message: str, **kw: object) -> None:
        posted.append(str(message))
        real_notify(message, **kw)

    app.notify = notify  # type: ignore[method-assign]
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        assert app.theme == "clipterm-night"
        assert len([m for m in posted if "broken.toml" in m]) == 1
        seen = [app.theme]
        for _ in range(len(app.theme_cycle())):
            await pilot.press("ctrl+t")
            seen.append(app.theme)
        assert seen[0] == seen[-1] and "clipterm-paper" in seen and "textual-light" in seen
        assert len([m for m in posted if "broken.toml" in m]) == 1
        await pilot.press("ctrl+t")
        theme = app.theme
        await pilot.press("ctrl+q")
    assert f'"theme": "{theme}"' in (tmp_path / "config" / "last.json").read_text()


async def test_help_screen_opens_and_closes(make_app) -> None:
    app = make_app(preload=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shot = app.export_screenshot()
        assert "contrastive" in shot and "ctrl+r" in shot and "Compare" in shot
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_lists_every_action(make_app) -> None:
    app = make_app(preload=False)
    async with app.run_test(size=SIZE):
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {
            "Run",
            "Cancel run",
            "Save run",
            "Compare methods",
            "Next sample",
            "Previous sample",
            "Next theme",
            "Help",
            "Distractors from pack",
        } <= titles


async def test_next_and_previous_sample_update_view_and_bars(make_app) -> None:
    app = make_app(runner=FakeRunner(), n=4)
    async with app.run_test(size=SIZE) as pilot:
        await run_to_end(pilot)
        assert app.sample_view.caption.startswith("#0 ")
        await pilot.press("ctrl+n", "ctrl+n")
        assert app.grid.selected == 2 and app.sample_view.caption.startswith("#2 ")
        assert app.bars.text_lines()[0].rstrip().endswith("#2")
        assert "▶#2" in "".join(app.grid.text_lines())
        await pilot.press("ctrl+b", "ctrl+b", "ctrl+b")  # wraps around
        assert app.grid.selected == 3


async def test_distractors_from_pack_command(make_app) -> None:
    app = make_app(preload=False, prompt="three", distractors=["one"])
    async with app.run_test(size=SIZE) as pilot:
        app.form.fill_distractors_from_pack()
        await pilot.pause()
        assert app.form.state.config.distractors == (
            "zero",
            "one",
            "two",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
        )


async def test_the_log_wraps_long_lines_instead_of_cutting_them(make_app) -> None:
    app = make_app(preload=False)
    async with app.run_test(size=(120, 40)) as pilot:  # the log is narrower than 78 columns
        await pilot.press("ctrl+l")
        long = "saved " + "/a-rather-long-folder" * 8 + "/END"
        app.log_panel.info(long)
        await pilot.pause()
        text = app.log_panel.query_one("#log-text")
        width = app.log_panel.content_size.width
        assert 0 < text.size.width <= width
        # every character is on some line: the lines wrap at the panel's width
        assert text.size.height >= 1 + -(-(len(long) + 9) // width)


async def test_download_is_offered_and_offline_says_why_not(make_app, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = make_app(preload=False, availability=lambda spec: "the weights are not here")
    async with app.run_test(size=(120, 40)):
        notes = Notes(app)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Download weights", "Open run folder", "Runs of this sitting"} <= titles
        app.action_download()
        assert "HF_HUB_OFFLINE is set" in notes
