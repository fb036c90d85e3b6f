#!/usr/bin/env bash
# Session 24, issue 19: a finished TakeAD run continued as `--keep-best` (each round starts from the policy with
# the best validation DS so far, not the last round's). The rounds where both chains start from the previous round
# (every earlier round was the best so far) are the same in both: they are copied from PLAIN (hard links) and the
# run resumes with --keep-best from the first round where they part, with PLAIN's config otherwise (its
# config.json). Resumed rounds draw their minibatches from a fresh generator (as any --resume does).
# Usage: results/takead/keep_best.sh PLAIN OUT   (PLAIN: a `train takead` run directory with --eval-routes)
set -euo pipefail
PLAIN=${1:?usage: keep_best.sh PLAIN OUT}
OUT=${2:?usage: keep_best.sh PLAIN OUT}
mkdir -p "$OUT"
.venv/bin/python - "$PLAIN" "$OUT" <<'PY'
import json, shutil, sys
from pathlib import Path

from drivesim.learn.takead import TakeADConfig, best_round, run_takead, saved_config

plain, out = Path(sys.argv[1]), Path(sys.argv[2])
rep = json.loads((plain / "takead.json").read_text())
rows = sorted(rep["rounds"], key=lambda r: r["round"])
shared = 1  # round r is shared when the keep-best chain also starts it from round r-1
while shared < len(rows) and best_round(rows[:shared]) == shared - 1:
    shared += 1
for r in range(shared):
    dst = out / f"round_{r}"
    if not dst.exists():
        shutil.copytree(plain / f"round_{r}", dst, copy_function=__import__("os").link)
text = json.dumps({"rounds": rows[:shared]}, indent=2).replace(str(plain), str(out))
(out / "takead.json").write_text(text)
print(f"rounds 0-{shared - 1} shared with {plain}; --keep-best from round {shared}", flush=True)
cfg = saved_config(plain / "config.json")  # (a run older than a field: the value it ran with)
run_takead(TakeADConfig(**{**cfg, "out": str(out), "keep_best": True, "resume": True}))
PY
