#!/usr/bin/env bash
# issue 18, session 17: Proc3 validation of the end-to-end pipeline's models (/work/e19/pipe/models)
set -euo pipefail
while pgrep -f rp.sh > /dev/null; do sleep 5; done
export PYTHONPATH=/work/wt21/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
S=/work/main/results/perlad
cd /work/e19
for p in il perlad il_bc; do
  pol=$p; [ $p = il_bc ] && pol=il
  [ -f ev_p3_e2e_$p/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy $pol --model pipe/models/$p/planner.onnx --out ev_p3_e2e_$p --workers 2 --seed 0 > ev_p3_e2e_$p.log 2>&1
  echo "$(date +%s) e2e eval $p" >> stages.txt
done
