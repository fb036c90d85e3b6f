#!/usr/bin/env bash
# Session 22, issue 19: TakeAD with the candidate check in the loop (`train takead --check 3.0`): the planner drives
# the shadow rounds and the evaluations with the check of issue 18 (results/perlad/check), so the expert takes over
# only where the checked planner fails. Recipe S2 of recipe_il_screen.sh (the stall trigger) from the committed il,
# 2 rounds, training + evaluation seed 0, Proc3 validation; round 0 is il + check (89.41 in
# results/perlad/check/validation.json, the same run). Result: results/takead/recipe_il_S2C.takead.json
set -euo pipefail
DS=${DS:-.venv/bin/drive-stack}
T=results/takead
A=(--lr 1e-5 --dpo-lr 1e-5 --w-nll 0 --no-aggregate-base)
[ -f "$T/data_p1/index.json" ] || $DS collect --routes "$T/suite_p1.xml" --out "$T/data_p1" --workers 2 --no-anno --branches 0
$DS train takead --data $T/data_p1 --init models/il/planner.onnx --eval-routes $T/suite_p3.xml --rounds ${ROUNDS:-2} \
    --seed 0 --resume --out "$T/recipe_il/S2C" --routes $T/suite_p2.xml --takeover-steer 0 --takeover-stall 2.0 \
    --check 3.0 --no-measure-final "${A[@]}"
cp "$T/recipe_il/S2C/takead.json" "$T/recipe_il_S2C.takead.json"
