"""Writes tests/golden/golden.npz: the uint8 output of every method on the tiny and digits packs.

Run once, before the core is reshaped (``python -m tests.golden.make_golden``); the test
``tests/test_golden.py`` then holds every later version of the sampler to these bytes.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent

# name -> (pack, config fields). The tiny pack is built by tests/conftest.py (8x8, 4 captions).
CASES: dict[str, tuple[str, dict]] = {
    "tiny-uncond-ddpm": ("tiny", dict(method="uncond", sampler="ddpm", steps=10)),
    "tiny-uncond-ddim": ("tiny", dict(method="uncond", sampler="ddim", steps=10)),
    "tiny-uncond-ddim-eta": ("tiny", dict(method="uncond", sampler="ddim", steps=10, eta=0.5)),
    "tiny-spherical-ddpm": ("tiny", dict(method="spherical", sampler="ddpm", steps=10, scale=0.5)),
    "tiny-spherical-raw": ("tiny", dict(method="spherical", sampler="ddim", steps=8, scale=40.0,
                                        grad_norm="none")),
    "tiny-contrastive-ddpm": ("tiny", dict(method="contrastive", sampler="ddpm", steps=10,
                                           scale=0.5)),
    "tiny-contrastive-ddim-eta": ("tiny", dict(method="contrastive", sampler="ddim", steps=10,
                                               scale=0.5, eta=0.3)),
    "tiny-contrastive-xt": ("tiny", dict(method="contrastive", sampler="ddpm", steps=10,
                                         scale=0.5, clip_input="xt")),
    "tiny-contrastive-seedmode": ("tiny", dict(method="contrastive", sampler="ddpm", steps=10,
                                               scale=100.0, clip_input="xt", seed_preprocess=True,
                                               clip_x0=False, grad_norm="none")),
    "tiny-contrastive-guide-from": ("tiny", dict(method="contrastive", sampler="ddpm", steps=10,
                                                 scale=0.5, guide_from=500)),
    "tiny-optimize": ("tiny", dict(method="optimize", steps=4, opt_iters=3, lr=0.05)),
    "digits-uncond": ("digits", dict(method="uncond", steps=5)),
    "digits-contrastive": ("digits", dict(method="contrastive", steps=5)),
    "digits-spherical": ("digits", dict(method="spherical", steps=5)),
    "digits-optimize": ("digits", dict(method="optimize", steps=3, opt_iters=2)),
}
N, BATCH, SEED = 3, 2, 7


@contextlib.contextmanager
def one_thread():
    """CPU kernels are bit-identical only for a fixed thread count: pin it to one."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_case(pack_path: str, prompt: str, fields: dict) -> np.ndarray:
    from clipterm.api import make_config
    from clipterm.models import load_pack
    from clipterm.packs import get_pack_spec
    from clipterm.sampling import sample

    spec = get_pack_spec(pack_path)
    cfg = make_config(spec, prompt=prompt, n=N, batch=BATCH, seed=SEED, **fields)
    pack = load_pack(pack_path, device="cpu")
    with one_thread():
        return sample(pack, cfg).images


def pack_and_prompt(kind: str, tiny_pack: str) -> tuple[str, str]:
    return (tiny_pack, "one") if kind == "tiny" else ("digits", "seven")


def main() -> None:
    import tempfile

    sys.path.insert(0, str(HERE.parent.parent))
    from tests.conftest import build_tiny_models

    with tempfile.TemporaryDirectory() as tmp:
        tiny = str(build_tiny_models(Path(tmp)))
        arrays = {name: run_case(*pack_and_prompt(kind, tiny), fields)
                  for name, (kind, fields) in CASES.items()}
    np.savez_compressed(HERE / "golden.npz", torch=np.array(torch.__version__), **arrays)
    print(f"wrote {len(arrays)} cases to {HERE / 'golden.npz'}")


if __name__ == "__main__":
    main()
