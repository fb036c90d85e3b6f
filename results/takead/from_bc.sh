#!/usr/bin/env bash
# Session 23, issue 19: TakeAD from the behaviour-cloning planner, the start the TakeAD paper has (an imitation
# policy before any on-policy data), where our committed il already had the pipeline's DAgger stage (every frame of
# the il_bc's drives on Proc1, Proc2, Town02, Town11 labelled by the expert: 146k frames). The default recipe
# (steering trigger 0.2, collision/TTC triggers, DAgger 1 epoch + DPO beta 0.1, base data aggregated) with the stall
# trigger (--takeover-stall 2.0, recipe S2), takeovers on Proc2, 4 rounds, training + evaluation seed 0, Proc3
# validation each round. il_bc: `STAGES=collect,il training/scripts/perlad_pipeline.sh PIPE ../shared` (its
# PIPE/models/il_bc). Then the chosen round on the held-out sets (Proc5, Bench2Drive; eval seeds 0 1).
# Usage: results/takead/from_bc.sh PIPE E [SHARED]   -> results/takead/from_bc.takead.json, from_bc_heldout.json
set -euo pipefail
PIPE=${1:?usage: from_bc.sh PIPE E [SHARED]}
E=${2:?usage: from_bc.sh PIPE E [SHARED]}
SHARED=${3:-../shared}
DS=${DS:-.venv/bin/drive-stack}
T=results/takead
[ -f "$T/data_p1/index.json" ] || $DS collect --routes "$T/suite_p1.xml" --out "$T/data_p1" --workers 2 --no-anno --branches 0
$DS train takead --data $T/data_p1 --init "$PIPE/models/il_bc/planner.onnx" --eval-routes $T/suite_p3.xml \
    --rounds ${ROUNDS:-4} --seed 0 --resume --out "$E/from_bc" --routes $T/suite_p2.xml --takeover-stall 2.0
cp "$E/from_bc/takead.json" "$T/from_bc.takead.json"
