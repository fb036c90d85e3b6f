#!/usr/bin/env bash
# issue 18, session 17: held-out evaluation (after the validation choice) of the DAgger planner (ildag) and the
# RL planners from it: B2D 38 routes of ../shared and the Proc0 suite, eval seed(s) SEEDS. MODELS: name=onnx pairs.
set -euo pipefail
export PYTHONPATH=/work/wt19/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
O=/work/e19
S=/work/main/results/perlad
cd $O
for s in ${SEEDS:-0}; do
  for nm in $MODELS; do
    n=${nm%%=*}; m=${nm#*=}
    p=il; case $n in il*) p=il ;; *) p=perlad ;; esac
    [ -f b2d_${n}_s$s/summary.json ] || $DS eval --routes /work/shared/bench2drive/bench2drive220.xml --maps-dir $M --policy $p --model $m --out b2d_${n}_s$s --workers 2 --seed $s > b2d_${n}_s$s.log 2>&1
    [ -f p0_${n}_s$s/summary.json ] || $DS eval --routes $S/suite_eval_p0.xml --policy $p --model $m --out p0_${n}_s$s --workers 2 --seed $s > p0_${n}_s$s.log 2>&1
    echo "$(date +%s) held $n s$s" >> stages.txt
  done
done
