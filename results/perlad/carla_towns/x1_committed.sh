#!/usr/bin/env bash
# (as run on the 2-core machine: /work/e18 held the datasets, /work/wt18 a checkout of this repository, /work/shared = ../shared)
set -euo pipefail
export PYTHONPATH=/work/wt18/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
S=/work/main/results/perlad
cd /work/e18/x1
for p in perlad il; do
  [ -f p0_committed_${p}_s0/summary.json ] || $DS eval --routes $S/suite_eval_p0.xml --policy $p --out p0_committed_${p}_s0 --workers 2 --seed 0 > p0_committed_${p}_s0.log 2>&1
done
[ -f ev_T4_committed_il/summary.json ] || $DS eval --routes /work/e18/val_Town04.xml --maps-dir /work/shared/carla_maps --policy il --out ev_T4_committed_il --workers 2 --seed 0 > ev_T4_committed_il.log 2>&1
[ -f ev_p3_committed_il/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy il --out ev_p3_committed_il --workers 2 --seed 0 > ev_p3_committed_il.log 2>&1
[ -f ev_p3_committed_perlad/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy perlad --out ev_p3_committed_perlad --workers 2 --seed 0 > ev_p3_committed_perlad.log 2>&1
echo "$(date +%s) committed done" >> stages.txt
