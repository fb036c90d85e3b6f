#!/usr/bin/env bash
# issue 18, session 20: pipeline end to end, then RL variants from its DAgger planner / world model / states; Proc3 + Proc4 validation
# (the TakeAD screen C2 it waits for: results/takead/recipe_il_screen.sh)
set -uo pipefail
cd /work/wt_s20
export PYTHONPATH=/work/wt_s20/training PYTHONWARNINGS=ignore DS=/work/main/.venv/bin/drive-stack
E=/work/e22; P=$E/pipe; M=/work/shared/carla_maps
# wait for the TakeAD screen C2 to finish its round 2, then stop the screen queue
while ! python3 -c "import json,sys;r=json.load(open('results/takead/recipe_il/C2/takead.json'));sys.exit(0 if any(x['round']==2 for x in r['rounds']) else 1)" 2>/dev/null; do sleep 15; done
pkill -f screen20b.sh; pkill -f "recipe_il/C3"; sleep 5
echo "$(date +%s) e2e start" >> $E/stages.txt
/usr/bin/time -v bash training/scripts/perlad_pipeline.sh $P /work/shared > $E/e2e.log 2>&1
echo "$(date +%s) e2e done" >> $E/stages.txt
RLDATA=$(python3 -c "import json;print(json.load(open('$P/pipeline/pipeline.json'))['stages']['dagger']['rl_data'])")
ev() {  # ev NAME ONNX
  for s in p3:/work/wt_s20/results/perlad/suite_val_p3.xml p4:/work/wt_s20/results/takead/suite_p4.xml; do
    o=$E/ev_${s%%:*}_$1
    [ -f $o/summary.json ] || $DS eval --routes ${s#*:} --policy perlad --model $2 --out $o --workers 2 --seed 0 > $o.log 2>&1
  done
  echo "$(date +%s) ev $1" >> $E/stages.txt
}
ev il $P/models/il/planner.onnx
ev perlad $P/models/perlad/planner.onnx
rl() {  # rl NAME ARGS...
  n=$1; shift
  [ -f $E/rl_$n/metrics.json ] || $DS train rl --data $RLDATA --maps-dir $M --init $P/pipeline/il_dagger/ckpt.pt --world-model $P/pipeline/wm/ckpt.pt --agents world_model --updates 200 --seed 0 --out $E/rl_$n --workers 1 "$@" > $E/rl_$n.log 2>&1
  [ -f $E/models_$n/perlad/planner.onnx ] || $DS export --ckpt $E/rl_$n/ckpt.pt --out $E/models_$n/perlad --name perlad > /dev/null
  ev $n $E/models_$n/perlad/planner.onnx
}
rl search3 --path-top-k 3 --path-search --group 6
rl ptk3 --path-top-k 3
# not run (stopped for time): rl search2 --path-top-k 2 --path-search --group 4
# not run (stopped for time): rl kl01 --kl-ref 0.1
