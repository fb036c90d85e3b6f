#!/usr/bin/env bash
# issue 18, session 17: RL variants from the DAgger planner (ildag), Proc3 validation (eval seed 0)
set -euo pipefail
export PYTHONPATH=/work/wt19/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
X=/work/e18/x1
O=/work/e19
S=/work/main/results/perlad
cd $O
DAG=$X/dagger_p1,$X/dagger_p2,$X/dagger_Town02,$X/dagger_Town11
run() {  # name, extra RL flags
  n=$1; shift
  [ -f rl_$n/metrics.json ] || $DS train rl --data $DAG --maps-dir $M --init ildag/ckpt.pt --world-model $X/wm/ckpt.pt --agents world_model --updates 200 --seed 0 --out rl_$n --workers 1 "$@" > rl_$n.log 2>&1
  [ -f models_$n/perlad/planner.onnx ] || $DS export --ckpt rl_$n/ckpt.pt --out models_$n/perlad --name perlad > /dev/null
  [ -f ev_p3_$n/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy perlad --model models_$n/perlad/planner.onnx --out ev_p3_$n --workers 2 --seed 0 > ev_p3_$n.log 2>&1
  echo "$(date +%s) $n done" >> stages.txt
}
for v in $VARIANTS; do
  case $v in
    offroute0) run offroute0 --off-route 0 ;;
    ttc0) run ttc0 --ttc 0 ;;
    both0) run both0 --off-route 0 --ttc 0 ;;
  esac
done
