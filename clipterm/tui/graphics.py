"""Full-size view of one sample with real terminal graphics, via term-image.

Inside the app every image is drawn with half-block cells (see :mod:`clipterm.tui.halfblock`):
pixel-exact for 32x32 samples, and safe over SSH and tmux. For a closer look the "view" action
suspends the app (Textual's ``App.suspend``) and hands the terminal to term-image, which picks
the best style the terminal supports: kitty or iTerm2 graphics where available, else its own
block rendering. Any key returns to the app (Enter, Esc, q, and Ctrl+C too: it never quits the
app from here). Outside the compositor the graphics protocols work as designed, so nothing can
corrupt Textual's screen.

term-image over textual-image: term-image is already a dependency and supports Python 3.10+;
textual-image's current releases need Python 3.12, and a Textual-native graphics widget would
only show these tiny samples interpolated, no more detail than the half blocks already give.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def draw_fullsize(image: np.ndarray, caption: str, max_rows: int = 30) -> str:
    """Draw ``image`` (uint8 RGB) on stdout with the best term-image style; return its name."""
    import shutil

    from PIL import Image
    from term_image.image import AutoImage

    max_rows = max(4, min(max_rows, shutil.get_terminal_size((80, 24)).lines - 3))
    h, w = image.shape[:2]
    k = max(1, 256 // max(h, w))  # enlarge with sharp pixels: the protocols would blur them
    pil = Image.fromarray(np.ascontiguousarray(image)).resize((w * k, h * k), Image.NEAREST)
    term_img = AutoImage(pil)
    term_img.set_size(height=max_rows)
    print(caption)
    term_img.draw(h_align="left", v_align="top", pad_height=1, check_size=False)
    return type(term_img).__name__


def wait_for_any_key(prompt: str) -> None:
    """Show ``prompt`` and return on the next key, Ctrl+C included (read raw, no signal)."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        sys.stdin.readline()
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        os.read(fd, 64)  # one key (an escape sequence arrives whole)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write("\r\n")
        sys.stdout.flush()
