#!/usr/bin/env bash
# (as run on the 2-core machine: /work/e18 held the datasets, /work/wt18 a checkout of this repository, /work/shared = ../shared)
# issue 18 lever: data diversity (our own routes on the CARLA towns of ../shared) for the imitation planner
set -euo pipefail
export PYTHONPATH=/work/exp18/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
O=/work/e18
S=/work/main/results/perlad
cd $O
for T in Town01 Town02 Town04 Town06 Town07 Town11; do
  [ -f suite_$T.xml ] || $DS routes suite --town $T --types all+dos --n 1 --seed 11 --maps-dir $M --out suite_$T.xml
done
for T in Town01 Town04 Town07; do
  [ -f val_$T.xml ] || $DS routes suite --town $T --types all --n 1 --seed 99 --maps-dir $M --out val_$T.xml
done
date; echo collect
[ -f data_p1/index.json ] || $DS collect --routes $S/suite_train_p1.xml --out data_p1 --workers 2 --no-anno
[ -f data_p2/index.json ] || $DS collect --routes $S/suite_train_p2.xml --out data_p2 --workers 2 --no-anno --steer-noise 0.15 --speed-noise 1.5 --seed 100
for T in Town01 Town02 Town04 Town06 Town07 Town11; do
  [ -f data_$T/index.json ] || $DS collect --routes suite_$T.xml --out data_$T --maps-dir $M --workers 2 --no-anno --steer-noise 0.15 --speed-noise 1.5 --seed 200
done
date; echo train base
CARLA=$(for T in Town01 Town02 Town04 Town06 Town07 Town11; do printf "%s" "$O/data_$T,"; done)
[ -f il_base/metrics.json ] || $DS train il --data data_p1,data_p2 --out il_base --epochs 12 --maps-dir $M > il_base.log 2>&1
[ -f il_base/planner.onnx ] || $DS export --ckpt il_base/ckpt.pt --out il_base --name il
date; echo train carla
[ -f il_carla/metrics.json ] || $DS train il --data data_p1,data_p2,${CARLA%,} --out il_carla --epochs 12 --maps-dir $M > il_carla.log 2>&1
[ -f il_carla/planner.onnx ] || $DS export --ckpt il_carla/ckpt.pt --out il_carla --name il
date; echo eval
for v in base carla; do
  [ -f ev_p3_$v/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy il --model il_$v/planner.onnx --out ev_p3_$v --workers 2 --seed 0 > ev_p3_$v.log 2>&1
  for T in Town01 Town04 Town07; do
    [ -f ev_${T}_$v/summary.json ] || $DS eval --routes val_$T.xml --maps-dir $M --policy il --model il_$v/planner.onnx --out ev_${T}_$v --workers 2 --seed 0 > ev_${T}_$v.log 2>&1
  done
done
date; echo DONE
