"""Benchmarks of the pseudo-simulator (results as JSON; never timed unit tests)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from .evaluation.runner import realtime_factor, run_route
from .loop import ClosedLoop
from .maps import TownLoader
from .routes.generate import random_routes
from .routes.planner import plan_route
from .scenarios.scene import route_scene, spawn_background
from .sim.state import Behavior
from .sim.world import Controls


def _batched_loop(g, num_envs: int, max_agents: int, steps: int, seed: int, barrier=None) -> dict:
    """Step a dense batch (every slot an IDM vehicle) with every Bench2Drive criterion on: timings."""
    specs = random_routes(g, min(num_envs, 16), seed=seed)
    dense = [plan_route(g, specs[e % len(specs)]) for e in range(num_envs)]
    state = route_scene(g, dense, max_agents=max_agents, seed=seed, background=False)
    rng = np.random.default_rng(seed)
    for e in range(num_envs):  # dense traffic: fill every slot with IDM vehicles
        spawn_background(state, e, g, dense[e].xy, rng, spacing=12.0, radius=400.0)
    n_idm = int((state.valid & (state.behavior == Behavior.IDM)).sum())
    loop = ClosedLoop(g, dense, state=state, log_trajectory=False)
    controls = Controls(np.full(num_envs, 0.3), np.zeros(num_envs), np.zeros(num_envs))
    loop.step(controls)  # warm-up
    if barrier is not None:
        barrier.wait()  # every process starts timing together
    t0 = time.perf_counter()
    sim0 = loop.sim_seconds
    for _ in range(steps):
        loop.step(controls)
    return {"wall": time.perf_counter() - t0, "t_sim": loop.sim_seconds - sim0, "idm_agents": n_idm}


def _worker(args) -> dict:
    town, maps_dir, num_envs, max_agents, steps, seed, barrier = args
    return _batched_loop(TownLoader(maps_dir).load(town), num_envs, max_agents, steps, seed, barrier)


SINGLE_ROUTES = 5  # Bench2Drive routes (or procedural ones) timed for the single-route real-time factor
TIMED_RUNS = 3  # per route, after a warm-up run; the median counts


def single_routes(g, routes_file: str | None, maps_dir: str | None, n: int = SINGLE_ROUTES, seed: int = 0) -> dict:
    """Real-time factor of single closed-loop routes (rule policy, background traffic, every criterion, one env),
    each driven once to warm the process up (the town's lazy caches, compiled kernels) and then `TIMED_RUNS`
    times, the median counted: the first `n` Bench2Drive routes (by id) whose town is in `maps_dir` when
    `routes_file` is given and has any, else `n` random routes on `g`."""
    from .routes.xml import parse_routes

    loader, specs, source = TownLoader(maps_dir), [], f"random routes on {g.name}"
    if routes_file and Path(routes_file).exists():
        have = [r for r in sorted(parse_routes(routes_file).routes, key=lambda r: r.route_id)
                if loader.available(r.town)]
        if have:
            specs, source = have[:n], f"Bench2Drive routes of {routes_file} in {maps_dir}"
    if not specs:
        specs = random_routes(g, n, seed=seed + 1)
    rows = []
    for spec in specs:
        town = loader.load(spec.town) if spec.town != g.name else g
        run_route(town, spec, "rule", seed=seed)  # warm: map caches, compiled kernels
        eps = sorted((run_route(town, spec, "rule", seed=seed) for _ in range(TIMED_RUNS)), key=lambda ep: ep.wall_time)
        ep = eps[len(eps) // 2]
        rows.append({"route_id": spec.route_id, "town": spec.town, "route_length_m": ep.record["meta"]["route_length"],
                     "sim_time_s": ep.steps * 0.05, "wall_s": ep.wall_time, "realtime_factor": realtime_factor(ep),
                     "realtime_factor_runs": [round(realtime_factor(x), 1) for x in eps], "status": ep.record["status"]})
    rtf = [r["realtime_factor"] for r in rows]
    return {"source": source, "realtime_factor": float(np.median(rtf)), "realtime_factor_min": float(np.min(rtf)),
            "target_realtime_factor": 100, "routes": rows}


def bench_sim(num_envs: int = 256, max_agents: int = 64, steps: int = 100, town: str = "Proc0",
              maps_dir: str | None = None, seed: int = 0, procs: int | None = None,
              routes_file: str | None = None) -> dict:
    """One process stepping one batch, then `procs` processes (default: one per CPU) each stepping its own batch
    of the same size at the same time: the machine's throughput, as a vectorised-env trainer would use it. Then
    single closed-loop routes (`single_routes`): Bench2Drive routes from `routes_file` where their maps are in
    `maps_dir`."""
    import multiprocessing as mp

    g = TownLoader(maps_dir).load(town)
    one = _batched_loop(g, num_envs, max_agents, steps, seed)
    agent_steps = num_envs * max_agents * steps
    procs = procs or os.cpu_count() or 1
    ctx = mp.get_context("spawn")
    with ctx.Manager() as mgr, ctx.Pool(procs) as pool:
        barrier = mgr.Barrier(procs)
        runs = pool.map(_worker, [(town, maps_dir, num_envs, max_agents, steps, seed + 1000 * i, barrier)
                                  for i in range(procs)])
    wall_all = max(r["wall"] for r in runs)
    single = single_routes(g, routes_file, maps_dir, seed=seed)
    return {
        "what": ("batched step (ego bicycle + IDM lane following with lights, stop signs, junction yielding) "
                 "plus every Bench2Drive criterion (collisions, red lights, stop signs, lanes, progress, TTC) "
                 "every step; agent-steps counts all env x agent slots. agent_steps_per_s: `processes` processes, "
                 "each stepping its own batch of num_envs at the same time; _one_process: a single batch alone"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "town": town,
        "num_envs": num_envs,
        "max_agents": max_agents,
        "idm_agents": one["idm_agents"],
        "steps": steps,
        "processes": procs,
        "agent_steps_per_s": procs * agent_steps / wall_all,
        "agent_steps_per_s_one_process": agent_steps / one["wall"],
        "agent_steps_per_s_one_process_step_only": agent_steps / one["t_sim"],
        "ms_per_step_one_process": 1000 * one["wall"] / steps,
        "target_agent_steps_per_s": 5_000_000,
        "single_route": single,
    }


def bench_infer(models: dict[str, str], batch: int = 256, backend: str = "auto", repeats: int = 300,
                threads: int = 1, log=None) -> dict:
    """Per-call latency of each ONNX model on the chosen backend, at batch 1 (the deployed file) and at a
    training batch (the same network re-exported for `batch` from its manifest's checkpoint, if present; else
    only batch 1). models: {name: onnx path}."""
    import tempfile
    import time as _t

    from .models.runtime import InferenceModel

    out = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
           "backend_requested": backend, "threads": threads, "models": {}}
    for name, path in models.items():
        rows = {}
        m1 = InferenceModel(path, backend, threads=threads)
        variants = [(1, m1)]
        ck = (m1.manifest or {}).get("checkpoint")
        if batch > 1 and ck and Path(ck).exists():
            from .models.checkpoint import load_model
            from .models.export import export_onnx

            model, _ = load_model(ck)
            tmp = Path(tempfile.mkdtemp()) / f"{name}_b{batch}.onnx"
            export_onnx(model, tmp, batch)
            variants.append((batch, InferenceModel(tmp, backend, threads=threads)))
        for b, m in variants:
            shapes = {k: tuple(v) for k, v in m.inputs.items()}
            rng = np.random.default_rng(0)
            feeds = {k: (rng.random(s) < 0.7).astype(np.float32) if k.endswith("_mask") else
                     rng.normal(0, 1, s).astype(np.float32) for k, s in shapes.items()}
            for _ in range(10):
                m(feeds)
            n = repeats if b == 1 else max(repeats // 10, 10)
            lat = []
            for _ in range(n):
                t0 = _t.perf_counter()
                m(feeds)
                lat.append((_t.perf_counter() - t0) * 1e3)
            lat = np.array(lat)
            rows[f"batch_{b}"] = {"p50_ms": round(float(np.percentile(lat, 50)), 3),
                                  "p99_ms": round(float(np.percentile(lat, 99)), 3), "calls": n,
                                  "samples_per_s": round(b / (np.median(lat) / 1e3), 1)}
        rows["backend"] = m1.backend
        rows["onnx"] = str(path)
        out["models"][name] = rows
        if log:
            log(f"{name}: {m1.describe()}: " + ", ".join(f"{k} p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms"
                                                         for k, v in rows.items() if k.startswith("batch")))
    return out
