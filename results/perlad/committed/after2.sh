#!/usr/bin/env bash
# issue 18, session 18: the expert and rule rows (eval seed 0) of the held-out tables
set -euo pipefail
while pgrep -f after.sh > /dev/null; do sleep 10; done
cd /work/wt21
export PYTHONPATH=/work/wt21/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
E=/work/e21; S=/work/main/results/perlad; M=/work/shared/carla_maps
for p in expert rule; do
  [ -f $E/b2d_${p}_s0/summary.json ] || $DS eval --routes /work/shared/bench2drive/bench2drive220.xml --maps-dir $M --policy $p --out $E/b2d_${p}_s0 --workers 2 --seed 0 > $E/b2d_${p}_s0.log 2>&1
  [ -f $E/p0_${p}_s0/summary.json ] || $DS eval --routes $S/suite_eval_p0.xml --policy $p --out $E/p0_${p}_s0 --workers 2 --seed 0 > $E/p0_${p}_s0.log 2>&1
done
echo "$(date +%s) expert_rule_done" >> $E/stages.txt
