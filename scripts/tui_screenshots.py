"""Regenerate the README's screenshots of the app from a real terminal.

    python scripts/tui_screenshots.py [--model digits] [--device cpu] [--out docs/img]

Runs ``clipterm`` in tmux (truecolor, a throwaway config folder), makes a run, and saves what
the terminal shows (``tmux capture-pane -e``: the cells and their colours) as SVG with rich:

* ``tui-80x24-form.svg``: the form at 80x24, as the app opens;
* ``tui-80x24.svg``: the results at 80x24 after a run (sample, every bar, trace, thumbnails);
* ``tui-120x40.svg``: the form beside the results at 120x40 after a run;
* ``tui-80x24-no-color.svg``: the same run under ``NO_COLOR=1``.

Each takes a run of the model (seed 0, so the pictures are the same every time); on a CPU with
the digits pack that is a minute or two each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.text import Text  # noqa: E402

from tests.tui.tmux import Tmux  # noqa: E402


def save_svg(ansi: str, size: tuple[int, int], path: Path, title: str) -> None:
    console = Console(record=True, width=size[0], height=size[1], force_terminal=True,
                      color_system="truecolor", file=open("/dev/null", "w"))  # noqa: SIM115
    lines = ansi.rstrip("\n").split("\n")[: size[1]]
    for line in lines:
        text = Text.from_ansi(line, no_wrap=True, overflow="crop")
        text.pad_right(size[0] - text.cell_len)
        console.print(text, no_wrap=True, overflow="crop", crop=True)
    console.save_svg(str(path), title=title)
    print(f"wrote {path}")


def shoot(args: argparse.Namespace, size: tuple[int, int], name: str, *, no_color: bool = False,
          form_too: str | None = None) -> None:
    config = tempfile.mkdtemp(prefix="clipterm-shots-")
    env = {"TERM": "xterm-256color", "COLORTERM": "truecolor", "XDG_CONFIG_HOME": config,
           "HF_HUB_OFFLINE": "1"}
    if no_color:
        env["NO_COLOR"] = "1"
    command = (f"{sys.executable} -m clipterm --reset --model {args.model} --device {args.device}"
               f" --prompt seven --method contrastive -n {args.n} --steps {args.steps} --seed 0")
    with Tmux(command, *size, env=env, cwd=Path(config)) as term:
        term.wait_for("Run  ctrl+r", 300)
        term.wait_for(lambda s: "ready:" in s and "Quit" in s, 60)  # the footer comes last
        if form_too:
            save_svg(term.capture(ansi=True), size, args.out / form_too,
                     f"clipterm {size[0]}x{size[1]}: the form")
        term.send("C-r")
        term.wait_for(f"finished: {args.n} samples", 1800, interval=0.5)
        term.send("C-n", "C-n")  # select sample #2: the selection marker shows
        term.wait_for("▶#2", 60)
        save_svg(term.capture(ansi=True), size, args.out / name,
                 f"clipterm {size[0]}x{size[1]}" + (" NO_COLOR=1" if no_color else ""))
        term.send("C-q")
        term.wait_for("not saved", 60)
        term.send("q")
        term.wait_exit(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="digits")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shoot(args, (80, 24), "tui-80x24.svg", form_too="tui-80x24-form.svg")
    shoot(args, (120, 40), "tui-120x40.svg")
    shoot(args, (80, 24), "tui-80x24-no-color.svg", no_color=True)


if __name__ == "__main__":
    main()
