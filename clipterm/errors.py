"""Errors a user can cause, and runs that could not finish.

The CLI and the TUI show a :class:`UserError` as one line (exit code 2) and a :class:`RunFailed`
as one line (exit code 1, finished samples kept). Anything else is a bug and raises.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, missing weights, no CUDA. Shown as one line."""


class ConfigError(UserError, ValueError):
    """A run description that does not make sense (empty prompt, steps <= 0, ...).

    ``field`` names the RunConfig field it is about (``"scale"``, ``"prompt"``...), so a front
    end can show the message beside the right input; ``None`` when it concerns the whole run.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class ModelUnavailableError(UserError):
    """Weights that are not on this machine and cannot be fetched now."""


class DeviceError(UserError):
    """A device that does not exist here (CUDA asked for and absent, bad index)."""


class RunFailed(Exception):
    """A run that started but could not finish: out of memory with a single sample, a full disk.

    The samples finished before it are kept; front ends show one line and exit with code 1.
    """
