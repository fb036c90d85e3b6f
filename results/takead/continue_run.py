"""Continue a finished TakeAD run under other settings from round K on (issue 19's ablations of the late rounds).
Rounds 0..K-1 of PLAIN are what the new settings would make too (e.g. round 1 under --dagger-scope latest or
--dpo-rounds 1), so they are hard-linked into OUT with their takead.json rows, and the run resumes in OUT with PLAIN's
config changed by the KEY=VALUE pairs (values parsed as JSON, else kept as strings). The final shadow measurement
runs unless measure_final=false is given.
Usage: .venv/bin/python results/takead/continue_run.py PLAIN OUT K KEY=VALUE...
  e.g. ... results/takead/il_bc_t0 /work/e25/dpo1_t0 2 dpo_rounds=1
       ... results/takead/il_bc_t0 /work/e24/latest_t0 2 dagger_scope=latest measure_final=false (session 24)"""
import json
import os
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from drivesim.learn.takead import TakeADConfig, run_takead, saved_config

plain, out, keep = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
changes = {}
for kv in sys.argv[4:]:
    k, v = kv.split("=", 1)
    try:
        changes[k] = json.loads(v)
    except json.JSONDecodeError:
        changes[k] = v
unknown = set(changes) - {f.name for f in fields(TakeADConfig)}
if unknown:
    sys.exit(f"continue_run.py: not TakeADConfig fields: {sorted(unknown)} (see drive-stack train takead --help)")
out.mkdir(parents=True, exist_ok=True)
rows = [r for r in json.loads((plain / "takead.json").read_text())["rounds"] if r["round"] < keep]
for r in range(keep):
    if not (out / f"round_{r}").exists():
        shutil.copytree(plain / f"round_{r}", out / f"round_{r}", copy_function=os.link)
if not (out / "takead.json").exists():
    (out / "takead.json").write_text(json.dumps({"rounds": rows}, indent=2).replace(str(plain), str(out)))
cfg = saved_config(plain / "config.json")  # (a run older than a field: the value it ran with)
run_takead(TakeADConfig(**{**cfg, **changes, "out": str(out), "resume": True}))
