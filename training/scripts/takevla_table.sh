#!/usr/bin/env bash
# Issue 20: TakeVLA, from scratch, and what pre-takeover language supervision and Scenario Dreaming add.
#   1. data: the expert on the training suites (the committed planners' data: Proc1 + Proc2) and shadow-mode
#      takeovers (the committed perlad drives the Proc2 suite, the expert takes over: TakeAD's collection);
#   2. SFT variants on the same data and budget, chosen on the Proc3 validation suite (never a reported set):
#      none (no takeover data), post (the takeovers only, TakeAD-style), pre (+ the PRE seconds before each
#      takeover with precautionary commentary), pre_plain (the same frames, plain commentary);
#   3. Scenario Dreaming (GRPO) from the pre model;
#   4. the chosen models on the held-out procedural suite (Proc5) and the Bench2Drive routes of ../shared, over
#      evaluation seeds, with average TTC; tables to OUT/*.md;
#   5. language metrics (decision, reason, hazard, advisory) on the expert's collections of those routes.
# Usage: [EPOCHS=3] [UPDATES=200] [VARIANTS="none post pre"] [HELD="none post pre dream": the models evaluated on
#        the held-out sets; dream_<name>: the dreaming run OUT/dream_<name>{,_t<s>}, e.g. a dream_sweep.sh candidate] [TRAIN_SEEDS="0"] [EVAL_SEEDS="0 1"] [BASE=dir1,dir2] [TK=dir,...]
#        [MAPS=$SHARED/carla_maps: the takeover collections' CARLA towns] [DREAM_EXTRA="": more train dreaming
#        options; the committed models' recipe was "--lr 3e-5 --kl 1.0 --adv-std-floor 1e-6"] [TABLE=table: the tables' file stem]
#        training/scripts/takevla_table.sh [OUT]          (2-core machine: about 90 minutes with the defaults)
# Training seed 0 writes OUT/sft_<variant> and OUT/dream, seed s > 0 OUT/sft_<variant>_t<s> and OUT/dream_t<s>; a
# table row is a variant's runs over every training and evaluation seed.
set -euo pipefail
OUT=${1:-results/takevla}
DS=${DS:-.venv/bin/drive-stack}
EPOCHS=${EPOCHS:-3}
UPDATES=${UPDATES:-200}
PRE=${PRE:-3.0}
VARIANTS=${VARIANTS:-none post pre}
EVAL_SEEDS=${EVAL_SEEDS:-0 1}
TRAIN_SEEDS=${TRAIN_SEEDS:-0}
DREAM_EXTRA=${DREAM_EXTRA:-}
TABLE=${TABLE:-table}
SHARED=${SHARED:-../shared}
# the takeover collections' CARLA towns (e.g. Town04 shadow runs): without them train takevla / dreaming stop at
# such a collection ("drive-stack: error: ...: no usable episodes ...; first: ... MissingMap ...")
MAPS=${MAPS:-$SHARED/carla_maps}
maps=()
[ -d "$MAPS" ] && maps=(--maps-dir "$MAPS")
P=results/perlad
T=results/takead
mkdir -p "$OUT"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/timings.log"; }

# 1. data (collected once; reused if there)
if [ -z "${BASE:-}" ]; then
  # as training/scripts/perlad_table.sh collects them (Proc2 with recovery noise)
  [ -f "$OUT/data_p1/index.json" ] || $DS collect --routes "$P/suite_train_p1.xml" --out "$OUT/data_p1" --workers 2 --no-anno
  [ -f "$OUT/data_p2/index.json" ] || $DS collect --routes "$P/suite_train_p2.xml" --out "$OUT/data_p2" --workers 2 \
      --no-anno --steer-noise 0.15 --speed-noise 1.5 --seed 100
  BASE="$OUT/data_p1,$OUT/data_p2"
fi
if [ -z "${TK:-}" ]; then
  [ -f "$OUT/shadow_p2/index.json" ] || $DS collect --routes "$T/suite_p2.xml" --out "$OUT/shadow_p2" --workers 2 \
      --no-anno --branches 0 --driver perlad --takeover --seed 1000
  TK="$OUT/shadow_p2"
fi
stamp "data ready: base $BASE; takeovers $TK"

