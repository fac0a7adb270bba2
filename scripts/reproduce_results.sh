#!/usr/bin/env bash
# Regenerate docs/RESULTS.md and docs/img/results-*.png: the poster's table on the digits pack
# (4 methods x 3 seeds x 100 samples, KID on judge features, judged share, time), the ablation
# sweeps, plots and sample grids. Extra arguments go to scripts/reproduce_results.py
# (--quick for a smoke test; --model cifar10 --preset poster ... on a GPU, see docs/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then PY=python3; fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}   # the digits pack is embedded: nothing to download
export CLIPTERM_NO_GRAPHICS=1

# One torch thread by default: on a shared 2-core box two threads measured ~3x slower (threads
# wait on each other while other jobs hold a core). CLIPTERM_THREADS=2 (or --threads 2) overrides.
THREADS=${CLIPTERM_THREADS:-1}

start=$(date +%s)
"$PY" scripts/reproduce_results.py --threads "$THREADS" "$@"
echo "reproduce_results: done in $(( $(date +%s) - start )) s" >&2
