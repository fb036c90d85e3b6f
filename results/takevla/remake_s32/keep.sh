#!/usr/bin/env bash
# Copies what run.sh made in E/tv into results/takevla/remake_s32 (small files only: configs, metrics, the per-run
# evaluation summaries, tables, language metrics, dreaming curves; no checkpoints or data) and E/fingerprint.json.
# Usage: results/takevla/remake_s32/keep.sh E
set -euo pipefail
E=${1:?usage: keep.sh E}
R=results/takevla/remake_s32
mkdir -p "$R/evals" "$R/language"
cp "$E/fingerprint.json" "$R/"
cp "$E"/tv/table_*.md "$E/tv/timings.log" "$R/"
for d in "$E"/tv/sft_* "$E"/tv/dream*; do
  [ -f "$d/takevla.json" ] || [ -f "$d/dreaming.json" ] || continue   # finished runs only
  n=$(basename "$d"); mkdir -p "$R/$n"
  for f in commentary_counts.json metrics.json config.json takevla.json dreaming.json curves.png; do
    [ -f "$d/$f" ] && cp "$d/$f" "$R/$n/"
  done
done
for d in "$E"/tv/eval_*/; do
  [ -f "$d/summary.json" ] && cp "$d/summary.json" "$R/evals/$(basename "$d").json"
done
[ -f "$E/tv/dream_sweep.json" ] && cp "$E/tv/dream_sweep.json" "$R/"   # dream_sweep.sh's validation table
for f in "$E"/tv/language_*.json; do [ -f "$f" ] && cp "$f" "$R/language/"; done
echo "kept in $R: $(find "$R" -type f | wc -l) files"
