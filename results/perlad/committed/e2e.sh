#!/usr/bin/env bash
# issue 18, session 18: the planners' pipeline end to end in one command (training/scripts/perlad_pipeline.sh)
set -euo pipefail
cd /work/wt21
export PYTHONPATH=/work/wt21/training PYTHONWARNINGS=ignore DS=/work/main/.venv/bin/drive-stack
echo "$(date +%s) e2e start" >> /work/e21/stages.txt
/usr/bin/time -v bash training/scripts/perlad_pipeline.sh /work/e21/pipe /work/shared > /work/e21/e2e.log 2>&1
echo "$(date +%s) e2e done" >> /work/e21/stages.txt