# 2. SFT variants (validation: Proc3), 3. Scenario Dreaming from the pre-takeover model; per training seed
sfx() { [ "$1" = 0 ] && echo "" || echo "_t$1"; }
for t in $TRAIN_SEEDS; do
  for v in $VARIANTS; do
    [ -f "$OUT/sft_$v$(sfx "$t")/takevla.json" ] || $DS train takevla --data "$BASE" --takeover-data "$TK" --supervision "$v" --pre-takeover "$PRE" \
        "${maps[@]}" --epochs "$EPOCHS" --seed "$t" --out "$OUT/sft_$v$(sfx "$t")" --eval-routes "$T/suite_p3.xml" --resume \
        > "$OUT/sft_$v$(sfx "$t").log" 2>&1
    stamp "sft $v seed $t: $(grep -o 'takevla eval DS [0-9.]*' "$OUT/sft_$v$(sfx "$t").log" | tail -1)"
  done
  if [ -f "$OUT/sft_pre$(sfx "$t")/ckpt.pt" ] && [ "$UPDATES" -gt 0 ]; then
    # shellcheck disable=SC2086
    [ -f "$OUT/dream$(sfx "$t")/dreaming.json" ] || $DS train dreaming --init "$OUT/sft_pre$(sfx "$t")/ckpt.pt" --takeover-data "$TK" --pre-takeover "$PRE" \
        "${maps[@]}" --updates "$UPDATES" --seed "$t" $DREAM_EXTRA --out "$OUT/dream$(sfx "$t")" --eval-routes "$T/suite_p3.xml" \
        --resume > "$OUT/dream$(sfx "$t").log" 2>&1
    stamp "dreaming seed $t: $(grep -o 'dreaming eval DS [0-9.]*' "$OUT/dream$(sfx "$t").log" | tail -1)"
  fi
done

# 4. held-out: Proc5 and the Bench2Drive routes (skipped with a message without ../shared)
models=()   # label=file, one per variant and training seed
for v in ${HELD:-$VARIANTS dream}; do
  for t in $TRAIN_SEEDS; do
    f="$OUT/sft_$v$(sfx "$t")/model/vla.onnx"
    case $v in dream*) f="$OUT/$v$(sfx "$t")/model/vla.onnx";; esac   # dream, or another dreaming run dream_<name>
    [ -f "$f" ] && models+=("$v$(sfx "$t")=$f")
  done
done
sets=("p5|$T/suite_p5.xml|")
if [ -f "$SHARED/bench2drive/bench2drive220.xml" ]; then
  sets+=("b2d|$SHARED/bench2drive/bench2drive220.xml|--maps-dir $SHARED/carla_maps")
else
  echo "no $SHARED/bench2drive: the Bench2Drive table is skipped"
fi
for set in "${sets[@]}"; do
  IFS='|' read -r name routes extra <<< "$set"
  declare -A dirs=()
  order=()
  for m in "${models[@]}"; do
    label=${m%%=*}; file=${m#*=}; row=${label%_t[0-9]*}
    [ -n "${dirs[$row]:-}" ] || order+=("$row")
    for s in $EVAL_SEEDS; do
      d="$OUT/eval_${name}_${label}_s$s"
      # shellcheck disable=SC2086
      [ -f "$d/summary.json" ] || $DS eval --routes "$routes" $extra --policy takevla --model "$file" --seed "$s" \
          --workers 2 --out "$d" > "$d.log" 2>&1
      dirs[$row]="${dirs[$row]:+${dirs[$row]}+}$d"
    done
  done
  runs=""
  for row in "${order[@]}"; do runs="${runs:+$runs,}$row=${dirs[$row]}"; done
  $DS eval-table --runs "$runs" --infractions \
      --title "TakeVLA on $name, training seeds $TRAIN_SEEDS x eval seeds $EVAL_SEEDS" --out "$OUT/${TABLE}_$name.md"
  unset dirs
  stamp "table $name"
done

# 5. language metrics on the expert's held-out collections (evaluation only: the same routes as the tables)
for set in "${sets[@]}"; do
  IFS='|' read -r name routes extra <<< "$set"
  # shellcheck disable=SC2086
  [ -f "$OUT/expert_$name/index.json" ] || $DS collect --routes "$routes" $extra --out "$OUT/expert_$name" --workers 2 \
      --no-anno --branches 0 > "$OUT/expert_$name.log" 2>&1
  for m in "${models[@]}"; do
    label=${m%%=*}; file=${m#*=}
    [ "$label" = "${label%_t[0-9]*}" ] || continue   # training seed 0's models
    # shellcheck disable=SC2086
    [ -f "$OUT/language_${name}_$label.json" ] || $DS eval-language --data "$OUT/expert_$name" $extra --model "$file" \
        --json "$OUT/language_${name}_$label.json" > /dev/null
  done
  stamp "language $name"
done
