#!/usr/bin/env bash
# Issue 28's measurements on one CUDA GPU, run from the repository root, about 9 minutes:
#   OUT=/tmp/out bench/h200_compile.sh
# (a) a study of three 60 s trials of the default model, then one of three 10 s trials of it at
#     depths 2, 6 and 3 (new depths at a width seen before), with each trial's compile seconds
#     inside the budget and seconds outside it as stored with the trial (needs optuna and
#     sqlalchemy importable);
# (b) python -m bench at 1M and 2M, all columns (a)-(d) in one run;
# (c) torch.profiler's kernels of the trainer's 1M step, grouped (matmul, attention, head+CE, ...);
# (d) the CUDA tests of the captured step and of the head kernel compiled beside the trunk;
# (e) with time left, python -m bench.compile_profile's first-trial compile seconds with fresh
#     caches, with the head kernel compiled beside the trunk (the default), without, and with
#     flash attention instead of cuDNN's (no attention graph to build per shape).
# Each part runs under its own time limit, cut to end by DEADLINE seconds from the start (560),
# and a failure stops none of the others; each part writes OUT/<part>.log (8 files at most come
# back), and OUT/summary.txt says how each part ended and how long it took. Its studies and their
# compile caches live in a fresh /tmp folder.
set -uo pipefail
OUT=${OUT:-/tmp/h200-compile-out}
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/h200-compile.XXXXXX)  # the studies' database and caches: fresh each run
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
summary="$OUT/summary.txt"

DEADLINE=${DEADLINE:-560}  # seconds from the start by which every part has ended

part() {  # part NAME SECONDS COMMAND...: run it under a time limit, output to OUT/NAME.log
    local name=$1 limit=$2 began=$SECONDS status
    shift 2
    if ((DEADLINE - SECONDS < limit)); then limit=$((DEADLINE - SECONDS)); fi
    if ((limit < 20)); then
        echo "$name: skipped, ${limit}s left before the deadline" | tee -a "$summary"
        return
    fi
    echo "== $name (limit ${limit}s): $*"
    timeout -k 10 "$limit" "$@" >>"$OUT/$name.log" 2>&1
    status=$?
    echo "$name: exit $status after $((SECONDS - began))s" | tee -a "$summary"
}

seconds_per_trial() {  # seconds_per_trial STORAGE STUDY: the stored attributes of each trial
    timeout 60 "$PY" - "$1" "$2" <<'PY'
import sys

from analysis.load import trials_table

table = trials_table(sys.argv[1], sys.argv[2])
cols = ["number", "state", "n_layer", "d_model", "compile_seconds", "outside_seconds",
        "train_seconds", "tokens_per_second"]
print(table[[c for c in cols if c in table.columns]].to_string(index=False))
PY
}

{
    date -u
    git log -1 --oneline 2>/dev/null
    "$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
} >"$summary" 2>&1

storage="sqlite:///$WORK/study.db"
study=(--device cuda --data sample --storage "$storage" --cache-dir "$WORK/cache" --keep none)
part study 250 "$PY" -m study.run "${study[@]}" --trials 3 --budget 60 \
    --sweep bench/sweeps/default_model.py --study-name default-model-h200-60s
seconds_per_trial "$storage" default-model-h200-60s 2>&1 | tee -a "$OUT/study.log" >>"$summary"
part depths 70 "$PY" -m study.run "${study[@]}" --trials 3 --budget 10 \
    --sweep bench/sweeps/depths.py --study-name depths-h200-10s
seconds_per_trial "$storage" depths-h200-10s 2>&1 | tee -a "$OUT/depths.log" >>"$summary"

part bench 130 "$PY" -m bench --sizes 1M,2M --time-limit 100 --json "$OUT/bench.json"
part profile 40 "$PY" -m bench.profile --size 1M --steps 5 --rows 30 --only trainer
# The CUDA tests of the compiled, captured step (regional compilation inside the CUDA graph) and
# of the head's Triton kernel compiled in a thread beside the trunk.
part gputests 80 "$PY" -m pytest -q -x -p no:cacheprovider \
    tests/test_step.py::test_cuda_graph_step_matches_eager_step \
    tests/test_switches.py::test_switches_compile_and_capture_on_cuda \
    tests/test_kernels.py::test_fast_step_loss_and_gradients_match_the_plain_model \
    tests/test_kernels.py::test_the_head_compiled_behind_is_the_kernel_the_step_runs \
    tests/test_warm.py::test_warm_compiler_runs_once_per_process_on_cuda
first_trial() {  # first_trial NAME [ARGS...]: compile seconds of a first trial, fresh caches
    local name=$1 d
    shift
    d=$(mktemp -d "$WORK/compile.XXXXXX")
    part "$name" 45 env TORCHINDUCTOR_CACHE_DIR="$d/inductor" TRITON_CACHE_DIR="$d/triton" \
        TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1 \
        "$PY" -m bench.compile_profile --no-profile "$@"
}
first_trial compile
first_trial compile --variant inline:head_behind=0
first_trial compile --variant flash:sdpa=flash
echo "total ${SECONDS}s" | tee -a "$summary"
