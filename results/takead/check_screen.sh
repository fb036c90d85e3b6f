#!/usr/bin/env bash
# Sessions 22-23, issue 19: TakeAD with the candidate check of issue 18 in the loop (results/perlad/check): the
# planner drives the shadow rounds and the evaluations as `eval --check 3.0 [--unstall 5.0]` would, so the expert
# takes over only where the checked planner fails. Recipe S2 of recipe_il_screen.sh (the stall trigger) from the
# committed il, 2 rounds, training + evaluation seed 0, Proc3 validation. Variants (VARIANTS, default "S2CU"):
#   S2C  = S2 + --check 3.0                 (round 0 = il + check 3.0: 85.45 in results/perlad/check/validation.json)
#   S2CU = S2 + --check 3.0 --unstall 5.0   (round 0 = il + check 3.0 + unstall 5.0: 91.97 there)
# Result: results/takead/recipe_il_<variant>.takead.json
set -euo pipefail
DS=${DS:-.venv/bin/drive-stack}
T=results/takead
A=(--lr 1e-5 --dpo-lr 1e-5 --w-nll 0 --no-aggregate-base)
[ -f "$T/data_p1/index.json" ] || $DS collect --routes "$T/suite_p1.xml" --out "$T/data_p1" --workers 2 --no-anno --branches 0
for V in ${VARIANTS:-S2CU}; do
    case $V in
        S2C) C=(--check 3.0) ;;
        S2CU) C=(--check 3.0 --unstall 5.0) ;;
        *) echo "unknown variant $V" >&2; exit 2 ;;
    esac
    $DS train takead --data $T/data_p1 --init models/il/planner.onnx --eval-routes $T/suite_p3.xml --rounds ${ROUNDS:-2} \
        --seed 0 --resume --out "$T/recipe_il/$V" --routes $T/suite_p2.xml --takeover-steer 0 --takeover-stall 2.0 --takeover-stall-speed 0 \
        "${C[@]}" --no-measure-final "${A[@]}"
    cp "$T/recipe_il/$V/takead.json" "$T/recipe_il_$V.takead.json"
done
