#!/usr/bin/env bash
# issue 18: the learned planner's candidate check (`eval --check H`, policies/learned.py CandidateCheck) and its
# unstall (`--unstall U`, session 22).
# 1. validation (Proc3 = results/takead/suite_p3.xml, Proc4 = results/takead/suite_p4.xml; no planner was trained
#    on them), the committed il, eval seed 0: the horizon H, then the unstall time U at the chosen H (3.0 s);
#    validation.py writes validation.json from these runs;
# 2. held out, never used to choose anything, for the check alone (chk3.0) and the check with the chosen unstall
#    (chk3.0_u$U): the 38 Bench2Drive routes of ../shared (il and perlad, eval seeds 0 1 2), the Proc0 suite
#    (results/perlad/suite_eval_p0.xml, il and perlad, seed 0), the TakeAD held-out suite Proc5
#    (results/takead/suite_p5.xml, il, seeds 0 1); tables table_{b2d,p0,p5}.md, by type per_type_b2d.md.
# Usage: [U=2.0] results/perlad/check/run.sh E [SHARED]   (E: where the runs go; on 2 CPU cores about 50 min for
#        part 1 and 65 for part 2; SKIP_VALIDATION=1 runs part 2 only; P0_POLICIES=il leaves perlad out on Proc0)
set -euo pipefail
E=${1:?usage: run.sh E [SHARED]}
SHARED=${2:-../shared}
DS=${DS:-.venv/bin/drive-stack}
U=${U:-2.0}
HERE=results/perlad/check
mkdir -p "$E"
ev() { local o=$1; shift; [ -f "$E/$o/summary.json" ] || $DS eval "$@" --workers 2 --out "$E/$o" > "$E/$o.log" 2>&1; }
if [ -z "${SKIP_VALIDATION:-}" ]; then
  for h in 0 1.0 2.0 3.0; do
    for p in 3 4; do ev "p${p}_il_chk$h" --routes results/takead/suite_p$p.xml --policy il --check $h --seed 0; done
  done
  for u in 2.0 5.0; do
    for p in 3 4; do ev "p${p}_il_chk3.0_u$u" --routes results/takead/suite_p$p.xml --policy il --check 3.0 --unstall $u --seed 0; done
  done
  .venv/bin/python $HERE/validation.py "$E" > $HERE/validation.json
fi
B2D=(--routes "$SHARED/bench2drive/bench2drive220.xml" --maps-dir "$SHARED/carla_maps")
P0=(--routes results/perlad/suite_eval_p0.xml)
P5=(--routes results/takead/suite_p5.xml)
for v in chk3.0 "chk3.0_u$U"; do
  a=(--check 3.0); [ "$v" = chk3.0 ] || a+=(--unstall "$U")
  for s in 0 1 2; do for p in il perlad; do ev "b2d_${p}_${v}_s$s" "${B2D[@]}" --policy $p "${a[@]}" --seed $s; done; done
  for s in 0 1; do ev "p5_il_${v}_s$s" "${P5[@]}" --policy il "${a[@]}" --seed $s; done
  for p in ${P0_POLICIES:-il perlad}; do ev "p0_${p}_${v}_s0" "${P0[@]}" --policy $p "${a[@]}" --seed 0; done
done
j() { local s="" x; for x in "$@"; do [ -f "$E/$x/summary.json" ] && s="${s:+$s+}$E/$x"; done; echo "$s"; }
rows() {  # rows SET SEEDS POLICIES -> "il + check=...,il + check + unstall=...,..."
  local set=$1 seeds=$2 p v r=""
  for p in $3; do for v in chk3.0 "chk3.0_u$U"; do
    local runs=() s
    for s in $seeds; do runs+=("${set}_${p}_${v}_s$s"); done
    r="${r:+$r,}$p + check$([ "$v" = chk3.0 ] || echo " + unstall")=$(j "${runs[@]}")"
  done; done
  echo "$r"
}
$DS eval-table --infractions --out $HERE/table_b2d.md --runs "$(rows b2d "0 1 2" "il perlad")" \
    --title "the 38 Bench2Drive routes of ../shared, --check 3.0 [--unstall $U] (committed models; eval seeds 0 1 2)"
$DS eval-table --infractions --out $HERE/table_p0.md --runs "$(rows p0 0 "${P0_POLICIES:-il perlad}")" \
    --title "the held-out procedural suite (Proc0, all types + DOS), --check 3.0 [--unstall $U], eval seed 0"
$DS eval-table --infractions --out $HERE/table_p5.md --runs "$(rows p5 "0 1" il)" \
    --title "the TakeAD held-out suite (Proc5, all types), --check 3.0 [--unstall $U], eval seeds 0 1"
.venv/bin/python $HERE/per_type.py "$E" "$U" > $HERE/per_type_b2d.md
