"""Measure the digits pack's guidance quality over a few scales (used to pick its defaults).

    python scripts/tune_digits.py --methods contrastive,spherical --scales 0.1,0.3,1 --n 50

Prints one row per (method, scale): judged share of the target, the judge's mean confidence,
mean CLIP p(target), seconds. The numbers chosen go into clipterm/packs/digits.json; the pack
manifest's "quality" entry is then measured by ``scripts/reproduce_results.sh --write-manifest``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import clipterm
from clipterm.data import DIGIT_NAMES, real_digit_images
from clipterm.metrics import judge_scores


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--methods", default="contrastive,spherical")
    ap.add_argument("--scales", default="0.1,0.3,1.0", help="comma list, or 'default'")
    ap.add_argument("--prompt", default="seven")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--grad-norm", default=None, help="rms | none (default: the pack's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    pack = clipterm.load_pack("digits", device="cpu")
    target = DIGIT_NAMES.index(args.prompt)
    real = judge_scores(pack.judge, real_digit_images(target, split="test"), target)
    print(f"real test {args.prompt}s: share {real['target_share']:.2f} "
          f"confidence {real['confidence']:.3f}")
    rows = []
    for method in args.methods.split(","):
        if method in ("uncond", "optimize") or args.scales == "default":
            scales: list[float | None] = [None]  # the pack's default
        else:
            scales = [float(s) for s in args.scales.split(",")]
        for scale in scales:
            cfg = clipterm.make_config(pack.spec, prompt=args.prompt, method=method, n=args.n,
                                       steps=args.steps, scale=scale, seed=args.seed,
                                       grad_norm=args.grad_norm)
            t0 = time.perf_counter()
            res = clipterm.sample(pack, cfg)
            secs = time.perf_counter() - t0
            js = judge_scores(pack.judge, res.images, target)
            row = {"method": method, "scale": cfg.scale, "grad_norm": cfg.grad_norm,
                   "steps": cfg.steps, "n": args.n,
                   "judged_share": round(js["target_share"], 3),
                   "judge_confidence": round(js["confidence"], 3),
                   "mean_target_prob": round(res.mean_target_prob, 3),
                   "histogram": js["histogram"], "seconds": round(secs, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"real": real, "rows": rows}, indent=2, default=float))
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
