#!/usr/bin/env bash
# Held-out bits per byte of one model under each recipe switch, same seed, one after another on
# this machine: bench/compare_recipes.sh BUDGET OUTDIR BASE_FLAGS VARIANT...
# A VARIANT is name=flags ("base=" for the model as given) or one of the names `variant_flags`
# knows (bench/compare_recipes.sh --list prints them). Every name is checked before the first
# run. Each run writes OUTDIR/NAME.json, its log LOG_DIR/NAME.log (LOG_DIR: default OUTDIR), and
# prints one summary line. Runs that compare vocabularies need --eval-bytes in BASE_FLAGS, so
# that every run scores the same held-out text (docs/usage.md).
set -uo pipefail

variant_flags() {  # the study.train flags of a named variant; status 1 for an unknown name
    case $1 in
        base) echo "" ;;
        vocab1024) echo "--vocab-size 1024" ;;
        vocab2048) echo "--vocab-size 2048" ;;
        relu2-rmsnorm-qknorm) echo "--mlp relu2 --norm rmsnorm --qk-norm" ;;
        wsd) echo "--schedule wsd" ;;
        muon) echo "--optimizer muon" ;;
        muon-lr0.01) echo "--optimizer muon --muon-lr 0.01" ;;
        muon-lr0.02) echo "--optimizer muon --muon-lr 0.02" ;;
        muon-lr0.04) echo "--optimizer muon --muon-lr 0.04" ;;
        embed-shortcut) echo "--embed-shortcut" ;;
        value-embeds) echo "--value-embeds 2" ;;
        *) return 1 ;;
    esac
}
NAMES="base vocab1024 vocab2048 relu2-rmsnorm-qknorm wsd muon muon-lr0.01 muon-lr0.02 muon-lr0.04 embed-shortcut value-embeds"

if [[ ${1:-} == --list ]]; then
    for name in $NAMES; do echo "$name: $(variant_flags "$name")"; done
    exit 0
fi
if (($# < 4)); then
    echo "usage: bench/compare_recipes.sh BUDGET OUTDIR BASE_FLAGS VARIANT... (--list: the names)" >&2
    exit 2
fi
budget=$1 out=$2 base=$3; shift 3
logs=${LOG_DIR:-$out}
for variant in "$@"; do  # refuse a bad name before anything runs
    if [[ $variant != *=* ]] && ! variant_flags "$variant" >/dev/null; then
        echo "error: unknown variant $variant; give name=flags or one of: $NAMES" >&2
        exit 2
    fi
done
mkdir -p "$out" "$logs"
for variant in "$@"; do
    if [[ $variant == *=* ]]; then
        name=${variant%%=*} flags=${variant#*=}
    else
        name=$variant flags=$(variant_flags "$variant")
    fi
    # shellcheck disable=SC2086  # the flags are words
    python -m study.train --budget "$budget" --data sample --seed 0 $base $flags \
        --json "$out/$name.json" >"$logs/$name.log" 2>&1 || {
        echo "$name failed: see $logs/$name.log"
        tail -n 5 "$logs/$name.log"
        continue
    }
    python - "$out/$name.json" "$name" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:>22}  bpb {r['val_bpb']:.4f}  ppl {r['val_ppl']:.3f}  "
      f"tok/s {r['tokens_per_second']:,.0f}  tokens {r['tokens_seen']:,}  steps {r['steps']:,}  "
      f"params {r['params']:,}  held-out {r.get('eval_bytes') or 0:,} bytes", flush=True)
PY
done
