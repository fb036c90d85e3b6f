#!/usr/bin/env bash
# The TakeAD table (issue 19): post-training rounds on the expert's takeovers, then every round's planner evaluated
# on a held-out procedural suite (Proc5: no training or validation route came from it) and on the Bench2Drive
# routes whose towns are in $SHARED/carla_maps (skipped with a message when absent).
#   base data      : the expert on an all-types suite on Proc1 (DAgger aggregates with it)
#   TakeAD routes  : an all-types suite on Proc2 (the planner drives them with the expert in shadow mode)
#   validation     : an all-types suite on Proc3 (evaluated after every round; the settings were chosen on it)
# START names the committed planner the rounds start from (models/<START>/planner.onnx, or INIT: any planner.onnx
# with its manifest, e.g. the pipeline's il_bc: START=il_bc INIT=PIPE/models/il_bc/planner.onnx); training seeds
# TRAIN_SEEDS; every round's planner is evaluated under evaluation seeds EVAL_SEEDS; ABLATIONS (dagger, dpo) run
# under the first training seed. Tables: mean +- std over training x evaluation seeds.
# Usage: [START=il] [INIT=...] [ROUNDS=4] [TRAIN_SEEDS="0 1"] [EVAL_SEEDS="0"] [ABLATIONS="dagger dpo"] \
#        training/scripts/takead_table.sh [OUT] [SHARED]        (about 40 min per training run on 2 CPU cores)
set -euo pipefail
OUT=${1:-results/takead}
SHARED=${2:-../shared}
DS=${DS:-.venv/bin/drive-stack}
START=${START:-il}
INIT=${INIT:-models/$START/planner.onnx}
ROUNDS=${ROUNDS:-4}
TRAIN_SEEDS=${TRAIN_SEEDS:-"0 1"}
EVAL_SEEDS=${EVAL_SEEDS:-"0"}
ABLATIONS=${ABLATIONS-"dagger dpo"}  # ABLATIONS="" runs none
EVAL_ROUNDS=${EVAL_ROUNDS:-$(seq -s " " 0 "$ROUNDS")}  # the rounds whose planners the tables evaluate
EXTRA=${EXTRA:-}  # more `train takead` options, e.g. "--drop-waiting"
mkdir -p "$OUT"
# the suites are committed with the table: made only where missing, so a rerun drives the same routes
for t in 1 2 3 5; do
  [ -f "$OUT/suite_p$t.xml" ] || $DS routes suite --town Proc$t --types all --n 1 --seed $t --out "$OUT/suite_p$t.xml"
done
[ -f "$OUT/data_p1/index.json" ] || $DS collect --routes "$OUT/suite_p1.xml" --out "$OUT/data_p1" --workers 2 --no-anno --branches 0
FIRST=${TRAIN_SEEDS%% *}
run() {  # run NAME SEED ABLATION
  $DS train takead --data "$OUT/data_p1" --init "$INIT" --routes "$OUT/suite_p2.xml" \
      --eval-routes "$OUT/suite_p3.xml" --out "$OUT/$1" --rounds "$ROUNDS" --seed "$2" --ablation "$3" --resume $EXTRA
}
for s in $TRAIN_SEEDS; do run "${START}_t$s" "$s" both; done
for a in $ABLATIONS; do run "${START}_${a}_t$FIRST" "$FIRST" "$a"; done
sfx() { [ "$1" = 0 ] && echo "" || echo "_s$1"; }
evaluate() {  # evaluate SUITE ARGS...: every round's planner of the TakeAD runs, the last round's of the ablations
  local suite=$1 rounds; shift
  for d in "$OUT"/"$START"_*t*/; do
    rounds=$EVAL_ROUNDS
    case "$(basename "$d")" in "${START}"_t*) ;; *) rounds=$ROUNDS ;; esac  # the table shows an ablation's last round
    for r in $rounds; do
      m="$d/round_$r/model/planner.onnx"
      [ -f "$m" ] || continue
      for e in $EVAL_SEEDS; do
        o="$d/eval_${suite}_r$r$(sfx "$e")"
        [ -f "$o/summary.json" ] || $DS eval "$@" --policy perlad --model "$m" --out "$o" --seed "$e" > /dev/null
      done
    done
  done
}
runs() {  # runs SUITE -> "rule=...,round 0=a+b,...,round R=a+b,ablation dagger (round R)=..."
  local suite=$1 r d row
  row="rule=$OUT/eval_${suite}_rule"
  for r in $EVAL_ROUNDS; do
    d=""
    for s in $TRAIN_SEEDS; do for e in $EVAL_SEEDS; do d="${d:+$d+}$OUT/${START}_t$s/eval_${suite}_r$r$(sfx "$e")"; done; done
    row="$row,$START round $r=$d"
  done
  for a in $ABLATIONS; do
    d=""
    for e in $EVAL_SEEDS; do d="${d:+$d+}$OUT/${START}_${a}_t$FIRST/eval_${suite}_r$ROUNDS$(sfx "$e")"; done
    row="$row,$a only (round $ROUNDS)=$d"
  done
  echo "$row"
}
P5=(--routes "$OUT/suite_p5.xml" --workers 2)
[ -f "$OUT/eval_p5_rule/summary.json" ] || $DS eval "${P5[@]}" --policy rule --out "$OUT/eval_p5_rule" --seed 0 > /dev/null
evaluate p5 "${P5[@]}"
$DS eval-table --title "held-out procedural suite (Proc5, all types), TakeAD from $START, training seeds $TRAIN_SEEDS x eval seeds $EVAL_SEEDS (rule: seed 0)" \
    --infractions --out "$OUT/table_${START}_p5.md" --runs "$(runs p5)"
if [ -f "$SHARED/bench2drive/bench2drive220.xml" ] && [ -d "$SHARED/carla_maps" ]; then
  B2D=(--routes "$SHARED/bench2drive/bench2drive220.xml" --maps-dir "$SHARED/carla_maps" --workers 2)
  [ -f "$OUT/eval_b2d_rule/summary.json" ] || $DS eval "${B2D[@]}" --policy rule --out "$OUT/eval_b2d_rule" --seed 0 > /dev/null
  evaluate b2d "${B2D[@]}"
  $DS eval-table --title "Bench2Drive routes in $SHARED/carla_maps, TakeAD from $START, training seeds $TRAIN_SEEDS x eval seeds $EVAL_SEEDS (rule: seed 0)" \
      --infractions --out "$OUT/table_${START}_b2d.md" --runs "$(runs b2d)"
else
  echo "no $SHARED/bench2drive or $SHARED/carla_maps: the Bench2Drive table is skipped"
fi
