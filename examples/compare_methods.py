"""Compare methods from the same starting noise x_T, with the Python API.

    python examples/compare_methods.py [--model digits] [--n 16]
"""

from __future__ import annotations

import argparse

import clipterm


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="digits")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--methods", default="uncond,spherical,contrastive")
    args = ap.parse_args(argv)

    pack = clipterm.load_pack(args.model, device="auto")
    scores: dict[str, float] = {}
    print(f"{'method':<12} {'seconds':>8} {'mean p(target)':>15}")
    for method in args.methods.split(","):
        cfg = clipterm.make_config(pack.spec, method=method, n=args.n, steps=args.steps, seed=0)
        result = clipterm.sample(pack, cfg)
        scores[method] = result.mean_target_prob
        print(f"{method:<12} {result.seconds:>8.2f} {result.mean_target_prob:>15.3f}")
    return scores


if __name__ == "__main__":
    main()
