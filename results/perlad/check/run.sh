#!/usr/bin/env bash
# issue 18, session 21: the learned planner's candidate check (`eval --check H`, policies/learned.py CandidateCheck).
# 1. the horizon H, chosen on validation (Proc3 = results/takead/suite_p3.xml, Proc4 = results/takead/suite_p4.xml;
#    no planner was trained on them), the committed il, eval seed 0;
# 2. the chosen H (3.0 s) on the held-out sets, never used to choose anything: the 38 Bench2Drive routes of
#    ../shared (eval seeds 0, 1) and the Proc0 suite (results/perlad/suite_eval_p0.xml, seed 0), il and perlad.
# Usage: results/perlad/check/run.sh E [SHARED]    (E: where the runs go; about 40 min on 2 CPU cores)
set -euo pipefail
E=${1:?usage: run.sh E [SHARED]}
SHARED=${2:-../shared}
DS=${DS:-.venv/bin/drive-stack}
mkdir -p "$E"
ev() { local o=$1; shift; [ -f "$E/$o/summary.json" ] || $DS eval "$@" --workers 2 --out "$E/$o" > "$E/$o.log" 2>&1; }
for h in 0 1.0 2.0 3.0; do
  for p in 3 4; do ev "p${p}_il_chk$h" --routes results/takead/suite_p$p.xml --policy il --check $h --seed 0; done
done
B2D=(--routes "$SHARED/bench2drive/bench2drive220.xml" --maps-dir "$SHARED/carla_maps")
for s in 0 1; do for p in il perlad; do ev "b2d_${p}_chk3.0_s$s" "${B2D[@]}" --policy $p --check 3.0 --seed $s; done; done
for p in il perlad; do ev "p0_${p}_chk3.0_s0" --routes results/perlad/suite_eval_p0.xml --policy $p --check 3.0 --seed 0; done
