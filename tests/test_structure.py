"""The package's shape: no module reaches into another's private names; the import contracts
(layers, UI frameworks only in the front ends, no cycles) hold; the core imports without them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "clipterm"


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: dict[str, str] = {}  # local name -> clipterm module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clipterm"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("clipterm"):
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_a_private_name_of_another():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) for use in _private_uses(path)]
    assert found == []


def test_the_private_name_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from clipterm.output import _json_default\nimport clipterm.sampling as s\n"
                   "s._hidden()\n")
    assert len(_private_uses(bad)) == 2


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PACKAGE.parent,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "4 kept, 0 broken" in proc.stdout


def test_the_core_imports_without_the_front_ends():
    """Import every core module with textual and typer made unimportable."""
    core = sorted(p.stem for p in PACKAGE.glob("*.py")
                  if p.stem not in ("cli", "__main__", "__init__"))
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('textual', 'typer'):\n"
            "            raise ImportError('front end imported by the core: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            f"for m in {core!r}:\n"
            "    __import__('clipterm.' + m)\n"
            "import clipterm.packs\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- scripts, examples
FRONT_ENDS = ("clipterm.commands", "clipterm.cli", "clipterm.tui", "clipterm.__main__")
FRONT_END_RE = r"\bclipterm\.(commands|cli|tui|__main__)\b"


def _front_end_imports(path: Path) -> list[str]:
    """Imports of a front-end module (the Typer commands, the CLI, the app) in a script.

    Python files are parsed (``import clipterm.cli``, ``from clipterm.commands import x``,
    ``from clipterm import tui``); shell scripts are searched for the module names (``python -m
    clipterm.cli``, ``-c "import clipterm.tui"``). Driving the app as a user does, ``python -m
    clipterm`` in a subprocess (tui_bench.py, tui_screenshots.py, tui_tmux_check.sh), is not an
    import of it and is allowed.
    """
    import re

    text = path.read_text()
    if path.suffix != ".py":
        return [f"{path.name}: {m.group(0)}" for m in re.finditer(FRONT_END_RE, text)]
    found = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        hits = [n for n in names if any(n == f or n.startswith(f + ".") for f in FRONT_ENDS)]
        if hits:
            found.append(f"{path.name}:{node.lineno} imports {hits[0]}")
    return found


def test_scripts_and_examples_use_only_the_core():
    """scripts/ and examples/ build on the core (the API, clipterm.sweep, ...), never on the
    Typer commands or the app: a command is a thin front end that may change its shape."""
    root = PACKAGE.parent
    files = [p for folder in ("scripts", "examples") for p in sorted((root / folder).rglob("*"))
             if p.suffix in (".py", ".sh")]
    assert len(files) >= 5  # the folders are where this test looks
    found = [use for path in files for use in _front_end_imports(path)]
    assert found == []


def test_the_script_import_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import clipterm.cli\nfrom clipterm.commands import sweep\n"
                   "from clipterm import tui\nfrom clipterm import sweep, api\n"
                   "import clipterm\n")
    assert len(_front_end_imports(bad)) == 3
    shell = tmp_path / "bad.sh"
    shell.write_text('python -m clipterm --reset\npython -c "import clipterm.commands.bench"\n')
    assert len(_front_end_imports(shell)) == 1
