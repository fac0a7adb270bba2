"""The adversarial matrix: the 256x256 models' options and files (issue 13).

Cutout options out of range or of the wrong type (on the command line and in a pack JSON), a
``.bin``-only repo in the Hugging Face cache that is crafted, truncated or empty, a UNet's
variance output that its scheduler does not read, and the 256x256 packs' download while
offline. Each ends in one line on stderr and exit 2 (Typer's usage block for a mistyped command
line), no traceback, no run folder, nothing in the cache changed, and no crafted pickle run."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.adversarial.harness import (
    assert_unchanged,
    assert_usage_error,
    assert_user_error,
    run_cli,
    snapshot,
)
from tests.tiny_big import build_unet_folder, cache_repo, write_pack

REPO = "someone/ddpm-tiny-256-standin"


class Payload:
    """Unpickled with code execution allowed, this creates a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Env:
    tmp: Path
    mp: pytest.MonkeyPatch

    @property
    def marker(self) -> Path:
        return self.tmp / "pwned"

    def pack(self, diffusion: str = "ddpm", **defaults) -> Path:
        """A tiny 64x64 pack (its UNet in ``ddpm/`` unless ``diffusion`` names a repo)."""
        root = self.tmp / "pack"
        if diffusion == "ddpm" and not (root / "ddpm").exists():
            build_unet_folder(root / "ddpm")
        return write_pack(root, diffusion, **defaults)

    def bin_repo(self, write: Callable[[Path], None] | None = None, **unet) -> Path:
        """A .bin-only repo in the cache (``write`` replaces the .bin's bytes); returns the
        pack that names it."""
        src = build_unet_folder(self.tmp / "src", bin_only=True, **unet)
        if write is not None:
            write(src / "diffusion_pytorch_model.bin")
        cache = self.tmp / "hf-cache"
        self.mp.setenv("HF_HUB_CACHE", str(cache))
        cache_repo(cache, REPO, src)
        return self.pack(REPO)


Setup = Callable[[Env], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup
    needles: tuple[str, ...]
    usage: bool = False  # a mistyped command line: Typer's usage block


def gen(e: Env, *args: str, **defaults) -> list[str]:
    return ["generate", "--model", str(e.pack(**defaults)), "-n", "1", "--steps", "1", *args]


def pack_default(key: str, value) -> Setup:
    return lambda e: gen(e, **{key: value})


def method_default(key: str, value) -> Setup:
    return lambda e: gen(e, methods={"contrastive": {key: value}})


def cached_bin(write: Callable[[Env, Path], None] | None = None, **unet) -> Setup:
    def setup(e: Env) -> list[str]:
        pack = e.bin_repo((lambda p: write(e, p)) if write else None, **unet)
        return ["generate", "--model", str(pack), "-n", "1", "--steps", "1"]

    return setup


def crafted(zip_format: bool) -> Callable[[Env, Path], None]:
    def write(e: Env, path: Path) -> None:
        if zip_format:
            torch.save({"conv_in.weight": Payload(e.marker)}, str(path))
        else:
            path.write_bytes(pickle.dumps({"conv_in.weight": Payload(e.marker)}))

    return write


def truncated(e: Env, path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty_state(e: Env, path: Path) -> None:
    torch.save({}, str(path))


def variance(kind: str, learned_range: bool) -> Setup:
    def setup(e: Env) -> list[str]:
        folder = build_unet_folder(e.tmp / "m", learned_range=learned_range)
        cfg = json.loads((folder / "scheduler_config.json").read_text())
        cfg["variance_type"] = kind
        (folder / "scheduler_config.json").write_text(json.dumps(cfg))
        return ["generate", "--model", str(folder), "-n", "1", "--steps", "1",
                "--prompt", "a church"]

    return setup


def offline_download(name: str) -> Setup:
    def setup(e: Env) -> list[str]:
        e.mp.setenv("HF_HUB_CACHE", str(e.tmp / "hf-cache"))
        return ["models", "--download", name]

    return setup


CASES = [
    # the command line
    Case("cutouts-negative", lambda e: gen(e, "--cutouts", "-1"), ("cutouts must be >= 0",)),
    Case("cutouts-too-many", lambda e: gen(e, "--cutouts", "100000"), ("cutouts must be <= 256",)),
    Case("cutouts-not-a-number", lambda e: gen(e, "--cutouts", "many"), ("--cutouts",), usage=True),
    Case("cut-pow-zero", lambda e: gen(e, "--cut-pow", "0"), ("--cut-pow", "must be > 0")),
    Case("cut-pow-negative", lambda e: gen(e, "--cut-pow", "-2"), ("--cut-pow", "in [0, 10]")),
    Case("cut-pow-nan", lambda e: gen(e, "--cut-pow", "nan"), ("--cut-pow", "finite")),
    Case("cut-pow-inf", lambda e: gen(e, "--cut-pow", "inf"), ("--cut-pow", "finite")),
    Case("cut-pow-huge", lambda e: gen(e, "--cut-pow", "1e300"), ("--cut-pow", "in [0, 10]")),
    Case("augment-with-a-value", lambda e: gen(e, "--augment", "yes"), ("unexpected extra",),
         usage=True),
    # a pack's defaults
    Case("pack-cutouts-negative", pack_default("cutouts", -3), ("defaults.cutouts",)),
    Case("pack-cutouts-float", pack_default("cutouts", 2.5), ("defaults.cutouts", "whole number")),
    Case("pack-cutouts-string", pack_default("cutouts", "8"), ("defaults.cutouts",)),
    Case("pack-cut-pow-zero", method_default("cut_pow", 0), ("defaults.methods.contrastive.cut_pow",)),
    Case("pack-augment-string", pack_default("augment", "yes"), ("defaults.augment", "true or false")),
    Case("pack-checkpointing-number", pack_default("grad_checkpointing", 1),
         ("defaults.grad_checkpointing", "true or false")),
    # .bin-only repos in the cache
    Case("bin-crafted-zip", cached_bin(crafted(True)), ("nothing in it was run", "would call")),
    Case("bin-crafted-raw-pickle", cached_bin(crafted(False)), ("nothing in it was run",)),
    Case("bin-truncated", cached_bin(truncated), ("not a readable PyTorch weight file",)),
    Case("bin-empty-state-dict", cached_bin(empty_state), ("holds no weights",)),
    # the variance a UNet predicts and its scheduler reads
    Case("six-channels-fixed-variance", variance("fixed_small", True),
         ("6 output channels", "expected learned_range")),
    Case("learned-range-three-channels", variance("learned_range", False),
         ("learns the variance", "not 6")),
    Case("variance-learned-not-range", variance("learned", True), ("variance_type 'learned'",)),
    # the packs' downloads
    Case("download-church-offline", offline_download("church"),
         ("cannot download google/ddpm-ema-church-256", "HF_HUB_OFFLINE is set")),
    Case("download-celebahq-offline", offline_download("celebahq"),
         ("cannot download google/ddpm-ema-celebahq-256",)),
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    return Env(tmp=tmp_path, mp=monkeypatch)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_big_models(case: Case, env: Env, tmp_path: Path, capsys):
    args = case.setup(env)
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    o = run_cli([*args, "--out", out] if args[0] == "generate" else args, capsys)
    if case.usage:
        assert_usage_error(o, *case.needles)
    else:
        assert_user_error(o, *case.needles)
    assert not out.exists()
    assert not env.marker.exists()  # no crafted pickle ran
    assert_unchanged(before, tmp_path)  # nothing written, in the cache or anywhere
