#!/usr/bin/env bash
# Session 26, issue 19: takeovers on a CARLA town too. The rounds so far drove Proc2 only, and on the Bench2Drive
# routes the post-trained planners keep hitting layout objects (8-11 layout collisions over 38 routes, as il_bc's
# 13; s25_heldout.json): no takeover ever happened on CARLA geometry. Here the planner drives Proc2 and routes of
# our own on Town04 (results/takead/suite_t04.xml: `routes suite --town Town04 --types all+dos --n 1 --seed 12`;
# never the Bench2Drive route files, their routes or triggers) with the expert in shadow mode; otherwise session
# 25's recipe (from il_bc, --takeover-stall 2.0, base data Proc1, Proc3 validation). Held out as always (Proc5 and
# the 38 Bench2Drive routes, eval seeds 0 1), the Bench2Drive DS also split into the routes on Town04 (a town the
# rounds drove, 12 routes) and the others (26 routes).
# Usage: [SEED=0] [ROUNDS=2] [TRAIN_FROM=last|initial] [TRIGGERS=s26|s27] [HELD_ROUNDS="1 $ROUNDS"] [EXTRA="NAME=ONNX ..."]
#        results/takead/towns.sh IL_BC E [SHARED]
#   (IL_BC: il_bc's planner.onnx; held out: il_bc, the rounds of HELD_ROUNDS and the EXTRA policies; TRIGGERS: s26,
#   the shadow triggers as session 26's runs had them (STALLED on the expert's command alone, the steering trigger
#   at a standstill too), or s27, today's defaults (--takeover-stall-speed 2, --takeover-steer-min-speed 0.5), the
#   run then named towns[_init]_s27_t<seed>)
set -euo pipefail
IL_BC=${1:?usage: towns.sh IL_BC_ONNX E [SHARED]}
E=${2:?usage: towns.sh IL_BC_ONNX E [SHARED]}
SHARED=${3:-../shared}
DS=${DS:-.venv/bin/drive-stack}
T=results/takead
SEED=${SEED:-0}
TRAIN_FROM=${TRAIN_FROM:-last}  # train takead --train-from: last (each round fine-tunes the previous one) or initial
TRIGGERS=${TRIGGERS:-s26}
N=towns
if [ "$TRAIN_FROM" = initial ]; then N=${N}_init; fi
case $TRIGGERS in
  s26) TRIG=(--takeover-stall-speed 0 --takeover-steer-min-speed 0) ;;
  s27) TRIG=(--takeover-stall-speed 2.0 --takeover-steer-min-speed 0.5); N=${N}_s27 ;;
  *) echo "towns.sh: TRIGGERS=$TRIGGERS: expected s26 or s27" >&2; exit 2 ;;
esac
N=${N}_t$SEED
[ -f "$T/suite_t04.xml" ] || $DS routes suite --town Town04 --types all+dos --n 1 --seed 12 \
    --maps-dir "$SHARED/carla_maps" --out "$T/suite_t04.xml"
[ -f "$T/data_p1/index.json" ] || $DS collect --routes "$T/suite_p1.xml" --out "$T/data_p1" --workers 2 --no-anno --branches 0
$DS train takead --data $T/data_p1 --init "$IL_BC" --eval-routes $T/suite_p3.xml --maps-dir "$SHARED/carla_maps" \
    --rounds "${ROUNDS:-2}" --seed "$SEED" --resume --out "$E/$N" --routes "$T/suite_p2.xml,$T/suite_t04.xml" \
    --takeover-stall 2.0 "${TRIG[@]}" --no-measure-final --train-from "$TRAIN_FROM"
cp "$E/$N/takead.json" "$T/$N.takead.json"
args=(il_bc="$IL_BC")
for r in ${HELD_ROUNDS:-1 ${ROUNDS:-2}}; do args+=("${N}_r$r=$E/$N/round_$r/model/planner.onnx"); done
for x in ${EXTRA:-}; do args+=("$x"); done  # more NAME=ONNX pairs held out beside them
.venv/bin/python $T/heldout.py "$E/held" "$SHARED" "${args[@]}" > "$T/${N}_heldout.json"
# the Bench2Drive DS split by town: Town04 (driven in the rounds, generated routes) and the other towns
.venv/bin/python - "$E/held" "$T/${N}_heldout.json" <<'PY'
import json, statistics as st, sys
from pathlib import Path
held, out = Path(sys.argv[1]), Path(sys.argv[2])
doc = json.loads(out.read_text())
for key in [k for k in doc if k.endswith("_b2d")]:
    name = key[:-4]
    split = {"Town04": [], "other": []}
    for s in (0, 1):
        recs = json.loads((held / f"{name}_b2d_s{s}" / "results.json").read_text())["_checkpoint"]["records"]
        for grp in split:
            sel = [r["scores"]["score_composed"] for r in recs if (r["meta"]["town"] == "Town04") == (grp == "Town04")]
            split[grp].append(st.mean(sel))
    doc[key]["DS_Town04"] = [round(v, 2) for v in split["Town04"]]
    doc[key]["DS_other_towns"] = [round(v, 2) for v in split["other"]]
out.write_text(json.dumps(doc, indent=1))
for k in doc:
    if k.endswith("_b2d"):
        print(k, doc[k]["mean"], "Town04", doc[k]["DS_Town04"], "others", doc[k]["DS_other_towns"])
PY
