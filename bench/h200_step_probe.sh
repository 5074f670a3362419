#!/usr/bin/env bash
# Issue 28's probe on one CUDA GPU, run from the repository root, under 9 minutes:
#   OUT=/tmp/out bench/h200_step_probe.sh
# (1) where a first trial's compile seconds go (python -m bench.compile_profile, the default
#     model with fresh compile caches, then depth 2 at its width from those caches);
# (2) the 1M trainer step's kernels (python -m bench.profile, 45 kernels, grouped);
# (3) python -m bench at 1M, then at 2M, columns a and d, with the variants that may pay:
#     the trunk compiled whole, the embedding left eager, Inductor's coordinate-descent tuning,
#     flash attention instead of cuDNN's, Inductor's max-autotune (last: it tunes longest).
# Each part under its own time limit, all cut to end by DEADLINE seconds from the start; each
# writes OUT/<part>.log, OUT/summary.txt says how each ended.
set -uo pipefail
OUT=${OUT:-/tmp/h200-probe-out}
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/h200-probe.XXXXXX)
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
summary="$OUT/summary.txt"
DEADLINE=${DEADLINE:-530}

part() {  # part NAME SECONDS COMMAND...: run it under a time limit, output to OUT/NAME.log
    local name=$1 limit=$2 began=$SECONDS status
    shift 2
    if ((DEADLINE - SECONDS < limit)); then limit=$((DEADLINE - SECONDS)); fi
    if ((limit < 20)); then
        echo "$name: skipped, ${limit}s left before the deadline" | tee -a "$summary"
        return
    fi
    timeout -k 10 "$limit" "$@" >>"$OUT/$name.log" 2>&1
    status=$?
    echo "$name: exit $status after $((SECONDS - began))s" | tee -a "$summary"
}

{
    date -u
    git log -1 --oneline 2>/dev/null
    "$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
} >"$summary" 2>&1

caches=(env TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" TRITON_CACHE_DIR="$WORK/triton"
    TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1)
part compile 120 "${caches[@]}" "$PY" -m bench.compile_profile --rows 50
part compile 60 "${caches[@]}" "$PY" -m bench.compile_profile --rows 30 --n-layer 2
part profile 60 "$PY" -m bench.profile --size 1M --steps 5 --rows 45 --only trainer
variants=(--variant whole:regional=0 --variant eagerembed:embed_region=0
    --variant coordesc:inductor.coordinate_descent_tuning=1 --variant flash:sdpa=flash
    --variant autotune:autotune=1)
part bench 170 "$PY" -m bench --sizes 1M --columns a,d "${variants[@]}" --json "$OUT/bench-1M.json"
part bench 170 "$PY" -m bench --sizes 2M --columns a,d "${variants[@]}" --json "$OUT/bench-2M.json"
echo "total ${SECONDS}s" | tee -a "$summary"
