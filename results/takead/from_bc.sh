#!/usr/bin/env bash
# Session 23, issue 19: TakeAD from the behaviour-cloning planner, the start the TakeAD paper has (an imitation
# policy before any on-policy data), where our committed il already had the pipeline's DAgger stage (every frame of
# the il_bc's drives on Proc1, Proc2, Town02, Town11 labelled by the expert: 146k frames). The default recipe
# (steering trigger 0.2, collision/TTC triggers, DAgger 1 epoch + DPO beta 0.1, base data aggregated) with the stall
# trigger (--takeover-stall 2.0, recipe S2), takeovers on Proc2, 4 rounds, training + evaluation seed 0, Proc3
# validation each round. il_bc: `STAGES=collect,il training/scripts/perlad_pipeline.sh PIPE ../shared` (its
# PIPE/models/il_bc). Then the chosen round on the held-out sets (Proc5, Bench2Drive; eval seeds 0 1).
# Usage: [SEED=0] results/takead/from_bc.sh PIPE E [SHARED]
#   -> results/takead/from_bc<tag>.takead.json, from_bc<tag>_heldout.json (tag: empty for training seed 0, _t<SEED>)
set -euo pipefail
PIPE=${1:?usage: from_bc.sh PIPE E [SHARED]}
E=${2:?usage: from_bc.sh PIPE E [SHARED]}
SHARED=${3:-../shared}
DS=${DS:-.venv/bin/drive-stack}
T=results/takead
SEED=${SEED:-0}
N=from_bc$([ "$SEED" = 0 ] || echo "_t$SEED")
[ -f "$T/data_p1/index.json" ] || $DS collect --routes "$T/suite_p1.xml" --out "$T/data_p1" --workers 2 --no-anno --branches 0
$DS train takead --data $T/data_p1 --init "$PIPE/models/il_bc/planner.onnx" --eval-routes $T/suite_p3.xml \
    --rounds ${ROUNDS:-4} --seed "$SEED" --resume --out "$E/$N" --routes $T/suite_p2.xml --takeover-stall 2.0 \
    --takeover-stall-speed 0 --takeover-steer-min-speed 0  # (the shadow triggers as these runs had them)
cp "$E/$N/takead.json" "$T/$N.takead.json"
# held out: il_bc (round 0) and the round with the best Proc3 validation DS (rounds >= 1), eval seeds 0 1
BEST=$(.venv/bin/python -c "import json; r=json.load(open('$T/$N.takead.json'))['rounds'][1:]; print(max(r, key=lambda x: x['eval']['driving_score'])['round'])")
ev() { local o=$1; shift; [ -f "$E/$o/summary.json" ] || $DS eval "$@" --workers 2 --out "$E/$o" > "$E/$o.log" 2>&1; }
for s in 0 1; do
  for r in 0 "$BEST"; do
    m="$E/$N/round_$r/model/planner.onnx"
    ev "${N}_p5_r${r}_s$s" --routes $T/suite_p5.xml --policy perlad --model "$m" --seed $s
    ev "${N}_b2d_r${r}_s$s" --routes "$SHARED/bench2drive/bench2drive220.xml" --maps-dir "$SHARED/carla_maps" --policy perlad --model "$m" --seed $s
  done
done
.venv/bin/python - "$E" "$BEST" "$N" > "$T/${N}_heldout.json" <<'PY'
import json, statistics as st, sys
E, best, N = sys.argv[1], sys.argv[2], sys.argv[3]
out = {"what": f"TakeAD from il_bc (results/takead/from_bc.sh, {N}): round 0 (il_bc) and the best validation round, "
               "held out, eval seeds 0 1",
       "best_round": int(best)}
for r in ("0", best):
    for suite in ("p5", "b2d"):
        ss = [json.load(open(f"{E}/{N}_{suite}_r{r}_s{s}/summary.json")) for s in (0, 1)]
        ds = [x["driving_score"] for x in ss]
        inf = {k: st.mean(x["infractions"].get(k, 0) for x in ss) for k in
               ("collisions_vehicle", "collisions_layout", "collisions_pedestrian", "vehicle_blocked", "route_timeout")}
        out[f"round_{r}_{suite}"] = {"DS": [round(d, 2) for d in ds], "mean": round(st.mean(ds), 2),
                                     "std": round(st.stdev(ds), 2), **inf}
print(json.dumps(out, indent=1))
PY
