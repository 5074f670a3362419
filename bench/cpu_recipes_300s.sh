#!/usr/bin/env bash
# Issue 24's comparisons on an idle 2-core CPU: today's best CPU configuration (the shipped
# ladder-dense-cpu-300s trial 3, 0.25 M: 2 x 48, 1 head, rope, SwiGLU, lr 6.93e-3, weight decay
# 0.1, the whole bundled sample; its flags are those `python -m analysis.trials --storage
# sqlite:///study.db --study-name ladder-dense-cpu-300s --config 3` prints) trained 300 s per
# variant, seed 0: (a) Muon, (b) vocabulary 1024 and 2048, (c) ReLU^2 + RMSNorm + QK-norm,
# (d) warmup-stable-decay. Every run, the base too, is scored on the same held-out text (the
# first whole held-out stories of at least 262,144 bytes, --eval-bytes), so the vocabularies
# compare in bits per byte; the base's number is therefore not the shipped trial's (65,536
# tokens of vocabulary 4096), and its seed-0 luck is known to be large (docs/results.md).
# From the repository root with PYTHONPATH=.; nothing else may run on the machine meanwhile:
#   bench/cpu_recipes_300s.sh [OUTDIR] [VARIANT...]
# OUTDIR defaults to $OUT, else results/cpu-recipes-300s; the variants to all six (about 32 min).
set -uo pipefail
out=${1:-${OUT:-results/cpu-recipes-300s}}
(($# > 0)) && shift
(($# == 0)) && set -- base muon vocab1024 vocab2048 relu2-rmsnorm-qknorm wsd
BEST="--device cpu --n-layer 2 --d-model 48 --n-head 1 --pos rope --mlp swiglu \
--lr 0.006928203230275509 --weight-decay 0.1 --max-stories 27283 --eval-bytes 262144"
exec bench/compare_recipes.sh 300 "$out" "$BEST" "$@"
