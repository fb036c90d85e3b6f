#!/usr/bin/env bash
# issue 18, session 18: the held-out tables of the committed planners (runs of after.sh / after2.sh in E)
set -euo pipefail
E=${E:-/work/e21}
DS=${DS:-.venv/bin/drive-stack}
j() { local s="" x; for x in "$@"; do [ -f "$E/$x/summary.json" ] && s="${s:+$s+}$E/$x"; done; echo "$s"; }
for set in b2d p0; do
  runs="expert=$(j ${set}_expert_s0),rule=$(j ${set}_rule_s0),il=$(j ${set}_il_s{0,1,2})"
  runs="$runs,perlad=$(j ${set}_perlad_t{0,1}_s{0,1,2}),perlad_logreplay=$(j ${set}_perlad_logreplay_t0_s{0,1,2})"
  runs=$(echo "$runs" | tr ',' '\n' | grep -v '=$' | paste -sd,)  # a policy without finished runs is left out
  name=$([ $set = b2d ] && echo "the 38 Bench2Drive routes of ../shared" || echo "the held-out procedural suite (Proc0, all types + DOS)")
  $DS eval-table --infractions --runs "$runs" --out results/perlad/committed/table_$set.md \
      --title "committed planners on $name: RL seeds 0 1 (log replay: 0) x eval seeds 0 1 2 (expert, rule: seed 0)"
done
