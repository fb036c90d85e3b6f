#!/usr/bin/env bash
# NOTE: `train il --learn lateral` existed at commit 8af13cb (the lateral-head fine-tuning); it was removed at 296d569 after this measurement.
# issue 18, session 17: DAgger of the lateral head at the RL planner's own states: perlad (RL from ildag) drives the
# DAgger suites while the expert labels; the lateral head alone fine-tunes (encoder and speed branch frozen).
set -euo pipefail
export PYTHONPATH=/work/wt19/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
E=/work/e18
X=$E/x1
O=/work/e19
S=/work/main/results/perlad
cd $O
DATA=$E/data_p1,$E/data_p2,$E/data_Town01,$E/data_Town02,$E/data_Town06,$E/data_Town07,$E/data_Town11
DAG=$X/dagger_p1,$X/dagger_p2,$X/dagger_Town02,$X/dagger_Town11
[ -f pdag_p2/index.json ] || $DS collect --routes $S/suite_train_p2.xml --out pdag_p2 --workers 2 --no-anno --driver perlad --driver-model $O/models/perlad/planner.onnx --branches 0 --seed 2001 > pdag_p2.log 2>&1
for t in Town02 Town11; do
  [ -f pdag_$t/index.json ] || $DS collect --routes $E/suite_$t.xml --maps-dir $M --out pdag_$t --workers 2 --no-anno --driver perlad --driver-model $O/models/perlad/planner.onnx --branches 0 --seed 2002 > pdag_$t.log 2>&1
done
echo "$(date +%s) pdag collected" >> stages.txt
PD=$O/pdag_p2,$O/pdag_Town02,$O/pdag_Town11
[ -f lat/metrics.json ] || $DS train il --data $E/data_p1,$E/data_p2,$DAG,$PD --out lat --epochs 1 --lr ${LR:-3e-4} --init rl/ckpt.pt --learn lateral --maps-dir $M --workers 1 > lat.log 2>&1
[ -f models_lat/perlad/planner.onnx ] || $DS export --ckpt lat/ckpt.pt --out models_lat/perlad --name perlad > /dev/null
echo "$(date +%s) lat trained" >> stages.txt
[ -f ev_p3_lat/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy perlad --model models_lat/perlad/planner.onnx --out ev_p3_lat --workers 2 --seed 0 > ev_p3_lat.log 2>&1
[ -f ev_T4_lat/summary.json ] || $DS eval --routes $E/val_Town04.xml --maps-dir $M --policy perlad --model models_lat/perlad/planner.onnx --out ev_T4_lat --workers 2 --seed 0 > ev_T4_lat.log 2>&1
echo "$(date +%s) lat done" >> stages.txt
