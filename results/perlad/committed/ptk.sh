#!/usr/bin/env bash
# issue 18, session 18: RL over paths (--path-top-k K) from the pipeline's DAgger planner, world model and states; Proc3 validation
set -euo pipefail
cd /work/main
export PYTHONPATH=/work/main/training PYTHONWARNINGS=ignore
DS=/work/main/.venv/bin/drive-stack
E=/work/e21; P=$E/pipe; M=/work/shared/carla_maps
RLDATA=$(python3 -c "import json;print(json.load(open('$P/pipeline/pipeline.json'))['stages']['dagger']['rl_data'])")
for k in ${KS:-3}; do
  [ -f $E/rl_ptk$k/metrics.json ] || $DS train rl --data $RLDATA --maps-dir $M --init $P/pipeline/il_dagger/ckpt.pt --world-model $P/pipeline/wm/ckpt.pt --agents world_model --updates 200 --seed 0 --out $E/rl_ptk$k --workers 1 --path-top-k $k > $E/rl_ptk$k.log 2>&1
  [ -f $E/models_ptk$k/perlad/planner.onnx ] || $DS export --ckpt $E/rl_ptk$k/ckpt.pt --out $E/models_ptk$k/perlad --name perlad > /dev/null
  [ -f $E/ev_p3_ptk$k/summary.json ] || $DS eval --routes /work/main/results/perlad/suite_val_p3.xml --policy perlad --model $E/models_ptk$k/perlad/planner.onnx --out $E/ev_p3_ptk$k --workers 1 --seed 0 > $E/ev_p3_ptk$k.log 2>&1
  echo "$(date +%s) ptk$k" >> $E/stages.txt
done
