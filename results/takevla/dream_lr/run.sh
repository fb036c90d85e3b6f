#!/usr/bin/env bash
# Session 29, issue 20: does Scenario Dreaming learn, and at which step size? The committed recipe (--lr 3e-5 --kl 1.0)
# left the held-out reward flat over 150 updates. Here: one SFT `pre` model on a small local dataset (the expert on
# Proc1: results/takead/data_p1; takeovers: TakeAD rounds' shadow collections), then `train dreaming` under several
# step sizes and training seeds, each judged by its held-out scenarios (greedy and sampled reward) and in closed loop
# on the Proc3 validation suite (never a reported set), eval seeds 0 1. OLD: a checkout of the code before the
# read-speed-points change (git worktree add OLD 418ea30), for the committed recipe as it ran.
# Usage: results/takevla/dream_lr/run.sh E TAKEOVER_DATA[,...] OLD          (~30 min on a 2-core machine)
set -euo pipefail
E=${1:?usage: run.sh E TAKEOVER_DATA OLD}; TK=${2:?takeover data}; OLD=${3:?old checkout}
DS=${DS:-.venv/bin/drive-stack}
mkdir -p "$E/val"
[ -f "$E/sft_pre/ckpt.pt" ] || $DS train takevla --data results/takead/data_p1 --takeover-data "$TK" \
   --supervision pre --pre-takeover 3.0 --epochs 3 --seed 0 --out "$E/sft_pre" > "$E/sft_pre.log" 2>&1
dream() {  # NAME SEED CODE_ROOT EXTRA...
  local name=$1 seed=$2 root=$3; shift 3
  [ -f "$E/$name/dreaming.json" ] || PYTHONPATH=$root/training .venv/bin/python -m drivesim.cli train dreaming \
     --init "$E/sft_pre/ckpt.pt" --takeover-data "$TK" --pre-takeover 3.0 --updates 150 --seed "$seed" \
     --out "$E/$name" "$@" > "$E/$name.log" 2>&1
}
dream old_committed 0 "$OLD" --lr 3e-5 --kl 1.0
dream new_committed 0 . --lr 3e-5 --kl 1.0
dream new_committed_t1 1 . --lr 3e-5 --kl 1.0
dream new_default 0 .
dream new_lr3e4_kl01 0 . --lr 3e-4 --kl 0.1
dream new_lr3e4_kl01_t1 1 . --lr 3e-4 --kl 0.1
dream new_lr3e4_kl01_floor 0 . --lr 3e-4 --kl 0.1 --adv-std-floor 0.5
dream new_floor_t1 1 . --lr 3e-4 --kl 0.1 --adv-std-floor 0.5
for ns in ${EVALS:-sft_pre:0 sft_pre:1 old_committed:0 old_committed:1 new_committed:0 new_committed_t1:0 new_default:0 new_lr3e4_kl01:0 new_lr3e4_kl01:1 new_lr3e4_kl01_t1:0 new_lr3e4_kl01_floor:0 new_lr3e4_kl01_floor:1 new_floor_t1:0}; do
  n=${ns%:*}; s=${ns#*:}
  [ -f "$E/val/${n}_s$s/summary.json" ] || $DS eval --routes results/takead/suite_p3.xml --policy takevla --model "$m" \
      --workers 2 --seed "$s" --out "$E/val/${n}_s$s" > "$E/val/${n}_s$s.log" 2>&1
done
.venv/bin/python results/takevla/dream_lr/summary.py "$E" > results/takevla/dream_lr/summary.json
