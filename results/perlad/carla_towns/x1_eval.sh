#!/usr/bin/env bash
# (as run on the 2-core machine: /work/e18 held the datasets, /work/wt18 a checkout of this repository, /work/shared = ../shared)
# held-out evaluation of the x1 models (after the validation choice): B2D 38 routes and the Proc0 suite, eval seeds
set -euo pipefail
export PYTHONPATH=/work/wt18/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
O=/work/e18/x1
S=/work/main/results/perlad
cd $O
while [ ! -f $O/ev_T4_committed_perlad/summary.json ]; do sleep 30; done
for s in ${SEEDS:-0 1}; do
  for p in perlad il; do
    [ -f b2d_${p}_s$s/summary.json ] || $DS eval --routes /work/shared/bench2drive/bench2drive220.xml --maps-dir $M --policy $p --model models/$p/planner.onnx --out b2d_${p}_s$s --workers 2 --seed $s > b2d_${p}_s$s.log 2>&1
    [ -f p0_${p}_s$s/summary.json ] || $DS eval --routes $S/suite_eval_p0.xml --policy $p --model models/$p/planner.onnx --out p0_${p}_s$s --workers 2 --seed $s > p0_${p}_s$s.log 2>&1
    echo "$(date +%s) $p s$s" >> $O/stages.txt
  done
done
