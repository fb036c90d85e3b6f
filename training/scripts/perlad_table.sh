#!/usr/bin/env bash
# The PerlAD evaluation table, end to end (issue 5): training suites on procedural towns Proc1 and Proc2, the
# expert's dataset (Proc2 with recovery noise), the pipeline (il -> wm -> dagger -> perlad -> perlad_logreplay:
# RL starts from the states the imitation planner reaches itself on the training suites), then
# closed-loop evaluation of expert / il / perlad / perlad_logreplay on
#   (a) a held-out all-types suite on Proc0 (no training route came from Proc0), and
#   (b) the Bench2Drive routes whose towns are in $MAPS (skipped with a message when absent).
# Usage: [SEEDS="0 1 2"] training/scripts/perlad_table.sh [OUT] [SHARED]   (about 2 h on 2 CPU cores)
set -euo pipefail
OUT=${1:-results/perlad}
SHARED=${2:-../shared}
DS=.venv/bin/drive-stack
SEED=${SEED:-0}  # training seed
mkdir -p "$OUT"
# the suites are committed with the table (results/perlad/suite_*.xml): made only where missing, so a rerun
# drives the same routes (a newer `routes suite` may place them differently or add types)
for t in 1 2; do
  [ -f "$OUT/suite_train_p$t.xml" ] || $DS routes suite --town Proc$t --types all+dos --n 2 --seed $t --out "$OUT/suite_train_p$t.xml"
done
[ -f "$OUT/suite_eval_p0.xml" ] || $DS routes suite --town Proc0 --types all+dos --n 2 --seed 0 --out "$OUT/suite_eval_p0.xml"
$DS collect --routes "$OUT/suite_train_p1.xml" --out "$OUT/data_p1" --workers 2 --no-anno
$DS collect --routes "$OUT/suite_train_p2.xml" --out "$OUT/data_p2" --workers 2 --no-anno \
    --steer-noise 0.15 --speed-noise 1.5 --seed 100
$DS train pipeline --data "$OUT/data_p1,$OUT/data_p2" --out "$OUT/pipeline" --models-out "$OUT/models" \
    --dagger-routes "$OUT/suite_train_p1.xml,$OUT/suite_train_p2.xml" \
    --il-epochs 12 --wm-epochs 12 --rl-updates 200 --seed "$SEED"
export DRIVE_STACK_MODELS="$OUT/models"
# the learned policies under several evaluation seeds (background traffic and light phases differ; a single
# seed moves a policy's DS by several points), the expert under seed 0; tables of seed means +- std
SEEDS=${SEEDS:-"0 1 2"}
sfx() { [ "$1" = 0 ] && echo "" || echo "_s$1"; }
runs() {  # runs SUITE -> "expert=...,il=a+b+c,..."
  local r="expert=$OUT/eval_$1_expert"
  for p in il perlad perlad_logreplay; do
    local d=""
    for s in $SEEDS; do d="${d:+$d+}$OUT/eval_$1_$p$(sfx "$s")"; done
    r="$r,$p=$d"
  done
  echo "$r"
}
$DS eval --routes "$OUT/suite_eval_p0.xml" --policy expert --out "$OUT/eval_proc0_expert" --workers 2 --seed 0
for s in $SEEDS; do
  for p in il perlad perlad_logreplay; do
    $DS eval --routes "$OUT/suite_eval_p0.xml" --policy $p --out "$OUT/eval_proc0_$p$(sfx "$s")" --workers 2 --seed "$s"
  done
done
$DS eval-table --title "held-out procedural suite (Proc0, all types + DOS), seeds $SEEDS (expert: seed 0)" \
    --out "$OUT/table_proc0.md" --runs "$(runs proc0)"
if [ -f "$SHARED/bench2drive/bench2drive220.xml" ] && [ -d "$SHARED/carla_maps" ]; then
  B2D=(--routes "$SHARED/bench2drive/bench2drive220.xml" --maps-dir "$SHARED/carla_maps" --workers 2)
  $DS eval "${B2D[@]}" --policy expert --out "$OUT/eval_b2d_expert" --seed 0
  for s in $SEEDS; do
    for p in il perlad perlad_logreplay; do
      $DS eval "${B2D[@]}" --policy $p --out "$OUT/eval_b2d_$p$(sfx "$s")" --seed "$s"
    done
  done
  $DS eval-table --title "Bench2Drive routes in $SHARED/carla_maps, seeds $SEEDS (expert: seed 0)" \
      --out "$OUT/table_b2d.md" --runs "$(runs b2d)"
else
  echo "no $SHARED/bench2drive or $SHARED/carla_maps: the Bench2Drive table is skipped"
fi
