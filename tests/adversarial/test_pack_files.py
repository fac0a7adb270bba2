"""The adversarial matrix: pack files (``--model PACK.json``) that are wrong in every way a
file from outside can be: wrong types, unknown keys, invisible or repeated captions, absurd
numbers, paths out of the pack's folder, bytes that are not UTF-8 JSON, prompts a closed
vocabulary cannot read. Each ends in one line naming the field, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.harness import (
    assert_unchanged,
    assert_user_error,
    no_temp_files,
    run_cli,
    snapshot,
)

Edit = Callable[[Path, dict[str, Any]], "Path | None"]


@dataclass(frozen=True)
class Case:
    id: str
    edit: Edit  # changes the JSON data in place, or writes files and returns the --model path
    needles: tuple[str, ...]
    args: tuple[str, ...] = ()


def setitem(path: str, value: Any) -> Edit:
    """Set ``a.b.c`` in the pack's JSON."""
    keys = path.split(".")

    def edit(folder: Path, data: dict[str, Any]) -> None:
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value

    return edit


def delitem(key: str) -> Edit:
    def edit(folder: Path, data: dict[str, Any]) -> None:
        del data[key]

    return edit


def raw(content: bytes, name: str = "pack.json") -> Edit:
    def edit(folder: Path, data: dict[str, Any]) -> Path:
        (folder / name).write_bytes(content)
        return folder / name

    return edit


def raw_text(make: Callable[[dict[str, Any]], str]) -> Edit:
    def edit(folder: Path, data: dict[str, Any]) -> Path:
        (folder / "pack.json").write_text(make(data), encoding="utf-8")
        return folder / "pack.json"

    return edit


def both(*edits: Edit) -> Edit:
    def edit(folder: Path, data: dict[str, Any]) -> Path | None:
        out = None
        for e in edits:
            out = e(folder, data) or out
        return out

    return edit


def make_dir(rel: str) -> Edit:
    def edit(folder: Path, data: dict[str, Any]) -> None:
        (folder / rel).mkdir(parents=True, exist_ok=True)

    return edit


def symlink(rel: str, target: Callable[[Path], Path]) -> Edit:
    def edit(folder: Path, data: dict[str, Any]) -> None:
        os.symlink(target(folder), folder / rel)

    return edit


def outside_copy_of(sub: str) -> Callable[[Path], Path]:
    """A copy of the pack's ``sub`` folder next to (outside) the pack's folder."""
    def target(folder: Path) -> Path:
        dest = folder.parent / f"outside-{sub}"
        if not dest.exists():
            shutil.copytree(folder / sub, dest)
        return dest

    return target


def fifo(folder: Path, data: dict[str, Any]) -> Path:
    os.mkfifo(folder / "fifo.json")
    return folder / "fifo.json"


def defaults_with(**methods_or_fields: Any) -> Edit:
    def edit(folder: Path, data: dict[str, Any]) -> None:
        data["defaults"].update(methods_or_fields)

    return edit


def method_default(method: str, key: str, value: Any) -> Edit:
    def edit(folder: Path, data: dict[str, Any]) -> None:
        data["defaults"].setdefault("methods", {}).setdefault(method, {})[key] = value

    return edit


