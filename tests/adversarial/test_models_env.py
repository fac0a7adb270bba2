"""The adversarial matrix: weights, model configs, CLIP specs, devices and the environment
(Hugging Face cache settings, offline switches, a damaged cache, a network that is down).

Every case runs ``clipterm generate`` (or ``models``) as a user would and ends in one line on
stderr, exit 2, no traceback, nothing written, and no crafted pickle ever run."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.adversarial.harness import (
    assert_ok,
    assert_unchanged,
    assert_user_error,
    run_cli,
    snapshot,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CIFAR10_DDPM = "google/ddpm-cifar10-32"


class Payload:
    """Unpickled with code execution allowed, this creates a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Env:
    tmp: Path
    tiny: Path
    mp: pytest.MonkeyPatch

    @property
    def marker(self) -> Path:
        return self.tmp / "pwned"

    @property
    def root(self) -> Path:
        return self.tmp / "pack"

    @property
    def unet(self) -> Path:
        return self.root / "ddpm" / "unet"

    @property
    def unet_weights(self) -> Path:
        return self.unet / "diffusion_pytorch_model.safetensors"

    @property
    def clip_weights(self) -> Path:
        return self.root / "clip" / "open_clip_model.safetensors"

    @property
    def clip_config(self) -> Path:
        return self.root / "clip" / "tiny-test-clip-8.json"

    def pack(self, **changes) -> list[str]:
        """A copy of the tiny pack (with ``changes`` to its JSON); returns ``--model PATH``."""
        if not self.root.exists():
            for sub in ("ddpm", "clip"):
                shutil.copytree(self.tiny.parent / sub, self.root / sub)
        data = json.loads(self.tiny.read_text())
        data.update(changes)
        (self.root / "pack.json").write_text(json.dumps(data))
        return ["--model", str(self.root / "pack.json")]

    def payload(self, path: Path, zip_format: bool = True) -> None:
        if zip_format:
            torch.save({"conv_in.weight": Payload(self.marker)}, str(path))
        else:
            path.write_bytes(pickle.dumps({"conv_in.weight": Payload(self.marker)}))

    def cache(self) -> Path:
        cache = self.tmp / "hf-cache"
        cache.mkdir(exist_ok=True)
        self.mp.setenv("HF_HUB_CACHE", str(cache))
        return cache

    def cached_repo(self, repo_id: str, source: Path | None = None) -> Path:
        repo = self.cache() / ("models--" + repo_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(COMMIT)
        snap = repo / "snapshots" / COMMIT
        if source is not None:
            shutil.copytree(source, snap)
        else:
            snap.mkdir(parents=True)
        return snap

    def flat_ddpm(self) -> Path:
        """The tiny DDPM in the flat layout (as google/ddpm-cifar10-32 is laid out)."""
        flat = self.tmp / "flat"
        flat.mkdir()
        for sub in ("unet", "scheduler"):
            for f in (self.tiny.parent / "ddpm" / sub).iterdir():
                shutil.copy(f, flat / f.name)
        return flat


Setup = Callable[[Env], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup  # prepares files and the environment; returns the command line
    needles: tuple[str, ...]


def gen(*args: str) -> list[str]:
    return ["generate", "-n", "1", "--steps", "1", *args]


# ----------------------------------------------------------------------------- diffusion files
def unet_state(e: Env) -> dict[str, torch.Tensor]:
    return load_file(str(e.tiny.parent / "ddpm" / "unet" / "diffusion_pytorch_model.safetensors"))


def with_unet_weights(write: Callable[[Env], None]) -> Setup:
    def setup(e: Env) -> list[str]:
        args = e.pack()
        write(e)
        return gen(*args)

    return setup


def truncate(path_of: Callable[[Env], Path]) -> Callable[[Env], None]:
    def write(e: Env) -> None:
        p = path_of(e)
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    return write


def pickle_as_safetensors(e: Env) -> None:
    e.unet_weights.write_bytes(pickle.dumps({"conv_in.weight": Payload(e.marker)}))


def bin_payload(zip_format: bool) -> Callable[[Env], None]:
    def write(e: Env) -> None:
        e.unet_weights.unlink()
        e.payload(e.unet / "diffusion_pytorch_model.bin", zip_format)

    return write


def bin_bytes(content: bytes) -> Callable[[Env], None]:
    def write(e: Env) -> None:
        e.unet_weights.unlink()
        (e.unet / "diffusion_pytorch_model.bin").write_bytes(content)

    return write


def bin_not_state_dict(e: Env) -> None:
    e.unet_weights.unlink()
    torch.save([torch.zeros(3)], str(e.unet / "diffusion_pytorch_model.bin"))


def clip_weights_as_unet(e: Env) -> None:
    shutil.copy(e.clip_weights, e.unet_weights)


def small_other_weights(e: Env) -> None:
    save_file({"x": torch.zeros(10)}, str(e.unet_weights))


def reshaped_weight(e: Env) -> None:
    state = unet_state(e)
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(state[key].numel())  # same numbers, another shape
    save_file(state, str(e.unet_weights))


def nan_weight(e: Env) -> None:
    state = unet_state(e)
    key = next(iter(state))
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(e.unet_weights))


def empty_safetensors(e: Env) -> None:
    save_file({}, str(e.unet_weights))


def no_weights(e: Env) -> None:
    e.unet_weights.unlink()


def weights_is_a_folder(e: Env) -> None:
    e.unet_weights.unlink()
    e.unet_weights.mkdir()


def unet_config(change: Callable[[dict], object]) -> Callable[[Env], None]:
    def write(e: Env) -> None:
        path = e.unet / "config.json"
        cfg = json.loads(path.read_text())
        out = change(cfg)
        path.write_text(json.dumps(cfg if out is None else out))

    return write


def unet_config_bytes(content: bytes) -> Callable[[Env], None]:
    def write(e: Env) -> None:
        (e.unet / "config.json").write_bytes(content)

    return write


def no_unet_config(e: Env) -> None:
    (e.unet / "config.json").unlink()


def scheduler(change: Callable[[dict], object] | None = None, text: str | None = None
              ) -> Callable[[Env], None]:
    def write(e: Env) -> None:
        path = e.root / "ddpm" / "scheduler" / "scheduler_config.json"
        if text is not None:
            path.write_text(text)
            return
        cfg = json.loads(path.read_text())
        change(cfg)
        path.write_text(json.dumps(cfg))

    return write


def no_scheduler(e: Env) -> None:
    shutil.rmtree(e.root / "ddpm" / "scheduler")


DIFFUSION = [
    Case("unet-truncated", with_unet_weights(truncate(lambda e: e.unet_weights)), ("not a valid safetensors",)),
    Case("unet-pickle-named-safetensors", with_unet_weights(pickle_as_safetensors), ("not a valid safetensors",)),
    Case("unet-bin-payload-zip", with_unet_weights(bin_payload(True)), ("nothing in it was run", "would call")),
    Case("unet-bin-payload-raw", with_unet_weights(bin_payload(False)), ("nothing in it was run",)),
    Case("unet-bin-garbage", with_unet_weights(bin_bytes(bytes(range(256)) * 16)), ("nothing in it was run",)),
    Case("unet-bin-truncated-zip", with_unet_weights(lambda e: (
        torch.save(unet_state(e), str(e.tmp / "w.bin")), e.unet_weights.unlink(),
        (e.unet / "diffusion_pytorch_model.bin").write_bytes((e.tmp / "w.bin").read_bytes()[:3000]))),
        ("not a readable PyTorch",)),
    Case("unet-bin-not-state-dict", with_unet_weights(bin_not_state_dict), ("does not hold a state dict",)),
    Case("unet-other-architecture", with_unet_weights(clip_weights_as_unet), ("do not fit",)),
    Case("unet-too-few-weights", with_unet_weights(small_other_weights), ("another architecture",)),
    Case("unet-reshaped-weight", with_unet_weights(reshaped_weight), ("do not fit",)),
    Case("unet-nan-weights", with_unet_weights(nan_weight), ("NaN",)),
    Case("unet-empty-safetensors", with_unet_weights(empty_safetensors), ("holds no weights",)),
    Case("unet-no-weights", with_unet_weights(no_weights), ("no weights",)),
    Case("unet-weights-is-a-folder", with_unet_weights(weights_is_a_folder), ("no weights",)),
    Case("unet-config-conditional", with_unet_weights(unet_config(
        lambda c: c.update(_class_name="UNet2DConditionModel"))), ("_class_name",)),
    Case("unet-config-garbage-value", with_unet_weights(unet_config(
        lambda c: c.update(block_out_channels="abc"))), ("does not describe a model",)),
    Case("unet-config-bigger-than-weights", with_unet_weights(unet_config(
        lambda c: c.update(block_out_channels=[64, 128]))), ("another architecture",)),
    Case("unet-config-absurd", with_unet_weights(unet_config(
        lambda c: c.update(block_out_channels=[200_000, 200_000]))), ("more than clipterm loads",)),
    Case("unet-config-grey", with_unet_weights(unet_config(
        lambda c: c.update(in_channels=1, out_channels=1))), ("RGB",)),
    Case("unet-config-missing", with_unet_weights(no_unet_config), ("UNet config not found",)),
    Case("unet-config-not-utf8", with_unet_weights(unet_config_bytes(b'{"x": "\xff"}')), ("not UTF-8",)),
    Case("unet-config-list", with_unet_weights(unet_config(lambda c: [c])), ("JSON object",)),
    Case("scheduler-missing", with_unet_weights(no_scheduler), ("no scheduler config",)),
    Case("scheduler-steps-text", with_unet_weights(scheduler(
        lambda c: c.update(num_train_timesteps="1000"))), ("num_train_timesteps",)),
    Case("scheduler-steps-absurd", with_unet_weights(scheduler(
        lambda c: c.update(num_train_timesteps=10**9))), ("num_train_timesteps",)),
    Case("scheduler-unknown-schedule", with_unet_weights(scheduler(
        lambda c: c.update(beta_schedule="wiggly"))), ("cannot be used",)),
    Case("scheduler-nan", with_unet_weights(scheduler(text='{"beta_start": NaN}')), ("NaN",)),
    Case("scheduler-prediction-type", with_unet_weights(scheduler(
        lambda c: c.update(prediction_type="noise"))), ("prediction_type",)),
]


# ----------------------------------------------------------------------------- CLIP files and specs
def pack_clip(write: Callable[[Env], dict]) -> Setup:
    def setup(e: Env) -> list[str]:
        e.pack()
        return gen(*e.pack(clip=write(e)))

    return setup


def clip_bin_payload(e: Env) -> dict:
    e.payload(e.root / "clip" / "w.bin")
    return {"config": "clip/tiny-test-clip-8.json", "weights": "clip/w.bin"}


def clip_truncated(e: Env) -> dict:
    truncate(lambda e: e.clip_weights)(e)
    return {"config": "clip/tiny-test-clip-8.json", "weights": "clip/open_clip_model.safetensors"}


def clip_unet_weights(e: Env) -> dict:
    shutil.copy(e.unet_weights, e.root / "clip" / "unet.safetensors")
    return {"config": "clip/tiny-test-clip-8.json", "weights": "clip/unet.safetensors"}


def clip_nan(e: Env) -> dict:
    state = load_file(str(e.clip_weights))
    state["logit_scale"] = torch.tensor(float("inf"))
    save_file(state, str(e.root / "clip" / "inf.safetensors"))
    return {"config": "clip/tiny-test-clip-8.json", "weights": "clip/inf.safetensors"}


def clip_config_named(name: str, content: dict | None = None) -> Callable[[Env], dict]:
    def write(e: Env) -> dict:
        cfg = content if content is not None else json.loads(e.clip_config.read_text())
        (e.root / "clip" / name).write_text(json.dumps(cfg))
        return {"config": f"clip/{name}", "weights": "clip/open_clip_model.safetensors"}

    return write


def clip_config_bytes(e: Env) -> dict:
    (e.root / "clip" / "latin.json").write_bytes(b'{"embed_dim": "\xe9"}')
    return {"config": "clip/latin.json", "weights": "clip/open_clip_model.safetensors"}


def with_clip(spec: Callable[[Env], str]) -> Setup:
    def setup(e: Env) -> list[str]:
        return gen(*e.pack(), "--clip", spec(e))

    return setup


def clip_spec_payload(e: Env) -> str:
    e.payload(e.tmp / "weights.pt")
    return f"{e.clip_config}:{e.tmp / 'weights.pt'}"


def local_dir_without_config(e: Env) -> str:
    (e.tmp / "clipdir").mkdir()
    shutil.copy(e.clip_weights, e.tmp / "clipdir" / "open_clip_model.safetensors")
    return f"local-dir:{e.tmp / 'clipdir'}"


CLIP = [
    Case("clip-weights-truncated", pack_clip(clip_truncated), ("not a valid safetensors",)),
    Case("clip-weights-pickle-payload", pack_clip(clip_bin_payload), ("nothing in it was run",)),
    Case("clip-weights-other-architecture", pack_clip(clip_unet_weights), ("do not fit",)),
    Case("clip-weights-infinite", pack_clip(clip_nan), ("NaN or infinite",)),
    Case("clip-config-not-open-clip", pack_clip(clip_config_named("odd.json", {"layers": 3})),
         ("not an open_clip model config",)),
    Case("clip-config-named-like-builtin", pack_clip(clip_config_named("ViT-B-32.json")),
         ("rename the file",)),
    Case("clip-config-not-utf8", pack_clip(clip_config_bytes), ("not UTF-8",)),
    Case("spec-no-pretrained", with_clip(lambda e: "ViT-B-32"), ("random weights",)),
    Case("spec-empty-pretrained", with_clip(lambda e: "ViT-B-32:"), ("random weights",)),
    Case("spec-config-without-weights", with_clip(lambda e: str(e.clip_config)), ("random weights",)),
    Case("spec-empty", with_clip(lambda e: ""), ("empty",)),
    Case("spec-no-model", with_clip(lambda e: ":openai"), ("bad CLIP spec",)),
    Case("spec-unknown-model", with_clip(lambda e: "NoSuch-Model:openai"), ("unknown CLIP model",)),
    Case("spec-unknown-tag", with_clip(lambda e: "RN50:nope"), ("unknown pretrained weights", "openai")),
    Case("spec-not-downloaded", with_clip(lambda e: (e.cache(), "ViT-B-32:openai")[1]),
         ("not downloaded", "`clipterm models --download ViT-B-32:openai`")),
    Case("spec-local-dir-missing", with_clip(lambda e: f"local-dir:{e.tmp / 'nope'}"), ("not found",)),
    Case("spec-local-dir-without-config", with_clip(local_dir_without_config), ("CLIP config not found",)),
    Case("spec-hf-hub-not-downloaded", with_clip(lambda e: (e.cache(), "hf-hub:org/none")[1]),
         ("not downloaded", "hf-hub:org/none")),
    Case("spec-weights-missing", with_clip(lambda e: f"{e.clip_config}:{e.tmp / 'none.safetensors'}"),
         ("not found",)),
    Case("spec-weights-pickle-payload", with_clip(clip_spec_payload), ("nothing in it was run",)),
    Case("spec-weights-not-weights", with_clip(lambda e: f"{e.clip_config}:{e.clip_config}"),
         ("not a weight file",)),
]


# ----------------------------------------------------------------------------- environment
def cifar10(*extra: str) -> list[str]:
    return gen("--model", "cifar10", "--prompt", "airplane", *extra)


def a_file(e: Env) -> Path:
    f = e.tmp / "a-file"
    f.write_text("not a folder")
    return f


def env_var(var: str, value: Callable[[Env], str]) -> Setup:
    def setup(e: Env) -> list[str]:
        for k in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
            e.mp.delenv(k, raising=False)
        e.mp.setenv(var, value(e))
        return cifar10()

    return setup


def transformers_offline(e: Env) -> list[str]:
    e.cache()
    e.mp.delenv("HF_HUB_OFFLINE", raising=False)
    e.mp.setenv("TRANSFORMERS_OFFLINE", "1")
    return cifar10()


def damaged_ref(e: Env) -> list[str]:
    snap = e.cached_repo(CIFAR10_DDPM, e.flat_ddpm())
    (snap.parent.parent / "refs" / "main").write_text("../../../../etc")
    return cifar10()


def dangling_weights(e: Env) -> list[str]:
    snap = e.cached_repo(CIFAR10_DDPM, e.flat_ddpm())
    w = snap / "diffusion_pytorch_model.safetensors"
    w.unlink()
    os.symlink(e.tmp / "blobs" / "never-finished", w)  # an interrupted download
    return cifar10()


def repo_folder_is_a_file(e: Env) -> list[str]:
    (e.cache() / "models--google--ddpm-cifar10-32").write_text("x")
    return cifar10()


def cached_but_corrupt(e: Env) -> list[str]:
    snap = e.cached_repo(CIFAR10_DDPM, e.flat_ddpm())
    truncate(lambda _: snap / "diffusion_pytorch_model.safetensors")(e)
    return cifar10()


def cached_ddpm_without_clip(e: Env) -> list[str]:
    e.cached_repo(CIFAR10_DDPM, e.flat_ddpm())
    return cifar10()


def network_down(e: Env) -> list[str]:
    import huggingface_hub

    e.cache()
    e.mp.delenv("HF_HUB_OFFLINE", raising=False)
    e.mp.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def down(*a, **k):
        raise ConnectionError("[Errno -2] Name or service not known")

    e.mp.setattr(huggingface_hub.HfApi, "list_repo_files", down)
    e.mp.setattr(huggingface_hub, "snapshot_download", down)
    e.mp.setattr(huggingface_hub, "hf_hub_download", down)
    return cifar10()


def symlink_loop(e: Env) -> list[str]:
    loop = e.tmp / "loop"
    os.symlink(loop, loop)
    e.mp.setenv("HF_HUB_CACHE", str(loop))
    return cifar10()


ENVIRONMENT = [
    Case("cache-var-is-a-file", env_var("HF_HUB_CACHE", lambda e: str(a_file(e))), ("is a file",)),
    Case("cache-var-below-a-file", env_var("HF_HUB_CACHE", lambda e: str(a_file(e) / "hub")), ("is a file",)),
    Case("legacy-cache-var-is-a-file", env_var("HUGGINGFACE_HUB_CACHE", lambda e: str(a_file(e))), ("is a file",)),
    Case("hf-home-is-a-file", env_var("HF_HOME", lambda e: str(a_file(e))), ("is a file", "HF_HOME")),
    Case("transformers-offline", transformers_offline, ("TRANSFORMERS_OFFLINE is set",
                                                        "`clipterm models --download cifar10`")),
    Case("offline-empty-cache", lambda e: (e.cache(), cifar10())[1],
         ("not downloaded", "HF_HUB_OFFLINE is set", "`clipterm models --download cifar10`")),
    Case("cache-ref-points-outside", damaged_ref, ("not downloaded",)),
    Case("cache-interrupted-download", dangling_weights, ("not downloaded",)),
    Case("cache-repo-folder-is-a-file", repo_folder_is_a_file, ("not downloaded",)),
    Case("cache-symlink-loop", symlink_loop, ("not downloaded",)),
    Case("cached-weights-corrupt", cached_but_corrupt, ("not a valid safetensors",)),
    Case("cached-ddpm-without-clip", cached_ddpm_without_clip,
         ("CLIP weights ViT-B-32:openai", "not downloaded", "--download cifar10")),
    Case("network-down", network_down, ("could not download google/ddpm-cifar10-32", "Errno -2")),
]


# ----------------------------------------------------------------------------- devices, names
def device(name: str, cuda: bool = False, count: int = 0, mps: bool = False) -> Setup:
    def setup(e: Env) -> list[str]:
        e.mp.setattr(torch.cuda, "is_available", lambda: cuda)
        e.mp.setattr(torch.cuda, "device_count", lambda: count)
        e.mp.setattr(torch.backends.mps, "is_available", lambda: mps)
        return gen(*e.pack(), "--device", name)

    return setup


def neither_dir(e: Env) -> list[str]:
    (e.tmp / "empty").mkdir()
    return gen("--model", str(e.tmp / "empty"))


DEVICES_AND_NAMES = [
    Case("device-cuda-absent", device("cuda"), ("CUDA is not available",)),
    Case("device-cuda-index-absent", device("cuda:0"), ("CUDA is not available",)),
    Case("device-cuda-letter", device("cuda:x", cuda=True, count=1), ("bad device",)),
    Case("device-cuda-negative", device("cuda:-1", cuda=True, count=1), ("bad device",)),
    Case("device-cuda-beyond", device("cuda:3", cuda=True, count=1), ("1 CUDA device",)),
    Case("device-cuda-huge-index", device("cuda:99999999999999999999", cuda=True, count=1), ("bad device",)),
    Case("device-cuda-arabic-digit", device("cuda:\u0661", cuda=True, count=2), ("bad device",)),
    Case("device-mps-absent", device("mps"), ("MPS is not available",)),
    Case("device-empty", device(""), ("device is empty",)),
    Case("device-unknown", device("tpu"), ("unknown device",)),
    Case("device-escape", device("cu\x1b[2Jda"), ("unknown device", "\\x1b")),
    Case("model-name-too-long", lambda e: gen("--model", "x" * 5000 + ".json"), ("too long",)),
    Case("model-nul", lambda e: gen("--model", "dig\x00its"), ("NUL",)),
    Case("model-repo-not-downloaded", lambda e: (e.cache(), gen("--model", "org/none"))[1],
         ("not downloaded", "`clipterm models --download org/none`")),
    Case("model-folder-neither", neither_dir, ("neither a pack nor",)),
    Case("download-unknown", lambda e: ["models", "--download", "nonsense"], ("unknown model",)),
    Case("download-offline", lambda e: (e.cache(), ["models", "--download", "cifar10"])[1],
         ("HF_HUB_OFFLINE is set",)),
    Case("download-clip-without-tag", lambda e: ["models", "--download", "ViT-B-32:"], ("random weights",)),
]

CASES = DIFFUSION + CLIP + ENVIRONMENT + DEVICES_AND_NAMES


@pytest.fixture
def env(tiny_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    return Env(tmp=tmp_path, tiny=tiny_pack, mp=monkeypatch)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_models_and_environment(case: Case, env: Env, tmp_path: Path, capsys):
    args = case.setup(env)
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    o = run_cli([*args, "--out", out] if args[0] == "generate" else args, capsys)
    assert_user_error(o, *case.needles)
    assert not out.exists()
    assert not env.marker.exists()  # no crafted pickle ran
    assert_unchanged(before, tmp_path)


# ----------------------------------------------------------------------------- a broken judge
def test_a_broken_judge_leaves_generate_alone_and_fails_eval_in_one_line(env: Env, tmp_path, capsys):
    from PIL import Image

    (env.tmp / "judge").mkdir()
    args = env.pack()
    judge_dir = env.root / "judge"
    judge_dir.mkdir()
    (judge_dir / "config.json").write_text(json.dumps({"image_size": "tiny", "channels": [4]}))
    env.pack(judge="judge")
    out = tmp_path / "out"
    o = run_cli(gen(*args, "--out", str(out), "-q"), capsys)
    assert_ok(o)
    (run_dir,) = list(out.iterdir())
    real = tmp_path / "real"
    real.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(real / f"{i}.png")
    before = snapshot(run_dir)
    o = run_cli(["eval", run_dir, *args, "--real", real], capsys)
    assert_user_error(o, "judge config", "image_size")
    assert_unchanged(before, run_dir)
