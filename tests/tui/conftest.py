"""Fixtures for the TUI tests: an app wired to fakes, in a temporary config dir."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clipterm.tui.app import ClipTermApp
from clipterm.tui.themes import repo_themes_dir

from .fakes import FAKE_PACK_JSON, FakeLoader, FakeRunner

REPO = Path(__file__).resolve().parents[2]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop (no async plugin needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**args))
    return True


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ClipTermApp]:
    """Build a ClipTermApp on the fake pack; keyword arguments override the defaults."""
    monkeypatch.chdir(REPO)  # the fake pack is named by a relative path: stable snapshots

    def build(**kwargs: Any) -> ClipTermApp:
        options: dict[str, Any] = {
            "model": str(FAKE_PACK_JSON.relative_to(REPO)),
            "loader": FakeLoader(),
            "runner": FakeRunner(),
            "config_dir": tmp_path / "config",
            "theme_dirs": [repo_themes_dir()],
            "out_dir": str(tmp_path / "out"),
            "availability": lambda spec: None,  # the fake pack's weights "are here"
        }
        options.update(kwargs)
        return ClipTermApp(**options)

    return build
