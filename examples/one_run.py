"""One guided run with the Python API: 16 sevens from the embedded digits pack.

    python examples/one_run.py [--model digits] [--out out/]
"""

from __future__ import annotations

import argparse

import clipterm


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="digits")
    ap.add_argument("--prompt", default=None)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", default="out")
    args = ap.parse_args(argv)

    pack = clipterm.load_pack(args.model, device="auto")
    cfg = clipterm.make_config(pack.spec, prompt=args.prompt, method="contrastive", n=args.n,
                               steps=args.steps)

    def on_event(ev: clipterm.StepEvent) -> None:
        if ev.step == ev.total:
            print(f"batch {ev.batch_index + 1}/{ev.n_batches} done, "
                  f"p(target) = {float(ev.probs[:, 0].mean()):.2f}")

    result = clipterm.sample(pack, cfg, on_event=on_event)
    run_dir = clipterm.write_run(result, args.out, pack.name)
    print(f"{len(result.images)} samples, mean p({cfg.prompt!r}) = {result.mean_target_prob:.3f}")
    print(f"written to {run_dir}")


if __name__ == "__main__":
    main()
