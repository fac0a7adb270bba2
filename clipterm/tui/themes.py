"""Themes from TOML files: Textual theme colours plus the app's own variables.

A theme file looks like::

    name = "clipterm-night"
    dark = true
    primary = "#7aa2f7"
    secondary = "#bb9af7"
    accent = "#ff9e64"
    background = "#1a1b26"
    # surface, panel, foreground, success, warning, error, boost are optional

    [variables]
    target-bar = "#9ece6a"    # the target caption's probability bar
    other-bar = "#565f89"     # the distractors' bars

The built-in themes are the repository's top-level ``themes/`` folder, shipped in the wheel as
the package ``clipterm.themes`` (``[tool.setuptools.package-dir]``); the user's own are read
from ``<user config dir>/themes``. A file that does not parse or names an unknown key or a bad
colour is skipped and reported once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[import-not-found,no-redef]
    except ImportError:
        tomllib = None  # type: ignore[assignment]

COLOUR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "background",
    "surface",
    "panel",
    "foreground",
    "success",
    "warning",
    "error",
    "boost",
)
OTHER_KEYS = ("name", "dark", "variables", "luminosity_spread", "text_alpha")
APP_VARIABLES = ("target-bar", "other-bar", "selected-sample")


@dataclass
class ThemeLoadReport:
    themes: list[Theme] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line per skipped file


def _check_colour(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f'{key} must be a colour string like "#1a1b26"')
    try:
        Color.parse(value)
    except ColorParseError:
        raise ValueError(f"{key} = {value!r} is not a colour") from None
    return value


def theme_from_dict(data: dict[str, Any], path: Path) -> Theme:
    unknown = sorted(set(data) - set(COLOUR_KEYS) - set(OTHER_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError('needs a name = "..."')
    if not name.isprintable() or len(name) > 64:
        raise ValueError("the name must be printable text of at most 64 characters")
    if "primary" not in data:
        raise ValueError("needs a primary colour")
    colours = {k: _check_colour(path, k, data[k]) for k in COLOUR_KEYS if k in data}
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ValueError("dark must be true or false")
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ValueError("[variables] must be a table")
    for key in APP_VARIABLES:
        if key in variables:
            _check_colour(path, f"variables.{key}", variables[key])
    extra: dict[str, Any] = {}
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            if not isinstance(data[key], (int, float)):
                raise ValueError(f"{key} must be a number")
            extra[key] = float(data[key])
    return Theme(
        name=name.strip(),
        dark=dark,
        variables={str(k): str(v) for k, v in variables.items()},
        **colours,
        **extra,
    )


def load_theme_file(path: Path) -> Theme:
    """Parse one theme file; raise ValueError with a one-line reason."""
    if tomllib is None:  # pragma: no cover
        raise ValueError("reading TOML themes needs Python 3.11+ or the tomli package")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it ({exc})") from None
    return theme_from_dict(data, path)


def load_themes(dirs: Iterable[Path]) -> ThemeLoadReport:
    """Load every ``*.toml`` in ``dirs`` (missing folders are fine); later files win by name."""
    report = ThemeLoadReport()
    by_name: dict[str, Theme] = {}
    for folder in dirs:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ValueError as exc:
                report.errors.append(f"theme {path.name} skipped: {exc}")
                continue
            by_name[theme.name] = theme
    report.themes = list(by_name.values())
    return report


def builtin_themes_dir() -> Path:
    """The built-in themes: the installed package ``clipterm.themes`` (the repository's
    ``themes/`` folder, mapped into the wheel), else the folder of a source checkout."""
    from importlib.util import find_spec

    try:
        spec = find_spec("clipterm.themes")  # a namespace package: a folder of TOML files
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location)
        if folder.is_dir() and any(folder.glob("*.toml")):
            return folder
    return repo_themes_dir()  # not installed as a package: a bare source checkout


def repo_themes_dir() -> Path:
    """``themes/`` at the root of a source checkout."""
    return Path(__file__).resolve().parents[2] / "themes"
