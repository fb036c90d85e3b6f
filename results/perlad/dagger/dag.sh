#!/usr/bin/env bash
# issue 18, session 17: DAgger for both heads: fine-tune il x1 on x1's data + the expert-labelled states il x1 drove
# itself into (x1's dagger data), then validation (Proc3, own Town04), then RL from it and validation again.
set -euo pipefail
export PYTHONPATH=/work/wt19/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
E=/work/e18
X=$E/x1
O=/work/e19
S=/work/main/results/perlad
cd $O
T() { echo "$(date +%s) $*" >> $O/stages.txt; }
DATA=$E/data_p1,$E/data_p2,$E/data_Town01,$E/data_Town02,$E/data_Town06,$E/data_Town07,$E/data_Town11
DAG=$X/dagger_p1,$X/dagger_p2,$X/dagger_Town02,$X/dagger_Town11
T ildag_start
[ -f ildag/metrics.json ] || $DS train il --data $DATA,$DAG --out ildag --epochs ${EP:-1} --lr ${LR:-3e-4} --init $X/il/ckpt.pt --maps-dir $M --workers 1 > ildag.log 2>&1
[ -f models/il/planner.onnx ] || $DS export --ckpt ildag/ckpt.pt --out models/il --name il > /dev/null
T ildag_done
[ -f ev_p3_ildag/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy il --model models/il/planner.onnx --out ev_p3_ildag --workers 2 --seed 0 > ev_p3_ildag.log 2>&1
[ -f ev_T4_ildag/summary.json ] || $DS eval --routes $E/val_Town04.xml --maps-dir $M --policy il --model models/il/planner.onnx --out ev_T4_ildag --workers 2 --seed 0 > ev_T4_ildag.log 2>&1
T ildag_eval_done
[ -f rl/metrics.json ] || $DS train rl --data $DAG --maps-dir $M --init ildag/ckpt.pt --world-model $X/wm/ckpt.pt --agents world_model --updates 200 --seed 0 --out rl --workers 1 > rl.log 2>&1
[ -f models/perlad/planner.onnx ] || $DS export --ckpt rl/ckpt.pt --out models/perlad --name perlad > /dev/null
T rl_done
[ -f ev_p3_perlad/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy perlad --model models/perlad/planner.onnx --out ev_p3_perlad --workers 2 --seed 0 > ev_p3_perlad.log 2>&1
[ -f ev_T4_perlad/summary.json ] || $DS eval --routes $E/val_Town04.xml --maps-dir $M --policy perlad --model models/perlad/planner.onnx --out ev_T4_perlad --workers 2 --seed 0 > ev_T4_perlad.log 2>&1
T all_done