CASES = [
    # ---- captions
    Case("captions-int", setitem("captions", 5), ("captions", "must be a list")),
    Case("captions-empty", setitem("captions", []), ("captions",)),
    Case("captions-string", setitem("captions", "zero one"), ("captions", "must be a list")),
    Case("captions-duplicate-case", setitem("captions", ["one", "two", "One"]), ("captions[2]", "repeats")),
    Case("captions-zero-width", setitem("captions", ["one", "\u200b\u200d"]), ("captions[1]", "invisible")),
    Case("captions-blank", setitem("captions", ["one", "   "]), ("captions[1]", "invisible")),
    Case("captions-escape", setitem("captions", ["one", "tw\x1b[2Jo"]), ("captions[1]", "does not print")),
    Case("captions-bidi", setitem("captions", ["one", "tw\u202eo"]), ("captions[1]", "does not print")),
    Case("captions-number", setitem("captions", ["one", 2]), ("captions[1]", "must be a string")),
    Case("captions-too-long", setitem("captions", ["one", "x" * 500]), ("captions[1]",)),
    Case("captions-newline", setitem("captions", ["one", "two\nthree"]), ("captions[1]",)),
    Case("captions-missing", delitem("captions"), ("captions: required",)),
    # ---- defaults
    Case("defaults-string", setitem("defaults", "x"), ("defaults", "JSON object")),
    Case("defaults-list", setitem("defaults", [1, 2]), ("defaults", "JSON object")),
    Case("defaults-steps-text", defaults_with(steps="abc"), ("defaults.steps", "whole number")),
    Case("defaults-steps-bool", defaults_with(steps=True), ("defaults.steps", "whole number")),
    Case("defaults-steps-float", defaults_with(steps=10.5), ("defaults.steps", "whole number")),
    Case("defaults-steps-absurd", defaults_with(steps=10**12), ("defaults.steps",)),
    Case("defaults-steps-zero", defaults_with(steps=0), ("defaults.steps",)),
    Case("defaults-steps-over-training", defaults_with(steps=5000), ("defaults.steps",)),
    Case("defaults-batch-absurd", defaults_with(batch=10**9), ("defaults.batch",)),
    Case("defaults-batch-negative", defaults_with(batch=-4), ("defaults.batch",)),
    Case("defaults-scale-negative", defaults_with(scale=-1.0), ("defaults.scale",)),
    Case("defaults-scale-absurd", defaults_with(scale=1e300), ("defaults.scale",)),
    Case("defaults-lr-zero", defaults_with(lr=0), ("defaults.lr",)),
    Case("defaults-iters-absurd", defaults_with(opt_iters=10**8), ("defaults.opt_iters",)),
    Case("defaults-sampler-unknown", defaults_with(sampler="euler"), ("defaults.sampler",)),
    Case("defaults-grad-norm-unknown", defaults_with(grad_norm="l2"), ("defaults.grad_norm",)),
    Case("defaults-unknown-key", defaults_with(speed=3), ("unknown key", "defaults.speed")),
    Case("defaults-methods-list", defaults_with(methods=[]), ("defaults.methods", "JSON object")),
    Case("defaults-method-unknown", method_default("magic", "scale", 1.0), ("defaults.methods.magic",)),
    Case("defaults-method-scale-text", method_default("spherical", "scale", "big"),
         ("defaults.methods.spherical.scale", "must be a number")),
    Case("defaults-method-steps-over-training", method_default("optimize", "steps", 1001),
         ("defaults.methods.optimize.steps", "1000 training steps")),
    Case("defaults-method-unknown-key", method_default("contrastive", "guidance", 2),
         ("unknown key", "defaults.methods.contrastive.guidance")),
    Case("defaults-nan", raw_text(lambda d: json.dumps(d).replace('"scale": 0.0', '"scale": NaN', 1)),
         ("not valid JSON", "NaN")),
    Case("defaults-infinity", raw_text(lambda d: json.dumps(d).replace('"lr": 0.05', '"lr": Infinity', 1)),
         ("not valid JSON", "Infinity")),
    # ---- train_steps
    Case("train-steps-text", setitem("train_steps", "abc"), ("train_steps", "whole number")),
    Case("train-steps-negative", setitem("train_steps", -5), ("train_steps",)),
    Case("train-steps-absurd", setitem("train_steps", 10**15), ("train_steps",)),
    Case("train-steps-disagree-with-scheduler", setitem("train_steps", 500),
         ("train_steps 500", "scheduler has 1000")),
    # ---- judge
    Case("judge-int", setitem("judge", 5), ("judge", "must be a string")),
    Case("judge-missing-folder", setitem("judge", "judge"), ("judge", "not found")),
    Case("judge-without-config", both(make_dir("judge"), setitem("judge", "judge")),
         ("judge", "no config.json")),
    Case("judge-escapes-folder", both(make_dir("../elsewhere"), setitem("judge", "../elsewhere")),
         ("judge", "outside the pack's folder")),
    Case("judge-absolute", setitem("judge", "/tmp"), ("judge", "relative")),
    # ---- diffusion
    Case("diffusion-int", setitem("diffusion", 5), ("diffusion", "must be a string")),
    Case("diffusion-missing", delitem("diffusion"), ("diffusion: required",)),
    Case("diffusion-escapes", setitem("diffusion", "../../.."), ("diffusion", "outside")),
    Case("diffusion-absolute", setitem("diffusion", "/usr"), ("diffusion", "relative")),
    Case("diffusion-home", setitem("diffusion", "~/models"), ("diffusion", "relative")),
    Case("diffusion-symlink-out", both(symlink("linked", outside_copy_of("ddpm")),
                                       setitem("diffusion", "linked")), ("diffusion", "outside")),
    Case("diffusion-not-found", setitem("diffusion", "models/here/ddpm"), ("diffusion", "not found")),
    Case("diffusion-nul", setitem("diffusion", "dd\x00pm"), ("diffusion",)),
    # ---- clip
    Case("clip-int", setitem("clip", 5), ("clip", "JSON object")),
    Case("clip-unknown-scheme", setitem("clip", "ftp://x"), ("clip",)),
    Case("clip-model-without-pretrained", setitem("clip", {"model": "ViT-B-32"}), ("clip", "random")),
    Case("clip-config-without-weights", setitem("clip", {"config": "clip/tiny-test-clip-8.json"}),
         ("clip", "random")),
    Case("clip-unknown-key", setitem("clip.colour", "red"), ("unknown key", "clip.colour")),
    Case("clip-weights-escape", setitem("clip.weights", "../../../../etc/passwd"), ("clip.weights", "outside")),
    Case("clip-config-absolute", setitem("clip.config", "/etc/hostname"), ("clip.config", "relative")),
    Case("clip-weights-missing", setitem("clip.weights", "clip/nothing.safetensors"), ("clip.weights", "not found")),
    Case("clip-local-dir-escape", setitem("clip", "local-dir:.."), ("clip", "outside")),
    Case("clip-hub-not-repo", setitem("clip", "hf-hub:not a repo"), ("clip",)),
    Case("clip-hf-hub-not-repo", setitem("clip", {"model": "ViT-B-32", "pretrained": "openai",
                                                  "hf_hub": "../x"}), ("clip.hf_hub",)),
    # ---- other fields
    Case("unknown-top-level-key", setitem("colour", "blue"), ("unknown key 'colour'",)),
    Case("name-path", setitem("name", "../../evil"), ("name",)),
    Case("name-escape", setitem("name", "x\x1b]0;pwned\x07"), ("name",)),
    Case("description-escape", setitem("description", "fine\x1b[2Jnot"), ("description", "does not print")),
    Case("vocabulary-unknown", setitem("vocabulary", "sometimes"), ("vocabulary",)),
    Case("closed-default-prompt-unknown", both(setitem("vocabulary", "closed"),
                                               setitem("default_prompt", "cat")), ("default_prompt",)),
    Case("default-prompt-empty", setitem("default_prompt", ""), ("default_prompt",)),
    Case("real-data-unknown", setitem("real_data", "imagenet"), ("real_data",)),
    Case("tuned-text", setitem("tuned", "yes"), ("tuned", "true or false")),
    Case("download-negative", setitem("download_mb", -1), ("download_mb",)),
    # ---- the file itself
    Case("not-utf8", raw("{\"name\": \"caf\xe9\"}".encode("latin-1")), ("not UTF-8",)),
    Case("utf16", raw('{"captions": ["a"]}'.encode("utf-16")), ("not UTF-8",)),
    Case("trailing-comma", raw(b'{"diffusion": "ddpm",}'), ("not valid JSON", "line 1")),
    Case("empty-file", raw(b""), ("not valid JSON",)),
    Case("top-level-list", raw(b"[1, 2, 3]"), ("JSON object",)),
    Case("duplicate-key", raw_text(lambda d: json.dumps(d)[:-1] + ', "captions": ["x"]}'),
         ("appears twice",)),
    Case("deeply-nested", raw(b"[" * 200_000 + b"]" * 200_000), ("nested too deeply",)),
    Case("huge-file", raw_text(lambda d: json.dumps(d) + " " * (2 << 20)), ("larger than",)),
    Case("fifo", fifo, ("is not a file",)),
    Case("a-directory-named-json", lambda f, d: (f / "dir.json").mkdir() or f / "dir.json",
         ("is not a file",)),
]


