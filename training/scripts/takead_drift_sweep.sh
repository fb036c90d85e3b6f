#!/usr/bin/env bash
# Issue 19, validation only: do TakeAD's rounds keep improving with an anchor against their drift? From the
# committed perlad, ROUNDS rounds each of: the current best recipe (DAgger on the disengagement states and DPO at
# lr 1e-5, no NLL, no base data) and that plus --kl-initial W, --dagger-scope latest, and both. Every round's planner
# is evaluated on the Proc3 validation suite (results/takead/suite_p3.xml; never a reported set); the per-round DS
# of each variant goes to OUT/sweep.md. Usage: [ROUNDS=4] [W=1.0] [SEED=0] training/scripts/takead_drift_sweep.sh [OUT]
# (about 40 min per variant on 2 CPU cores)
set -euo pipefail
OUT=${1:-results/takead/drift}
DS=${DS:-.venv/bin/drive-stack}
ROUNDS=${ROUNDS:-4}
W=${W:-1.0}
SEED=${SEED:-0}
T=results/takead
mkdir -p "$OUT"
[ -f "$T/data_p1/index.json" ] || $DS collect --routes "$T/suite_p1.xml" --out "$T/data_p1" --workers 2 --no-anno --branches 0
BASE="--lr 1e-5 --dpo-lr 1e-5 --w-nll 0 --no-aggregate-base"
declare -A VARIANTS=(
  [base]=""
  [kl]="--kl-initial $W"
  [latest]="--dagger-scope latest"
  [kl_latest]="--kl-initial $W --dagger-scope latest"
)
for v in base kl latest kl_latest; do
  # shellcheck disable=SC2086
  $DS train takead --data "$T/data_p1" --init models/perlad/planner.onnx --routes "$T/suite_p2.xml" \
      --eval-routes "$T/suite_p3.xml" --out "$OUT/$v" --rounds "$ROUNDS" --seed "$SEED" --resume $BASE ${VARIANTS[$v]}
done
{
  echo "| variant | $(seq -s ' | ' 0 "$ROUNDS" | sed 's/\([0-9]\+\)/round \1/g') |"
  echo "|---$(printf '|---%.0s' $(seq 0 "$ROUNDS"))|"
  for v in base kl latest kl_latest; do
    python3 - "$OUT/$v/takead.json" "$v" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
rows = sorted(rep["rounds"], key=lambda r: r["round"])
print(f"| {sys.argv[2]} | " + " | ".join(f"{r['eval']['driving_score']:.2f}" for r in rows if "eval" in r) + " |")
PY
  done
} > "$OUT/sweep.md"
cat "$OUT/sweep.md"
