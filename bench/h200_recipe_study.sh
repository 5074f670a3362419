#!/usr/bin/env bash
# Issue 29's H200 studies, one after another in one folder (default /tmp/h200): the recipe
# screen (sweeps/recipe_h200.py, three cells at 120 s, study recipe-h200-120s), then its winner
# (the cell of lowest bits per byte, written into sweeps/recipe_h200_final.py's CELL) at 300 s,
# seed 0 (study recipe-h200-300s), then re-run with seeds 1 and 2 (--repeat-top 1 --seeds 3).
# Each step resumes: a study already holding its trials runs none again. From the repository
# root (of a copy the run may edit: the winner is written into it) with torch, tokenizers, numpy, optuna and sqlalchemy importable and PYTHONPATH=.; about
# 23 minutes on one H200; meant to run detached (nohup ... &), its log in DIR/log.
set -euo pipefail
dir=${1:-/tmp/h200}
mkdir -p "$dir"
db="sqlite:///$dir/h200.db"
common=(--device cuda --data sample --max-stories 27283 --storage "$db")
python -m study.run --sweep recipe_h200 --study-name recipe-h200-120s --trials 3 --budget 120 \
    --keep none "${common[@]}"
cell=$(python - "$db" <<'PY'
import sys

import optuna

study = optuna.load_study(study_name="recipe-h200-120s", storage=sys.argv[1])
best = min(
    (t for t in study.trials if t.state.name == "COMPLETE"),
    key=lambda t: t.user_attrs.get("val_bpb", t.value),
)
print(best.params["cell"])
PY
)
echo "screen winner: $cell"
sed -i "s/^CELL = .*/CELL = \"$cell\"/" sweeps/recipe_h200_final.py
final=(--sweep recipe_h200_final --study-name recipe-h200-300s --budget 300 --keep best)
python -m study.run "${final[@]}" --trials 1 "${common[@]}"
python -m study.run "${final[@]}" --repeat-top 1 --seeds 3 "${common[@]}"
echo done
