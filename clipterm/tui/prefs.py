"""Remembered form values: ``<user config dir>/last.json`` (platformdirs).

Stored as the raw strings the user typed, so what comes back is exactly what was left.
"""

from __future__ import annotations

import json
from pathlib import Path

import platformdirs


def default_config_dir() -> Path:
    return Path(platformdirs.user_config_dir("clipterm"))


def last_values_path(config_dir: Path) -> Path:
    return Path(config_dir) / "last.json"


def load_last_values(config_dir: Path) -> dict[str, str]:
    """The saved form values, or {} when there are none or the file is unreadable."""
    path = last_values_path(config_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, (str, int, float))}


def save_last_values(config_dir: Path, values: dict[str, str]) -> None:
    path = last_values_path(config_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def forget_last_values(config_dir: Path) -> None:
    last_values_path(config_dir).unlink(missing_ok=True)
