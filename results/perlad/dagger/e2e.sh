#!/usr/bin/env bash
# issue 18, session 17: the planners' pipeline end to end in one command (training/scripts/perlad_pipeline.sh at 296d569)
set -euo pipefail
while pgrep -f held.sh > /dev/null; do sleep 10; done
cd /work/wt20
export PYTHONPATH=/work/wt20/training PYTHONWARNINGS=ignore DS=/work/main/.venv/bin/drive-stack
echo "$(date +%s) e2e start" >> /work/e19/stages.txt
/usr/bin/time -v bash training/scripts/perlad_pipeline.sh /work/e19/pipe /work/shared > /work/e19/e2e.log 2>&1
echo "$(date +%s) e2e done" >> /work/e19/stages.txt
