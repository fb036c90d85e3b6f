#!/usr/bin/env bash
# (as run on the 2-core machine: /work/e18 held the datasets, /work/wt18 a checkout of this repository, /work/shared = ../shared)
# issue 18, session 16: the full PerlAD recipe (il -> wm -> dagger -> rl) with our own routes on five CARLA towns
# (Town01 02 06 07 11; Town04 held out for validation) added to the procedural p1+p2 data.
# Validation: Proc3 (results/perlad/suite_val_p3.xml) and our own routes on Town04 (val_Town04.xml).
set -euo pipefail
export PYTHONPATH=/work/wt18/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
E=/work/e18
O=$E/x1
S=/work/main/results/perlad
cd $O
T() { echo "$(date +%s) $*" >> $O/stages.txt; }
DATA=$E/data_p1,$E/data_p2,$E/data_Town01,$E/data_Town02,$E/data_Town06,$E/data_Town07,$E/data_Town11
T il_start
[ -f il/metrics.json ] || $DS train il --data $DATA --out il --epochs 4 --maps-dir $M --workers 1 > il.log 2>&1
[ -f models/il/planner.onnx ] || $DS export --ckpt il/ckpt.pt --out models/il --name il > /dev/null
T il_done
[ -f ev_p3_il/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy il --model models/il/planner.onnx --out ev_p3_il --workers 2 --seed 0 > ev_p3_il.log 2>&1
[ -f ev_T4_il/summary.json ] || $DS eval --routes $E/val_Town04.xml --maps-dir $M --policy il --model models/il/planner.onnx --out ev_T4_il --workers 2 --seed 0 > ev_T4_il.log 2>&1
T il_eval_done
[ -f wm/metrics.json ] || $DS train wm --data $E/data_p1,$E/data_p2 --out wm --epochs 6 --workers 1 > wm.log 2>&1
T wm_done
for s in p1 p2; do
  [ -f dagger_$s/index.json ] || $DS collect --routes $S/suite_train_$s.xml --out dagger_$s --workers 2 --no-anno --driver il --driver-model $O/models/il/planner.onnx --branches 0 --seed 1001 > dagger_$s.log 2>&1
done
for t in Town02 Town11; do
  [ -f dagger_$t/index.json ] || $DS collect --routes $E/suite_$t.xml --maps-dir $M --out dagger_$t --workers 2 --no-anno --driver il --driver-model $O/models/il/planner.onnx --branches 0 --seed 1002 > dagger_$t.log 2>&1
done
T dagger_done
[ -f rl/metrics.json ] || $DS train rl --data $O/dagger_p1,$O/dagger_p2,$O/dagger_Town02,$O/dagger_Town11 --maps-dir $M --init il/ckpt.pt --world-model wm/ckpt.pt --agents world_model --updates 200 --seed 0 --out rl --workers 1 > rl.log 2>&1
[ -f models/perlad/planner.onnx ] || $DS export --ckpt rl/ckpt.pt --out models/perlad --name perlad > /dev/null
T rl_done
[ -f ev_p3_perlad/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy perlad --model models/perlad/planner.onnx --out ev_p3_perlad --workers 2 --seed 0 > ev_p3_perlad.log 2>&1
[ -f ev_T4_perlad/summary.json ] || $DS eval --routes $E/val_Town04.xml --maps-dir $M --policy perlad --model models/perlad/planner.onnx --out ev_T4_perlad --workers 2 --seed 0 > ev_T4_perlad.log 2>&1
[ -f ev_T4_committed_perlad/summary.json ] || $DS eval --routes $E/val_Town04.xml --maps-dir $M --policy perlad --out ev_T4_committed_perlad --workers 2 --seed 0 > ev_T4_committed_perlad.log 2>&1
T all_done
