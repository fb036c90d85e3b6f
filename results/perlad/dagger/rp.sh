#!/usr/bin/env bash
# issue 18, session 17: RL from the DAgger planner (ildag) with re-planning rollouts (--replan S), Proc3 and Town04 validation
set -euo pipefail
export PYTHONPATH=/work/wt21/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
E=/work/e18
X=$E/x1
O=/work/e19
S=/work/main/results/perlad
cd $O
DAG=$X/dagger_p1,$X/dagger_p2,$X/dagger_Town02,$X/dagger_Town11
for rp in ${REPLANS:-1.0}; do
  n=rp$rp
  [ -f rl_$n/metrics.json ] || $DS train rl --data $DAG --maps-dir $M --init ildag/ckpt.pt --world-model $X/wm/ckpt.pt --agents world_model --updates 200 --seed 0 --out rl_$n --workers 1 --replan $rp > rl_$n.log 2>&1
  [ -f models_$n/perlad/planner.onnx ] || $DS export --ckpt rl_$n/ckpt.pt --out models_$n/perlad --name perlad > /dev/null
  [ -f ev_p3_$n/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy perlad --model models_$n/perlad/planner.onnx --out ev_p3_$n --workers 2 --seed 0 > ev_p3_$n.log 2>&1
  echo "$(date +%s) $n p3" >> stages.txt
  [ -f ev_T4_$n/summary.json ] || $DS eval --routes $E/val_Town04.xml --maps-dir $M --policy perlad --model models_$n/perlad/planner.onnx --out ev_T4_$n --workers 2 --seed 0 > ev_T4_$n.log 2>&1
  echo "$(date +%s) $n done" >> stages.txt
done
