"""Writing a finished run's denoising animation into its saved run folder (the app's f4).

The frames come from the run's step events (:class:`~clipterm.tui.runner.FrameTaker`); the
file is written by the core (:func:`clipterm.output.write_animations`, never replacing a file),
then run.json lists it under ``animations``, as ``clipterm generate --animate`` does.
Textual-free.
"""

from __future__ import annotations

from pathlib import Path

from clipterm.animation import FrameRecorder, check_format
from clipterm.errors import UserError
from clipterm.events import RunResult
from clipterm.sanitize import printable


def write_run_animation(run_dir: Path, recorder: FrameRecorder, result: RunResult,
                        fmt: str) -> list[Path]:
    """Write ``result``'s animation (``animation.gif`` / ``.png`` / ``.mp4``) into ``run_dir``
    and list it in its run.json; a one-line UserError when it cannot."""
    from clipterm.output import atomic_write_json, read_run, write_animations

    check_format(fmt)
    indices = [int(i) for i in result.indices]
    if not indices:
        raise UserError("no sample of this run finished: nothing to animate")
    record = read_run(run_dir)
    try:
        names = write_animations(run_dir, recorder, indices, fmt, finals=result.images)
    except FileExistsError as exc:
        raise UserError(f"{printable(exc.filename or run_dir)} exists already: "
                        "not replaced") from None
    except OSError as exc:
        raise UserError(f"could not write the animation in {printable(run_dir)}: "
                        f"{exc.strerror or exc}") from None
    if not names:
        raise UserError("no frames were kept for this run: nothing to animate")
    listed = record.get("animations")
    record["animations"] = [*(listed if isinstance(listed, list) else []), *names]
    atomic_write_json(run_dir / "run.json", record)
    return [run_dir / name for name in names]
