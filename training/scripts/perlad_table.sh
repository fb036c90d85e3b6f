#!/usr/bin/env bash
# The PerlAD evaluation table, end to end (issue 5): training suites on procedural towns Proc1 and Proc2, the
# expert's dataset (Proc2 with recovery noise), the pipeline (il -> wm -> dagger -> perlad -> perlad_logreplay:
# RL starts from the states the imitation planner reaches itself on the training suites), then
# closed-loop evaluation of expert / il / perlad / perlad_logreplay on
#   (a) a held-out all-types suite on Proc0 (no training route came from Proc0), and
#   (b) the Bench2Drive routes whose towns are in $MAPS (skipped with a message when absent).
# RL is trained under two seeds (RL_SEEDS) and every learned policy evaluated under three (SEEDS); the RL settings
# (kl_ref 0.03) were chosen on a separate validation suite (Proc3) by training/scripts/perlad_rl_sweep.sh.
# Usage: [SEEDS="0 1 2"] [RL_SEEDS="0 1"] training/scripts/perlad_table.sh [OUT] [SHARED]   (about 3 h on 2 CPU cores)
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
    --il.epochs 12 --wm.epochs 12 --rl.updates 200 --seed "$SEED"
# RL is trained under RL_SEEDS (the pipeline's is the first): the second one starts from the same imitation
# planner, world model and DAgger states; its models go to $OUT/models_t<seed>
RL_SEEDS=${RL_SEEDS:-"$SEED 1"}
mdir() { [ "$1" = "$SEED" ] && echo "$OUT/models" || echo "$OUT/models_t$1"; }
for t in $RL_SEEDS; do
  [ "$t" = "$SEED" ] && continue
  mkdir -p "$(mdir $t)" && cp -r "$OUT/models/il" "$OUT/models/world_model" "$(mdir $t)/"
  for p in perlad perlad_logreplay; do
    ag=$([ $p = perlad ] && echo world_model || echo log_replay)
    $DS train rl --data "$OUT/pipeline/dagger/data_0,$OUT/pipeline/dagger/data_1" --init "$OUT/pipeline/il/ckpt.pt" \
        --world-model "$OUT/pipeline/wm/ckpt.pt" --agents $ag --updates 200 --seed "$t" --out "$OUT/pipeline/${p}_t$t"
    $DS export --ckpt "$OUT/pipeline/${p}_t$t/ckpt.pt" --out "$(mdir $t)/$p" --name $p
  done
done
# the learned policies under several evaluation seeds (background traffic and light phases differ; a single
# seed moves a policy's DS by several points), the expert under seed 0; the RL policies of every RL seed;
# tables of means +- std over all of a policy's runs
SEEDS=${SEEDS:-"0 1 2"}
sfx() { [ "$1" = 0 ] && echo "" || echo "_s$1"; }
runs() {  # runs SUITE -> "expert=...,il=a+b+c,perlad=t0 a+b+c+t1 a+b+c,..."
  local r="expert=$OUT/eval_$1_expert" d=""
  for s in $SEEDS; do d="${d:+$d+}$OUT/eval_$1_il$(sfx "$s")"; done
  r="$r,il=$d"
  for p in perlad perlad_logreplay; do
    d=""
    for t in $RL_SEEDS; do for s in $SEEDS; do d="${d:+$d+}$OUT/eval_$1_${p}_t$t$(sfx "$s")"; done; done
    r="$r,$p=$d"
  done
  echo "$r"
}
evals() {  # evals SUITE ARGS...: il under SEEDS, the RL policies of every RL seed under SEEDS
  local suite=$1; shift
  for s in $SEEDS; do
    DRIVE_STACK_MODELS="$OUT/models" $DS eval "$@" --policy il --out "$OUT/eval_${suite}_il$(sfx "$s")" --seed "$s"
    for t in $RL_SEEDS; do for p in perlad perlad_logreplay; do
      DRIVE_STACK_MODELS="$(mdir $t)" $DS eval "$@" --policy $p --out "$OUT/eval_${suite}_${p}_t$t$(sfx "$s")" --seed "$s"
    done; done
  done
}
$DS eval --routes "$OUT/suite_eval_p0.xml" --policy expert --out "$OUT/eval_proc0_expert" --workers 2 --seed 0
evals proc0 --routes "$OUT/suite_eval_p0.xml" --workers 2
$DS eval-table --title "held-out procedural suite (Proc0, all types + DOS), RL seeds $RL_SEEDS x eval seeds $SEEDS (expert: seed 0)" \
    --out "$OUT/table_proc0.md" --runs "$(runs proc0)"
if [ -f "$SHARED/bench2drive/bench2drive220.xml" ] && [ -d "$SHARED/carla_maps" ]; then
  B2D=(--routes "$SHARED/bench2drive/bench2drive220.xml" --maps-dir "$SHARED/carla_maps" --workers 2)
  $DS eval "${B2D[@]}" --policy expert --out "$OUT/eval_b2d_expert" --seed 0
  evals b2d "${B2D[@]}"
  $DS eval-table --title "Bench2Drive routes in $SHARED/carla_maps, RL seeds $RL_SEEDS x eval seeds $SEEDS (expert: seed 0)" \
      --out "$OUT/table_b2d.md" --runs "$(runs b2d)"
else
  echo "no $SHARED/bench2drive or $SHARED/carla_maps: the Bench2Drive table is skipped"
fi
