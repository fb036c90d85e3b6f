#!/usr/bin/env bash
# How the RL settings of the PerlAD table were chosen: RL variants trained from the pipeline's imitation planner,
# world model and DAgger states (training/scripts/perlad_table.sh, OUT/pipeline), each evaluated on a
# validation suite of its own (Proc3, all types + DOS, one route each; neither a training nor a reported suite)
# under evaluation seeds 0 and 1. Never selected on the reported suites.
# Usage: training/scripts/perlad_rl_sweep.sh [OUT] [SWEEP]   (about 1 h on 2 CPU cores)
set -uo pipefail
OUT=${1:-results/perlad}
SW=${2:-$OUT/rl_sweep}
DS=.venv/bin/drive-stack
P=$OUT/pipeline
mkdir -p "$SW"
[ -f "$OUT/suite_val_p3.xml" ] || $DS routes suite --town Proc3 --types all+dos --n 1 --seed 3 --out "$OUT/suite_val_p3.xml"
val() {  # val NAME MODELDIR POLICY
  for s in 0 1; do
    [ -f "$SW/val_$1_s$s/summary.json" ] || DRIVE_STACK_MODELS=$2 $DS eval --routes "$OUT/suite_val_p3.xml" --policy $3 \
        --out "$SW/val_$1_s$s" --workers 2 --seed $s > "$SW/val_$1_s$s.log" 2>&1
    echo "$1 seed $s: $(grep '^Driving Score' "$SW/val_$1_s$s.log")"
  done
}
val il "$OUT/models" il
variant() {  # variant NAME ARGS...: train rl ARGS, export, validate
  local n=$1; shift
  [ -f "$SW/$n/ckpt.pt" ] || $DS train rl --data "$P/dagger/data_0,$P/dagger/data_1" --init "$P/il/ckpt.pt" \
      --world-model "$P/wm/ckpt.pt" --updates 200 --states 128 --out "$SW/$n" "$@" > "$SW/$n.log" 2>&1
  mkdir -p "$SW/models_$n" && cp -r "$OUT/models/il" "$OUT/models/world_model" "$SW/models_$n/"
  [ -f "$SW/models_$n/perlad/planner.onnx" ] || $DS export --ckpt "$SW/$n/ckpt.pt" --out "$SW/models_$n/perlad" --name perlad >> "$SW/$n.log" 2>&1
  val "$n" "$SW/models_$n" perlad
}
# the first sweep (log-only world model; before the TTC term existed, hence --ttc 0)
variant kl10 --kl-ref 0.1 --ttc 0
variant kl10_seed1 --kl-ref 0.1 --seed 1 --ttc 0
variant kl03 --kl-ref 0.03 --ttc 0
variant safe --kl-ref 0.1 --collision-vehicle -60 --collision-pedestrian -100 --collision-static -30 --ttc 0
variant u400 --kl-ref 0.1 --updates 400 --ttc 0
# with the reactive world model (counterfactual branches; what $P/wm is since then), kl_ref 0.03 under RL seeds
# 0 and 1 validated at 72.6 and 70.9 (il 60.6; the log-only world model: 69.1) before the table was rerun
variant kl03_seed1 --kl-ref 0.03 --seed 1 --ttc 0
# then, RL seed 0, each against kl03's 72.6: the log's unseen agents replayed in the rollouts (72.2), with a
# quarter of each batch from critical states (69.2), the TTC term (74.0, the default since; the table rerun
# after), and with it a 3 s horizon (71.4)
variant unseen --kl-ref 0.03 --ttc 0 --unseen-agents
variant unseen_critical --kl-ref 0.03 --ttc 0 --unseen-agents --critical 0.25
variant ttc --kl-ref 0.03 --ttc -10
variant ttc_h30 --kl-ref 0.03 --ttc -10 --horizon 30
# after the simulator change of session 9 (IDM and scripted agents yield to every agent ahead; measured before the
# three gridlock fixes that followed it), under which kl03 +
# TTC (the table's RL seed 0 model; retrained here as `base0`, the same model bit for bit) validates at 68.1 and
# il at 61.0: synthetic pedestrians injected into a fraction of the start states (rl.inject_pedestrians): 66.5,
# 59.8, 64.0. Not adopted. (Rerun these into an empty SWEEP: the results above it were taken under the older
# simulator.)
variant base0 --kl-ref 0.03 --ttc -10
variant hz25 --kl-ref 0.03 --ttc -10 --hazards 0.25
variant hz50 --kl-ref 0.03 --ttc -10 --hazards 0.5
variant hz50u400 --kl-ref 0.03 --ttc -10 --hazards 0.5 --updates 400
