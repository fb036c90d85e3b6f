#!/usr/bin/env bash
# (as run on the 2-core machine: /work/e18 held the datasets, /work/wt18 a checkout of this repository, /work/shared = ../shared)
set -euo pipefail
export PYTHONPATH=/work/wt18/training PYTHONWARNINGS=ignore
cd /work/e18/x1
while pgrep -f committed.sh > /dev/null; do sleep 15; done
[ -f p0_rule_s0/summary.json ] || /work/main/.venv/bin/drive-stack eval --routes /work/main/results/perlad/suite_eval_p0.xml --policy rule --out p0_rule_s0 --workers 2 --seed 0 > p0_rule_s0.log 2>&1
echo "$(date +%s) rule done" >> stages.txt
