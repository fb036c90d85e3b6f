#!/usr/bin/env bash
# issue 18, session 21: the learned planner's candidate check (`eval --check H`, policies/learned.py CandidateCheck).
# 1. the horizon H, chosen on validation (Proc3 = results/takead/suite_p3.xml, Proc4 = results/takead/suite_p4.xml;
#    no planner was trained on them), the committed il, eval seed 0;
# 2. the chosen H (3.0 s) on the held-out sets, never used to choose anything: the 38 Bench2Drive routes of
#    ../shared (eval seeds 0, 1, 2) and the Proc0 suite (results/perlad/suite_eval_p0.xml, seed 0), il and perlad.
# Usage: [S2=<S2 round_1 planner.onnx>] results/perlad/check/run.sh E [SHARED]    (E: where the runs go; about 70 min on 2 CPU cores,
#        parts 2 and 3 about 35)
set -euo pipefail
E=${1:?usage: run.sh E [SHARED]}
SHARED=${2:-../shared}
DS=${DS:-.venv/bin/drive-stack}
mkdir -p "$E"
ev() { local o=$1; shift; [ -f "$E/$o/summary.json" ] || $DS eval "$@" --workers 2 --out "$E/$o" > "$E/$o.log" 2>&1; }
# SKIP_VALIDATION=1 runs parts 2 and 3 only (validation.json is committed)
[ -n "${SKIP_VALIDATION:-}" ] || for h in 0 1.0 2.0 3.0; do
  for p in 3 4; do ev "p${p}_il_chk$h" --routes results/takead/suite_p$p.xml --policy il --check $h --seed 0; done
done
B2D=(--routes "$SHARED/bench2drive/bench2drive220.xml" --maps-dir "$SHARED/carla_maps")
for s in 0 1; do for p in il perlad; do ev "b2d_${p}_chk3.0_s$s" "${B2D[@]}" --policy $p --check 3.0 --seed $s; done; done
for p in il perlad; do ev "p0_${p}_chk3.0_s0" --routes results/perlad/suite_eval_p0.xml --policy $p --check 3.0 --seed 0; done
# 3. the same check on TakeAD's stall-trigger round 1 (results/takead/stall_S2_heldout.json, training seed 0; its
#    planner is not committed: `training/scripts/takead_table.sh` / results/takead/recipe_il_screen.sh make it) and
#    il on Proc5, the TakeAD held-out suite; B2D eval seed 2 for il and perlad
S2=${S2:-}
P5=(--routes results/takead/suite_p5.xml)
for s in 0 1; do ev "p5_il_chk3.0_s$s" "${P5[@]}" --policy il --check 3.0 --seed $s; done
if [ -n "$S2" ]; then
  for s in 0 1; do ev "b2d_S2r1_chk3.0_s$s" "${B2D[@]}" --policy perlad --model "$S2" --check 3.0 --seed $s; done
  for s in 0 1; do ev "p5_S2r1_chk3.0_s$s" "${P5[@]}" --policy perlad --model "$S2" --check 3.0 --seed $s; done
fi
for p in il perlad; do ev "b2d_${p}_chk3.0_s2" "${B2D[@]}" --policy $p --check 3.0 --seed 2; done
j() { local s="" x; for x in "$@"; do [ -f "$E/$x/summary.json" ] && s="${s:+$s+}$E/$x"; done; echo "$s"; }
$DS eval-table --infractions --out results/perlad/check/table_b2d.md \
    --title "the 38 Bench2Drive routes of ../shared, --check 3.0 (committed models; eval seeds 0 1 2$([ -n "$S2" ] && echo "; S2: 0 1"))" \
    --runs "il + check=$(j b2d_il_chk3.0_s{0,1,2}),perlad + check=$(j b2d_perlad_chk3.0_s{0,1,2})$([ -n "$S2" ] && echo ",takead S2 round 1 + check=$(j b2d_S2r1_chk3.0_s{0,1})")"
$DS eval-table --infractions --out results/perlad/check/table_p0.md \
    --title "the held-out procedural suite (Proc0, all types + DOS), --check 3.0, eval seed 0" \
    --runs "il + check=$(j p0_il_chk3.0_s0),perlad + check=$(j p0_perlad_chk3.0_s0)"
$DS eval-table --infractions --out results/perlad/check/table_p5.md \
    --title "the TakeAD held-out suite (Proc5, all types), --check 3.0, eval seeds 0 1" \
    --runs "il + check=$(j p5_il_chk3.0_s{0,1})$([ -n "$S2" ] && echo ",takead S2 round 1 + check=$(j p5_S2r1_chk3.0_s{0,1})")"
