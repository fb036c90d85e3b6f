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
        --seed 0 --resume --out "$T/recipe_il/$1" --takeover-steer-min-speed 0 --takeover-stall-speed 0 "${@:2}"; }
# (--takeover-steer-min-speed 0 --takeover-stall-speed 0: the shadow triggers as these runs had them, before session 27)
run A --routes $T/suite_p2.xml "${A[@]}"
run C --routes $T/suite_p2.xml,$T/suite_p4.xml,$T/suite_p6.xml "${A[@]}"
# Session 20: collision/TTC takeovers only (--takeover-steer 0), same screen (2 rounds, seed 0, Proc3):
#   S0: A without the steering trigger
#   S1: S0 with 3 DAgger epochs at lr 3e-5 (A moves the planner by ~4 DAgger steps a round)
#   (S1, C2, S2 ran with --no-measure-final)
#   C2: A without the steering trigger, takeovers on Proc2 + Proc4 + Proc6, --drop-waiting
#   S2: S0 with the stall trigger (--takeover-stall 2.0: the expert also takes over where the ego stood 2 s)
#   held-out check of S2 round 1: results/takead/stall_S2_heldout.json
#   training seed 1: run S2_t1 ... --seed 1 --rounds 1 (results/takead/recipe_il_S2_t1.takead.json)
run S0 --routes $T/suite_p2.xml --takeover-steer 0 "${A[@]}"
run S1 --routes $T/suite_p2.xml --takeover-steer 0 --lr 3e-5 --dagger-epochs 3 --dpo-lr 1e-5 --w-nll 0 --no-aggregate-base
run C2 --routes $T/suite_p2.xml,$T/suite_p4.xml,$T/suite_p6.xml --takeover-steer 0 "${A[@]}" --drop-waiting
run S2 --routes $T/suite_p2.xml --takeover-steer 0 --takeover-stall 2.0 "${A[@]}"
