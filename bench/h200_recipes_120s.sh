#!/usr/bin/env bash
# Issue 24's comparisons on one H200: today's GPU best (regularise-h200-300s trial 7, 5.0 M:
# 5 x 256, 4 heads, rope, SwiGLU, lr 3e-3, weight decay 1.0, dropout 0.2, the whole bundled
# sample) trained 120 s per variant, seed 0, every run scored on the same held-out text (the
# first whole held-out stories of at least 262,144 bytes, --eval-bytes), so the vocabularies
# compare in bits per byte. From the repository root, with torch, tokenizers and numpy, and
# PYTHONPATH=. and OUT set; at most 3 variants per call (each run costs about 140-150 s with
# compile, evaluation and sample, so 3 stay under 560 s of wall time):
#   bench/h200_recipes_120s.sh base vocab1024 vocab2048
#   bench/h200_recipes_120s.sh relu2-rmsnorm-qknorm wsd muon-lr0.01
#   bench/h200_recipes_120s.sh muon-lr0.02 muon-lr0.04 embed-shortcut
#   bench/h200_recipes_120s.sh value-embeds
# Each run writes $OUT/NAME.json and prints one summary line (bench/compare_recipes.sh); the logs
# stay in /tmp/recipe-logs (a call brings back 8 files at most), the tail of a failed run's is
# printed. Variant names: bench/compare_recipes.sh --list.
set -uo pipefail
if (($# == 0 || $# > 3)); then
    echo "usage: bench/h200_recipes_120s.sh VARIANT [VARIANT [VARIANT]] (1 to 3 per call)" >&2
    exit 2
fi
if [[ -z ${OUT:-} ]]; then
    echo "error: set OUT to the folder the results go to" >&2
    exit 2
fi
BEST="--device cuda --n-layer 5 --d-model 256 --n-head 4 --pos rope --mlp swiglu --lr 3e-3 \
--weight-decay 1.0 --dropout 0.2 --max-stories 27283 --eval-bytes 262144"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader || true
LOG_DIR=/tmp/recipe-logs exec bench/compare_recipes.sh 120 "$OUT" "$BEST" "$@"
