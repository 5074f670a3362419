#!/usr/bin/env bash
# Held-out bits per byte of one model under each recipe switch, same seed, one after another on
# this machine: bench/compare_recipes.sh BUDGET OUTDIR BASE_FLAGS VARIANT...
# A VARIANT is name=flags ("base=" for the model as given). Each writes OUTDIR/NAME.json.
set -uo pipefail
budget=$1 out=$2 base=$3; shift 3
mkdir -p "$out"
for variant in "$@"; do
    name=${variant%%=*} flags=${variant#*=}
    # shellcheck disable=SC2086  # the flags are words
    python -m study.train --budget "$budget" --data sample --seed 0 $base $flags \
        --json "$out/$name.json" >"$out/$name.log" 2>&1 || echo "$name failed: see $out/$name.log"
    python - "$out/$name.json" "$name" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:>14}  bpb {r['val_bpb']:.4f}  ppl {r['val_ppl']:.3f}  "
      f"tok/s {r['tokens_per_second']:,.0f}  tokens {r['tokens_seen']:,}")
PY
done
