#!/usr/bin/env bash
# The PerlAD evaluation table, end to end (issues 5 and 18): the committed planners' pipeline
# (training/scripts/perlad_pipeline.sh: the expert's collection, imitation, world model, DAgger, RL with
# world-model agents and the log-replay ablation), RL under more seeds from the same DAgger planner, world model
# and start states, then closed-loop evaluation of expert / rule / il / perlad / perlad_logreplay on
#   (a) the held-out all-types suite on Proc0 (results/perlad/suite_eval_p0.xml; no training route came from Proc0), and
#   (b) the Bench2Drive routes whose towns are in $SHARED/carla_maps (evaluation only; skipped when absent).
# RL under RL_SEEDS (the pipeline's SEED first; the log-replay ablation under LOGREPLAY_RL_SEEDS), every learned
# policy under the evaluation seeds SEEDS, the expert and the rule planner under seed 0; tables of mean +- std
# over a policy's runs with infraction counts (`drive-stack eval-table --infractions`). Finished runs are kept.
# Usage: [SEEDS="0 1 2"] [RL_SEEDS="0 1"] [LOGREPLAY_RL_SEEDS="0"] training/scripts/perlad_table.sh [OUT] [SHARED]
# (about 2.5 h on 2 CPU cores: the pipeline about 55 min, each evaluation of one policy on both sets about 4.5 min)
set -euo pipefail
OUT=${1:-results/perlad/run}
SHARED=${2:-../shared}
DS=${DS:-.venv/bin/drive-stack}
PY=$(dirname "$DS")/python
P=results/perlad
SEED=${SEED:-0}  # training seed of the pipeline (imitation, world model, DAgger, RL)
RL_SEEDS=${RL_SEEDS:-"$SEED 1"}
LOGREPLAY_RL_SEEDS=${LOGREPLAY_RL_SEEDS:-$SEED}
SEEDS=${SEEDS:-"0 1 2"}
STAGES=collect,il,wm,dagger,perlad,perlad_logreplay SEED=$SEED DS=$DS \
    bash training/scripts/perlad_pipeline.sh "$OUT" "$SHARED"
PIPE=$OUT/pipeline
dag() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['stages']['dagger'][sys.argv[2]])" "$PIPE/pipeline.json" "$1"; }
mdir() { [ "$1" = "$SEED" ] && echo "$OUT/models" || echo "$OUT/models_t$1"; }
# more RL seeds: the same DAgger planner (the pipeline's il), world model and DAgger start states
for p in perlad perlad_logreplay; do
  seeds=$([ $p = perlad ] && echo "$RL_SEEDS" || echo "$LOGREPLAY_RL_SEEDS")
  ag=$([ $p = perlad ] && echo world_model || echo log_replay)
  for t in $seeds; do
    [ "$t" = "$SEED" ] && continue
    [ -f "$PIPE/${p}_t$t/ckpt.pt" ] || $DS train rl --data "$(dag rl_data)" --maps-dir "$SHARED/carla_maps" \
        --init "$(dag init)" --world-model "$PIPE/wm/ckpt.pt" --agents $ag --updates "${RL_UPDATES:-200}" \
        --seed "$t" --workers 2 --out "$PIPE/${p}_t$t"
    $DS export --ckpt "$PIPE/${p}_t$t/ckpt.pt" --out "$(mdir "$t")/$p" --name $p > /dev/null
  done
done
ev() {  # ev SET NAME POLICY MODEL SEED ARGS...: one evaluation, kept when done
  local d="$OUT/eval_$1_$2_s$5"
  [ -f "$d/summary.json" ] || $DS eval "${@:6}" --policy "$3" ${4:+--model "$4"} --out "$d" --seed "$5" --workers 2
}
runs() {  # runs SET -> "expert=...,rule=...,il=a+b+c,perlad=t0 a+b+c+t1 a+b+c,..."
  local r="expert=$OUT/eval_$1_expert_s0,rule=$OUT/eval_$1_rule_s0" d="" s t p
  for s in $SEEDS; do d="${d:+$d+}$OUT/eval_$1_il_s$s"; done
  r="$r,il=$d"
  for p in perlad perlad_logreplay; do
    d=""
    for t in $([ $p = perlad ] && echo "$RL_SEEDS" || echo "$LOGREPLAY_RL_SEEDS"); do
      for s in $SEEDS; do d="${d:+$d+}$OUT/eval_$1_${p}_t${t}_s$s"; done
    done
    r="$r,$p=$d"
  done
  echo "$r"
}
evals() {  # evals SET ARGS...: the expert and rule under seed 0, the learned policies under SEEDS (seed-major)
  local set=$1 s t p
  shift
  ev "$set" expert expert "" 0 "$@"
  ev "$set" rule rule "" 0 "$@"
  for s in $SEEDS; do
    ev "$set" il il "$OUT/models/il/planner.onnx" "$s" "$@"
    for p in perlad perlad_logreplay; do
      for t in $([ $p = perlad ] && echo "$RL_SEEDS" || echo "$LOGREPLAY_RL_SEEDS"); do
        ev "$set" "${p}_t$t" $p "$(mdir "$t")/$p/planner.onnx" "$s" "$@"
      done
    done
  done
}
evals proc0 --routes "$P/suite_eval_p0.xml"
$DS eval-table --infractions --out "$OUT/table_proc0.md" --runs "$(runs proc0)" \
    --title "held-out procedural suite (Proc0, all types + DOS), RL seeds $RL_SEEDS x eval seeds $SEEDS (expert, rule: seed 0)"
if [ -f "$SHARED/bench2drive/bench2drive220.xml" ] && [ -d "$SHARED/carla_maps" ]; then
  evals b2d --routes "$SHARED/bench2drive/bench2drive220.xml" --maps-dir "$SHARED/carla_maps"
  $DS eval-table --infractions --out "$OUT/table_b2d.md" --runs "$(runs b2d)" \
      --title "Bench2Drive routes in $SHARED/carla_maps, RL seeds $RL_SEEDS x eval seeds $SEEDS (expert, rule: seed 0)"
else
  echo "no $SHARED/bench2drive or $SHARED/carla_maps: the Bench2Drive table is skipped"
fi
