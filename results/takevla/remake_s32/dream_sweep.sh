#!/usr/bin/env bash
# Issue 20, session 34: Scenario Dreaming's settings chosen on validation only, for the remake_s32 models.
# Session 33-34's dreaming (32 scenarios x 8 actions per update, 150 updates, lr 3e-4) moved the held-out scenario
# reward by -1.35 -> -0.98 (training seed 0), -1.88 -> -1.73 (1) and -2.03 -> -2.57 (2, worse) and Proc3 DS by
# -4.2 / +3.0 / -3.7 over its start: noisy steps. The GRPO updates themselves take ~15 s of the ~2.5 min a run takes
# (loading the scenarios and the Proc3 evaluation are the rest), so larger batches are nearly free. Candidates:
#   s128:      128 scenarios per update (4x the rollouts per step, same step size and updates)
#   s128_u300: the same, 300 updates
# Each from the same start (E/tv/sft_pre{,_t1,_t2}/ckpt.pt), judged on Proc3 (eval seed 0: DS and average TTC) and on
# the held-out scenarios (a split of the training takeovers); never on Proc5 or the Bench2Drive routes.
# Usage (after run.sh): [TRAIN_SEEDS="0 1 2"] results/takevla/remake_s32/dream_sweep.sh E [SHARED]  -> E/tv/dream_<cand>{,_t<s>}
#   and E/tv/dream_sweep.json (per candidate and seed: Proc3 DS / TTC, held-out scenario reward first -> last)
set -euo pipefail
E=${1:?usage: dream_sweep.sh E [SHARED]}
SHARED=${2:-../shared}
DS=${DS:-.venv/bin/drive-stack}
# the takeover collections run.sh's dreaming used, in its order (the held-out split and the draws follow from it)
TK=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["takeover_data"])' "$E/tv/dream/config.json")
declare -A opts=([s128]="--states 128 --updates 150" [s128_u300]="--states 128 --updates 300")
sfx() { [ "$1" = 0 ] && echo "" || echo "_t$1"; }
for t in ${TRAIN_SEEDS:-0 1 2}; do
  for c in s128 s128_u300; do
    o="$E/tv/dream_$c$(sfx "$t")"
    # shellcheck disable=SC2086
    [ -f "$o/dreaming.json" ] || $DS train dreaming --init "$E/tv/sft_pre$(sfx "$t")/ckpt.pt" --takeover-data "$TK" \
        --maps-dir "$SHARED/carla_maps" ${opts[$c]} --seed "$t" --out "$o" --eval-routes results/takead/suite_p3.xml \
        --resume > "$o.log" 2>&1
    echo "$c seed $t: $(grep -o 'dreaming eval DS [0-9.]*' "$o.log" | tail -1)"
  done
done
.venv/bin/python - "$E/tv" <<'PY'
import json, sys
from pathlib import Path
tv = Path(sys.argv[1])
out = {}
for f in sorted(tv.glob("dream*/dreaming.json")):
    d = json.loads(f.read_text())
    ev = d.get("eval") or {}
    out[f.parent.name] = {"proc3_ds": ev.get("driving_score"), "proc3_ttc": ev.get("average_ttc"),
                          "heldout_first": d["first_heldout"]["reward"], "heldout_last": d["last_heldout"]["reward"],
                          "heldout_collisions_last": d["last_heldout"]["collision_rate"]}
    print(f.parent.name, {k: round(v, 3) for k, v in out[f.parent.name].items() if v is not None})
(tv / "dream_sweep.json").write_text(json.dumps(out, indent=1))
PY