@pytest.fixture
def pack_dir(tiny_pack: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "packs" / "mine"
    for sub in ("ddpm", "clip"):
        shutil.copytree(tiny_pack.parent / sub, folder / sub)
    return folder


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_pack_file(case: Case, pack_dir: Path, tiny_pack: Path, tmp_path: Path, capsys):
    data = json.loads(tiny_pack.read_text())
    model = case.edit(pack_dir, data)
    if model is None:
        model = pack_dir / "pack.json"
        model.write_text(json.dumps(data))
    before = snapshot(pack_dir.parent)
    out = tmp_path / "out"
    o = run_cli(["generate", "--model", model, "-n", "1", "--steps", "1", "--out", out,
                 *case.args], capsys)
    assert_user_error(o, *case.needles)
    assert not out.exists()
    assert_unchanged(before, pack_dir.parent)
    assert no_temp_files(tmp_path) == []


# ----------------------------------------------------------------------------- closed vocabulary
VOCABULARY = [
    ("prompt-outside-digits", ["--model", "digits", "--prompt", "airplane"],
     ("digits pack only knows", "'airplane'", "--model cifar10", "clipterm models --download cifar10")),
    ("free-text-prompt", ["--model", "digits", "--prompt", "a red sports car"],
     ("'a red sports car'", "cifar10")),
    ("distractor-outside-digits", ["--model", "digits", "--prompt", "seven", "-d", "cat"],
     ("distractor 'cat'", "cifar10")),
    ("default-model-airplane", ["--prompt", "airplane"], ("digits pack", "clipterm models --download cifar10")),
    ("compare-outside-digits", ["--model", "digits", "--prompt", "ship"], ("'ship'",)),
]


@pytest.mark.parametrize(("args", "needles"), [v[1:] for v in VOCABULARY], ids=[v[0] for v in VOCABULARY])
def test_closed_vocabulary_refuses_unknown_captions(args, needles, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # cifar10 not downloaded
    command = "compare" if "ship" in args else "generate"
    out = tmp_path / "out"
    o = run_cli([command, *args, "-n", "1", "--steps", "1", "--out", out], capsys)
    line = assert_user_error(o, *needles)
    assert o.err == line + "\n"  # nothing before or after clipterm's one line
    assert not out.exists()
