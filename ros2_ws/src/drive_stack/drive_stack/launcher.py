"""`drive-stack-ros stack run` (drive_stack/cli.py): start the node table as separate processes over DDS, without
launch_ros.

Each node runs as `python -m drive_stack.<node> --ros-args --params-file OUT/params/<node>.yaml`, with its log in
OUT/logs/<node>.log, on a fresh ROS_DOMAIN_ID with discovery limited to localhost (runs never see each other).
The run ends when the pseudo-simulator has scored the route; the other nodes then get SIGINT (the recorder
closes its bags) and the result is read back from OUT/summary.json and the bags.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from drivesim.policies import check_policy
from drivesim.stack.faults import INJECTED_EXIT, parse_stack_fault

from .node_table import nodes_for, ready_set


def _params(out: Path, name: str, values: dict) -> Path:
    p = out / "params" / f"{name}.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({f"/{name}": {"ros__parameters": values}}, indent=2))  # JSON is valid YAML
    return p


def procedural_route(out: Path, seed: int, min_length: float = 250.0) -> tuple[str, str]:
    """A random route of at least MIN_LENGTH metres on procedural town Proc<seed>, written to OUT/routes.xml:
    (routes file, route id)."""
    from drivesim.maps import TownLoader
    from drivesim.routes import write_routes
    from drivesim.routes.generate import random_routes

    g = TownLoader().load(f"Proc{seed}")
    spec = random_routes(g, 1, seed=seed, min_length=min_length)[0]
    path = out / "routes.xml"
    write_routes([spec], path)
    return str(path), spec.route_id


def stack_run(routes: str | None, route_id: str | None, out: str, maps_dir: str | None = None, policy: str = "rule",
              seed: int = 0, faults: list[str] | None = None, record: str = "takeover", timeout: float = 900.0,
              tick_timeout: float = 1.0, node_overrides: dict | None = None, perception: str = "privileged",
              route_length: float = 250.0, log=print) -> dict:
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in ("bags", "logs", "params"):  # the run owns its folder: nothing of an earlier run is mistaken for ours
        shutil.rmtree(out_dir / old, ignore_errors=True)
    for old in ("results.json", "summary.json", "latency.json"):
        (out_dir / old).unlink(missing_ok=True)
    # the model the planner will load, resolved and checked here (the nodes run in out_dir), and handed to it by path
    model = check_policy(policy, (node_overrides or {}).get("planner", {}).get("model") or None)
    if model is not None:
        log(f"policy {policy}: model {model['path']} (sha256 {model['sha256'][:16]})")
    if routes is None:
        routes, route_id = procedural_route(out_dir, seed, route_length)
    elif route_id is None:
        raise ValueError("--route-id is required with --routes")
    fault_by_node: dict[str, str] = {}
    for f in faults or []:
        node, spec = parse_stack_fault(f)
        fault_by_node[node] = spec
    names = {n.name for n in nodes_for("pseudo")}
    unknown = sorted(set(fault_by_node) - names)
    if unknown:
        raise ValueError(f"--fault: unknown node(s) {unknown}; nodes: {sorted(names)}")
    values = {
        "pseudo_sim": {"routes_file": str(Path(routes).resolve()), "route_id": str(route_id),
                       "maps_dir": str(Path(maps_dir).resolve()) if maps_dir else "", "seed": seed,
                       "out_dir": str(out_dir), "tick_timeout": tick_timeout, "policy_name": policy,
                       "perception": perception, "wired_nodes": ["planner", *ready_set("pseudo")]},
        "perception_input": {"perception": perception},
        "planner": {"policy": policy, "wait_for": ready_set("pseudo"), **({"model": model["path"]} if model else {})},
        "recorder": {"out_dir": str(out_dir / "bags"), "mode": record},
    }
    for name, extra in (node_overrides or {}).items():
        values.setdefault(name, {}).update(extra)
    env = dict(os.environ)
    domain = os.environ.get("DRIVE_STACK_DOMAIN_ID") or str(random.SystemRandom().randint(1, 100))
    env.update({"ROS_DOMAIN_ID": domain, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "PYTHONUNBUFFERED": "1",
                "AMENT_PREFIX_PATH": os.pathsep.join(x for x in (sys.prefix, env.get("AMENT_PREFIX_PATH", "")) if x)})
    (out_dir / "logs").mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    files = []
    t0 = time.perf_counter()
    try:
        for spec in nodes_for("pseudo"):
            v = dict(values.get(spec.name, {}))
            if spec.name in fault_by_node:
                v["fault"] = fault_by_node[spec.name]
            pfile = _params(out_dir, spec.name, v)
            logf = open(out_dir / "logs" / f"{spec.name}.log", "w")  # noqa: SIM115
            files.append(logf)
            procs[spec.name] = subprocess.Popen(
                [sys.executable, "-m", spec.module, "--ros-args", "--params-file", str(pfile), "-r", f"__node:={spec.name}"],
                stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=out_dir)
        sim = procs["pseudo_sim"]
        exited: dict[str, int] = {}
        while sim.poll() is None:
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"the route did not finish within {timeout:.0f} s (logs in {out_dir / 'logs'})")
            for name, p in procs.items():
                if name != "pseudo_sim" and name not in exited and p.poll() is not None:
                    exited[name] = p.returncode
                    log(f"node {name} exited with code {p.returncode} (see {out_dir / 'logs' / (name + '.log')})")
                    if p.returncode not in (0, INJECTED_EXIT):  # it failed (not a fault we injected): stop now
                        tail = (out_dir / "logs" / f"{name}.log").read_text()[-3000:]
                        raise RuntimeError(f"node {name} failed with exit code {p.returncode}:\n{tail}")
            time.sleep(0.05)
        if sim.returncode != 0:
            tail = (out_dir / "logs" / "pseudo_sim.log").read_text()[-3000:]
            raise RuntimeError(f"pseudo_sim failed with exit code {sim.returncode}:\n{tail}")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        t_int = time.perf_counter()
        stopped: dict[str, float] = {}  # node -> seconds after SIGINT (polled: the slowest is named)
        while len(stopped) < len(procs) and time.perf_counter() - t_int < 15:
            for name, p in procs.items():
                if name not in stopped and p.poll() is not None:
                    stopped[name] = time.perf_counter() - t_int
            time.sleep(0.02)
        for name, p in procs.items():
            if name not in stopped:
                p.kill()
                p.wait()
                log(f"node {name} did not stop within 15 s of SIGINT: killed (see {out_dir / 'logs' / (name + '.log')})")
        slowest = max(stopped, key=stopped.get, default=None)
        log(f"nodes stopped {time.perf_counter() - t_int:.1f} s after SIGINT"
            + (f" (the last: {slowest}, {stopped[slowest]:.1f} s)" if slowest else ""))
        for f in files:
            f.close()
    summary = json.loads((out_dir / "summary.json").read_text())
    results = json.loads((out_dir / "results.json").read_text())
    rec = results["_checkpoint"]["records"][0]
    silent = rec["meta"].get("stack", {}).get("nodes_silent", {})  # when the simulator last heard each dead node
    summary["nodes_died"] = {n: {"exit_code": c, "log": str(out_dir / "logs" / f"{n}.log"),
                                 **silent.get(n, {})}
                             for n, c in exited.items()}
    summary["model"] = model  # the planner's file and sha256 (learned policies), as `eval` records it
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    takeovers = sorted((out_dir / "bags").glob("takeover_*/takeover.json")) if (out_dir / "bags").exists() else []
    return {"summary": summary, "record": rec, "wall_s": time.perf_counter() - t0, "out": str(out_dir),
            "takeovers": [dict(json.loads(p.read_text()), bag=str(p.parent)) for p in takeovers],
            "node_exits": {n: p.returncode for n, p in procs.items()}}
