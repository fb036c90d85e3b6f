#!/usr/bin/env bash
# Session 19, issue 19: round recipes from the session-18 il, screened on the Proc3 validation suite (2 rounds,
# training seed 0, evaluation seed 0), against the default recipe's rounds (results/takead/il_t0: 78.61 / 74.70 / 74.06).
#   A: the perlad recipe (lr 1e-5, DPO lr 1e-5, no NLL term, no base data), takeovers on Proc2
#   C: A with takeovers on Proc2 + Proc4 + Proc6 (3x the disengagement states per round)
set -euo pipefail
DS=${DS:-.venv/bin/drive-stack}
T=results/takead
A=(--lr 1e-5 --dpo-lr 1e-5 --w-nll 0 --no-aggregate-base)
run() { $DS train takead --data $T/data_p1 --init models/il/planner.onnx --eval-routes $T/suite_p3.xml --rounds 2 \
        --seed 0 --resume --out "$T/recipe_il/$1" "${@:2}"; }
run A --routes $T/suite_p2.xml "${A[@]}"
run C --routes $T/suite_p2.xml,$T/suite_p4.xml,$T/suite_p6.xml "${A[@]}"
