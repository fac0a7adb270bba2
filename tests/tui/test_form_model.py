"""The form's model without Textual: values in, a config or field errors out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clipterm.packs import get_pack_spec
from clipterm.tui.form_model import (
    FormModel,
    captions_after_switch,
    initial_values,
    readable,
)

from .fakes import FAKE_PACK_JSON


@pytest.fixture
def model() -> FormModel:
    return FormModel(availability=lambda spec: None)


@pytest.fixture
def values(tmp_path: Path) -> dict[str, str]:
    v = initial_values({"model": str(FAKE_PACK_JSON)}, {})
    v["out_dir"] = str(tmp_path / "out")
    return v


def test_valid_values_make_the_core_config(model, values) -> None:
    state = model.read(values)
    assert state.valid and state.errors == {}
    cfg = state.config
    assert (cfg.method, cfg.prompt, cfg.n, cfg.seed, cfg.scale) == ("contrastive", "seven", 16,
                                                                    0, 2.0)
    assert "seven" not in cfg.distractors and len(cfg.distractors) == 9


@pytest.mark.parametrize(("field", "raw", "message"), [
    ("scale", "abc", "Scale: 'abc' is not a number"),
    ("steps", "1.5", "Steps: '1.5' is not a whole number"),
    ("n", "0", "Samples: the number of samples must be >= 1 (got 0)"),
    ("seed", "-1", "Seed: the seed must be >= 0 (got -1)"),
    ("guide_from", "0", "Guide from: guide-from must be >= 1 (got 0)"),
], ids=["scale-text", "steps-fraction", "samples-zero", "seed-negative", "guide-from-zero"])
def test_each_error_names_its_field_once(model, values, field, raw, message) -> None:
    state = model.read({**values, field: raw})
    assert not state.valid and state.error_field == field
    assert state.describe_errors() == [message]


def test_core_messages_use_the_forms_words(model, values) -> None:
    assert readable("optimize does not use --scale, --guide-from") == \
        "optimize does not use Scale, Guide from"
    assert readable("--iters must be > 0; --init-image x") == "Iterations must be > 0; Init image x"
    assert readable("--modelx and --model-dir stay") == "--modelx and --model-dir stay"
    state = model.read({**values, "prompt": "  "})
    assert state.error_field == "prompt" and "--" not in state.error


def test_a_closed_vocabulary_pack_flags_the_prompt(model) -> None:
    values = initial_values({"model": "digits"}, {})
    state = model.read({**values, "prompt": "a cat"})
    assert state.error_field == "prompt" and "only knows its 10 captions" in state.error
    assert "--model" not in state.error


def test_compare_and_save_to_are_checked_inline(model, values, tmp_path) -> None:
    state = model.read({**values, "compare": "uncond, banana"})
    assert state.valid  # Run is fine; Compare and Save are not
    assert state.errors["compare"].startswith("unknown method 'banana'")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    state = model.read({**values, "out_dir": str(blocker)})
    assert "is a file" in state.errors["out_dir"] and "--out" not in state.errors["out_dir"]
    if Path("/proc").is_dir():
        state = model.read({**values, "out_dir": "/proc/x"})
        assert "not writable" in state.errors["out_dir"]
    assert not list(tmp_path.glob("out*"))  # checking writes nothing


def test_missing_weights_block_run_with_one_message(values) -> None:
    model = FormModel(availability=lambda spec: f"the weights of {spec.name} are not here")
    state = model.read(values)
    assert state.config is not None and not state.valid
    assert state.errors == {"model": "the weights of fakepack are not here"}


def test_compare_configs_use_pack_defaults_for_other_methods(model, values) -> None:
    values = {**values, "scale": "7", "compare": "uncond spherical contrastive"}
    state = model.read(values)
    configs = model.compare_configs(state.values, state.spec)
    assert [(c.method, c.scale) for c in configs] == [("uncond", None), ("spherical", 5.0),
                                                      ("contrastive", 7.0)]


def test_switching_packs_offers_their_captions() -> None:
    cifar, digits = get_pack_spec("cifar10"), get_pack_spec("digits")
    offer = captions_after_switch(cifar, digits, {"prompt": "airplane",
                                                  "distractors": "cat\ndog"})
    assert offer is not None and offer["prompt"] == "seven"
    assert offer["distractors"].splitlines() == list(digits.distractors_for("seven"))
    assert captions_after_switch(cifar, digits, {"prompt": "a red bird",
                                                 "distractors": "cat"}) is None
    assert captions_after_switch(digits, digits, {"prompt": "seven"}) is None


def test_initial_values_prefer_options_then_memory() -> None:
    remembered = {"model": "cifar10", "prompt": "cat", "distractors": "dog\nbird", "seed": "7"}
    same = initial_values({"model": None}, remembered)
    assert (same["prompt"], same["distractors"], same["seed"]) == ("cat", "dog\nbird", "7")
    prompt = initial_values({"prompt": "dog"}, remembered)
    assert prompt["prompt"] == "dog" and prompt["distractors"] == "bird"
    other = initial_values({"model": "digits"}, remembered)
    assert other["model"] == "digits" and other["prompt"] != "cat" and other["seed"] == "7"
    assert initial_values({}, {}, default_model="digits")["prompt"] == "seven"


def test_the_form_model_and_layout_import_without_textual() -> None:
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('textual', 'typer'):\n"
            "            raise ImportError('UI framework imported: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import clipterm.tui.form_model, clipterm.tui.layout, clipterm.trace_plot\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
