"""The package as installed from a wheel: the built-in themes are inside, and the app loads
them from the installed package (not from a source checkout). Slow: builds the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("clipterm-*.whl")
    return whl


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_theme(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    themes = sorted(p.name for p in (REPO / "themes").glob("*.toml"))
    assert themes and all(f"clipterm/themes/{t}" in names for t in themes)
    modules = {str(p.relative_to(REPO)) for p in (REPO / "clipterm").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert "clipterm/tui/app.tcss" in names


@pytest.mark.slow
def test_the_installed_app_loads_its_themes_from_the_package(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "-q", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code = (
        "import clipterm, pathlib\n"
        "from clipterm.tui.themes import builtin_themes_dir, load_themes\n"
        "from clipterm.tui.app import ClipTermApp\n"
        f"assert pathlib.Path(clipterm.__file__).is_relative_to({str(target)!r}), clipterm.__file__\n"
        "folder = builtin_themes_dir()\n"
        "print(folder)\n"
        "app = ClipTermApp(config_dir=pathlib.Path('cfg'), preload=False)\n"
        "print(app.theme, ' '.join(sorted(app.custom_theme_names)))\n"
    )
    # the installed copy first on the path, this checkout nowhere (run from tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={"PYTHONPATH": str(target),
                                                          "PATH": "/usr/bin:/bin",
                                                          "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder, loaded = proc.stdout.strip().splitlines()
    assert Path(folder) == target / "clipterm" / "themes"
    assert loaded.split()[0] == "clipterm-night"
    assert {"clipterm-night", "clipterm-paper", "clipterm-phosphor"} <= set(loaded.split()[1:])
