#!/usr/bin/env bash
# issue 18, session 18: after the pipeline (e2e.sh): Proc3 validation of its planners, the log-replay ablation and
# RL seed 1 from the same DAgger planner, world model and states, then the held-out sets (B2D 38, Proc0) under
# eval seeds 0 1 2 (seed-major, so a cut run still has whole seeds).
set -euo pipefail
while pgrep -f e2e.sh > /dev/null; do sleep 10; done
cd /work/wt21
export PYTHONPATH=/work/wt21/training PYTHONWARNINGS=ignore DS=/work/main/.venv/bin/drive-stack
DS=/work/main/.venv/bin/drive-stack
M=/work/shared/carla_maps
S=/work/main/results/perlad
E=/work/e21
P=$E/pipe
T() { echo "$(date +%s) $*" >> $E/stages.txt; }
for n in il_bc il perlad; do
  p=il; [ $n = perlad ] && p=perlad
  [ -f $E/ev_p3_$n/summary.json ] || $DS eval --routes $S/suite_val_p3.xml --policy $p --model $P/models/$n/planner.onnx --out $E/ev_p3_$n --workers 2 --seed 0 > $E/ev_p3_$n.log 2>&1
done
T p3_done
STAGES=perlad_logreplay bash training/scripts/perlad_pipeline.sh $P /work/shared > $E/logreplay.log 2>&1
RLDATA=$(python3 -c "import json;print(json.load(open('$P/pipeline/pipeline.json'))['stages']['dagger']['rl_data'])")
[ -f $P/rl_s1/ckpt.pt ] || $DS train rl --data $RLDATA --maps-dir $M --init $P/pipeline/il_dagger/ckpt.pt --world-model $P/pipeline/wm/ckpt.pt --agents world_model --updates 200 --seed 1 --out $P/rl_s1 --workers 2 > $E/rl_s1.log 2>&1
[ -f $P/models_t1/perlad/planner.onnx ] || $DS export --ckpt $P/rl_s1/ckpt.pt --out $P/models_t1/perlad --name perlad > /dev/null
T rl_extra_done
for s in 0 1 2; do
  for nm in il=$P/models/il perlad_t0=$P/models/perlad perlad_t1=$P/models_t1/perlad perlad_logreplay_t0=$P/models/perlad_logreplay; do
    n=${nm%%=*}; m=${nm#*=}/planner.onnx
    p=${n%_t?}
    [ -f $E/b2d_${n}_s$s/summary.json ] || $DS eval --routes /work/shared/bench2drive/bench2drive220.xml --maps-dir $M --policy $p --model $m --out $E/b2d_${n}_s$s --workers 2 --seed $s > $E/b2d_${n}_s$s.log 2>&1
    [ -f $E/p0_${n}_s$s/summary.json ] || $DS eval --routes $S/suite_eval_p0.xml --policy $p --model $m --out $E/p0_${n}_s$s --workers 2 --seed $s > $E/p0_${n}_s$s.log 2>&1
    T held $n s$s
  done
done
T all_done
