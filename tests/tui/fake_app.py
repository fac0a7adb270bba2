"""The app on the fake pack and sampler, for a real terminal (tmux tests, screenshots).

    python -m tests.tui.fake_app [--delay SECONDS] [--config-dir DIR] [clipterm options...]

Deterministic, fast and free of torch: what is tested is the app in the terminal, not a model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from clipterm.tui.app import ClipTermApp
from clipterm.tui.themes import repo_themes_dir

from .fakes import FAKE_PACK_JSON, FakeLoader, FakeRunner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.05, help="seconds per sampling step")
    ap.add_argument("--config-dir", type=Path, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("-n", type=int, default=None)
    ap.add_argument("--prompt", default=None)
    ap.add_argument("--from", dest="from_path", default=None,
                    help="prefill the form from a run folder or sample PNG")
    args = ap.parse_args()
    settings = None
    if args.from_path is not None:
        from clipterm.rerun import read_recorded

        settings = read_recorded(args.from_path)
    config_dir = args.config_dir or Path(tempfile.mkdtemp(prefix="clipterm-fake-"))
    app = ClipTermApp(model=None if settings else str(FAKE_PACK_JSON), loader=FakeLoader(),
                      runner=FakeRunner(delay=args.delay), availability=lambda spec: None,
                      config_dir=config_dir, theme_dirs=[repo_themes_dir()], out_dir=args.out,
                      steps=args.steps, n=args.n, prompt=args.prompt, settings=settings)
    app.run()


if __name__ == "__main__":
    main()
