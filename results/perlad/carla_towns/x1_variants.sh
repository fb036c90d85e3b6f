#!/usr/bin/env bash
# (as run on the 2-core machine: /work/e18 held the datasets, /work/wt18 a checkout of this repository, /work/shared = ../shared)
# RL variants against blocking (perlad x1 stops behind obstacles: vehicle_blocked 12 on Proc3 vs il 5), same il,
# wm and DAgger states; validation on Proc3 and own Town04 routes only
set -euo pipefail
export PYTHONPATH=/work/wt18/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
E=/work/e18
O=$E/x1
S=/work/main/results/perlad
cd $O
while pgrep -f eval.sh > /dev/null; do sleep 20; done
run() {  # run NAME RL-ARGS...
  local n=$1; shift
  [ -f rl_$n/metrics.json ] || $DS train rl --data $O/dagger_p1,$O/dagger_p2,$O/dagger_Town02,$O/dagger_Town11 --maps-dir $M --init il/ckpt.pt --world-model wm/ckpt.pt --agents world_model --updates 200 --seed 0 --out rl_$n --workers 1 "$@" > rl_$n.log 2>&1
  [ -f models_$n/perlad/planner.onnx ] || $DS export --ckpt rl_$n/ckpt.pt --out models_$n/perlad --name perlad > /dev/null
  [ -f ev_p3_$n/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy perlad --model models_$n/perlad/planner.onnx --out ev_p3_$n --workers 2 --seed 0 > ev_p3_$n.log 2>&1
  [ -f ev_T4_$n/summary.json ] || $DS eval --routes $E/val_Town04.xml --maps-dir $M --policy perlad --model models_$n/perlad/planner.onnx --out ev_T4_$n --workers 2 --seed 0 > ev_T4_$n.log 2>&1
  echo "$(date +%s) variant $n" >> $O/stages.txt
}
run prog20 --w-progress 20
run kl10 --kl-ref 0.1
