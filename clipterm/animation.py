"""Animations of the denoising: the predicted clean image over the steps, as GIF, APNG or MP4.

:class:`FrameRecorder` keeps each sample's predicted x0 at the reporter's grid steps (at most
``max_frames`` a chain, each at most ``max_side`` pixels a side, area-averaged), so a 1000-step
run stays small; :func:`encode` makes the file. ``clipterm.output.write_animations`` writes the
grid of all finished samples as one animation (``animation.gif``) and, when asked, one per
sample (``sample-00003-animation.gif``). GIF and
APNG need only Pillow; MP4 needs the ``mp4`` extra (imageio with its ffmpeg).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from clipterm.errors import UserError

FORMATS = ("gif", "apng", "mp4")
SUFFIX = {"gif": ".gif", "apng": ".png", "mp4": ".mp4"}
FRAME_MS = 80  # 12.5 frames a second
HOLD_LAST_MS = 1000  # the final image stays a second before the loop restarts


class FrameRecorder:
    """Frames per sample index, in step order."""

    def __init__(self, max_frames: int = 50, max_side: int = 256):
        self.max_frames = max_frames
        self.max_side = max_side
        self._frames: dict[int, list[np.ndarray]] = {}

    def reset(self, indices: Sequence[int]) -> None:
        """A chain starts (or restarts after an out-of-memory split) for these samples."""
        for i in indices:
            self._frames[int(i)] = []

    def add(self, indices: Sequence[int], previews: np.ndarray) -> None:
        """uint8 [B, H, W, 3] predicted clean images of the samples ``indices`` at one step."""
        for i, img in zip(indices, previews, strict=True):
            self._frames.setdefault(int(i), []).append(fit_frame(img, self.max_side))

    def end_with(self, indices: Sequence[int], finals: np.ndarray) -> None:
        """Make each sample's last frame its final image (the last step's predicted x0 can
        differ from it by a rounding)."""
        for i, img in zip(indices, finals, strict=True):
            frames = self._frames.get(int(i))
            if frames:
                frames[-1] = fit_frame(img, self.max_side)

    def frames_of(self, index: int) -> list[np.ndarray]:
        frames = self._frames.get(int(index), [])
        if len(frames) <= self.max_frames:
            return frames
        keep = np.linspace(0, len(frames) - 1, self.max_frames).round().astype(int)
        return [frames[k] for k in keep]


def fit_frame(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX))


def check_format(fmt: str) -> str:
    """The format name, or a one-line UserError (MP4 without its extra too)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown animation format {fmt!r}: choose gif, apng or mp4")
    if fmt == "mp4":
        try:
            import imageio.v3  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise UserError("MP4 animations need the mp4 extra: pip install 'clipterm[mp4]' "
                            "(or use --animate gif)") from None
    return fmt


def encode(frames: Sequence[np.ndarray], fmt: str) -> bytes:
    """The frames (uint8 [H, W, 3], all one size) as an animation file's bytes."""
    if not frames:
        raise ValueError("no frames to animate")
    if fmt == "mp4":
        frames = [*frames, *[frames[-1]] * (HOLD_LAST_MS // FRAME_MS)]
        import imageio.v3 as iio

        even = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]  # yuv420
        return iio.imwrite("<bytes>", np.stack(even), extension=".mp4", plugin="FFMPEG",
                           fps=1000 / FRAME_MS, codec="libx264", macro_block_size=1)
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    durations = [FRAME_MS] * (len(images) - 1) + [HOLD_LAST_MS]
    images[0].save(buf, format="GIF" if fmt == "gif" else "PNG", save_all=True,
                   append_images=images[1:], duration=durations, loop=0)
    return buf.getvalue()
