#!/usr/bin/env bash
# Issue 20, session 32: the TakeVLA table remade from data that committed files alone make again. Session 30's
# remake trained on the shadow collections of TakeAD chains kept outside the repository; the machine lost them
# (and session 31's training seed 1 with them). Here the takeover data are shadow-mode collections (the expert
# watches through the takeover gate with today's trigger defaults and --takeover-stall 2.0, as the TakeAD rounds
# collect) of the committed TakeAD candidates in results/takead/candidates (il_bc, the round-0 policy of the chains,
# and three chains' round 4), each on the rounds' training suites (Proc2, our Town04 routes), seed 1000; the base
# data as takevla_table.sh collects it (the expert on the perlad training suites, Proc2 with recovery noise).
# Collection is deterministic, so a later session with another TRAIN_SEEDS trains on the same data
# (E/fingerprint.json: frames and takeovers per collection, to check that).
# Usage: [TRAIN_SEEDS="0"] [NO_POST=1: without the post variant] [HELD="none pre dream": the first table's models,
#        e.g. + dream_s128, dream_sweep.sh's choice] [TABLE=table: the tables' stem] results/takevla/remake_s32/run.sh E [SHARED]
#   then results in E/tv (the tables E/tv/table_{p5,b2d}.md; copy with results/takevla/remake_s32/keep.sh E)
set -euo pipefail
E=${1:?usage: run.sh E [SHARED]}
SHARED=${2:-../shared}
DS=${DS:-.venv/bin/drive-stack}
P=results/perlad
T=results/takead
mkdir -p "$E"
[ -f "$E/data_p1/index.json" ] || $DS collect --routes "$P/suite_train_p1.xml" --out "$E/data_p1" --workers 2 --no-anno
[ -f "$E/data_p2/index.json" ] || $DS collect --routes "$P/suite_train_p2.xml" --out "$E/data_p2" --workers 2 \
    --no-anno --steer-noise 0.15 --speed-noise 1.5 --seed 100
TK=""
for c in il_bc towns_t0_r4 towns_init_t0_r4 towns_s27_t0_r4; do
  for s in p2 t04; do
    d="$E/shadow_${c}_$s"
    [ -f "$d/index.json" ] || $DS collect --routes "$T/suite_$s.xml" --maps-dir "$SHARED/carla_maps" --out "$d" \
        --workers 2 --no-anno --branches 0 --driver perlad --driver-model "$T/candidates/$c/planner.onnx" \
        --takeover --takeover-stall 2.0 --seed 1000
    TK="${TK:+$TK,}$d"
  done
done
.venv/bin/python - "$E" <<'PY'
import json, sys
from pathlib import Path
E = Path(sys.argv[1])
out = {}
for idx in sorted(E.glob("*/index.json")):
    doc = json.loads(idx.read_text())
    eps = doc["episodes"]
    out[idx.parent.name] = {"episodes": len(eps), "frames": sum(int(e.get("frames", 0)) for e in eps),
                            "takeovers": sum(int((e.get("takeovers") or {}).get("count", 0)) for e in eps)}
(E / "fingerprint.json").write_text(json.dumps(out, indent=1))
print(json.dumps(out))
PY
# the variants the target compares first (none, pre, dream), then the TakeAD-style row (post) beside them
export BASE="$E/data_p1,$E/data_p2" TK SHARED EPOCHS=4 UPDATES=150 TRAIN_SEEDS=${TRAIN_SEEDS:-0}
VARIANTS="none pre" HELD=${HELD:-none pre dream} training/scripts/takevla_table.sh "$E/tv"
[ -n "${NO_POST:-}" ] || VARIANTS="none post pre" HELD="none post pre dream" training/scripts/takevla_table.sh "$E/tv"
