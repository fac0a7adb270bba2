"""Errors a user can cause. The CLI and the TUI show these as one line (exit code 2)."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, missing weights, no CUDA. Shown as one line."""


class ConfigError(UserError, ValueError):
    """A run description that does not make sense (empty prompt, steps <= 0, ...)."""


class ModelUnavailableError(UserError):
    """Weights that are not on this machine and cannot be fetched now."""


class DeviceError(UserError):
    """A device that does not exist here (CUDA asked for and absent, bad index)."""
