"""Builders for the evaluation side's adversarial cases: a tiny pack with a judge, real images,
a finished run folder made through the CLI, and hostile weight files.

Plain functions (the test modules wrap them in fixtures), so the same files can be copied into
an older checkout and run there.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CAPTIONS = ["zero", "one", "two", "three"]


def build_judged_pack(tiny_pack: Path, root: Path) -> Path:
    """The tiny pack (copied) plus a tiny judge that calls every image 'one'."""
    import torch

    from clipterm.judge import DigitJudge, JudgeConfig, save_judge

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    judge = DigitJudge(JudgeConfig(image_size=8, channels=(4, 8), feature_dim=6,
                                   class_names=tuple(CAPTIONS)))
    with torch.no_grad():
        judge.head.weight.zero_()
        judge.head.bias.fill_(-4.0)
        judge.head.bias[CAPTIONS.index("one")] = 4.0
    save_judge(judge, root / "judge")
    data = json.loads(tiny_pack.read_text())
    for folder in ("ddpm", "clip"):
        shutil.copytree(tiny_pack.parent / folder, root / folder)
    data.update(name="tiny-judged", judge="judge")
    path = root / "pack.json"
    path.write_text(json.dumps(data))
    return path


def build_real_folder(folder: Path, n: int = 10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.zeros((8, 8, 3), np.uint8)
        img[2:6, 3:5] = rng.integers(180, 256)
        Image.fromarray(img).save(folder / f"real-{i:02d}.png")
    return folder


def run_quietly(args: list[str]) -> tuple[int, str, str]:
    """``clipterm ARGS`` outside any test's capture (for fixtures): (code, stdout, stderr)."""
    import contextlib

    from clipterm.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def make_run(pack: Path, out: Path, n: int = 6) -> Path:
    """A finished run folder of ``n`` samples, made by ``clipterm generate``."""
    out.mkdir(parents=True, exist_ok=True)
    code, _, err = run_quietly(["generate", "--model", pack, "-n", n, "--batch", n, "--steps",
                                2, "--out", out, "-q"])
    assert code == 0, err
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def edit_record(folder: Path, **changes) -> dict:
    """Rewrite run.json with ``changes`` applied (a value of ``...`` deletes the key)."""
    data = json.loads((folder / "run.json").read_text())
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    (folder / "run.json").write_text(json.dumps(data))
    return data


def bomb_png(path: Path) -> Path:
    """400 megapixels of nothing: a few kB on disk, 400 MB decoded."""
    Image.new("1", (20000, 20000)).save(path)
    return path


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears only if the pickle runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_weights(path: Path, marker: Path) -> Path:
    """A PyTorch weight file (torch.save's zip format) whose pickle creates ``marker``."""
    import torch

    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "payload": _Payload(marker)}, path)
    return path


def inception_state_dict() -> dict:
    """torch-fidelity's Inception-v3 state dict (its names and shapes), random weights."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # noqa: ARG002
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with torch.device("meta"):
        net = Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, t in net.state_dict().items():
        if name.endswith("running_var"):
            out[name] = torch.ones(t.shape)
        elif t.dtype.is_floating_point:
            fan_in = max(1, int(np.prod(t.shape[1:]))) if t.ndim > 1 else 1
            out[name] = torch.randn(t.shape, generator=gen) / fan_in**0.5
        else:
            out[name] = torch.zeros(t.shape, dtype=t.dtype)
    return out


def umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old
