"""Benchmarks of the pseudo-simulator (results as JSON; never timed unit tests)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .evaluation.runner import realtime_factor, run_route
from .loop import ClosedLoop
from .machine import machine_facts
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
        "machine": machine_facts(),
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

    out = {"machine": machine_facts(),
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


def bench_vla(model: str | None = None, town: str = "Proc0", routes: int = 3, seed: int = 0, backend: str = "auto",
              every: int = 10, log=None) -> dict:
    """The `vla_reasoning` node's call with TakeVLA, on real scenes: `routes` random routes of `town` driven by the
    expert; every `every` steps (10: 2 Hz, the node's rate) the perceived scene goes through what the node runs
    (features, raster, the action graph, greedy commentary with the text graph). Per call: wall time (p50 / p99 /
    max), text-graph calls; the target is p99 < 50 ms on the CPU."""
    import time as _t

    from .policies import make_policy
    from .sim.perception import ScenePerceiver

    g = TownLoader().load(town)
    node = make_policy("takevla", 1, g=g, model=model, backend=backend)
    lat, act_ms, tokens = [], [], []
    texts: dict[str, int] = {}
    for spec in random_routes(g, routes, seed=seed + 11, min_length=200.0):
        node.reset()
        per = ScenePerceiver(g, [plan_route(g, spec)])
        steps = [0]

        def observe(st, per=per, steps=steps):
            steps[0] += 1
            if (steps[0] - 1) % every:
                return
            scene = per(st.state, st.lights)
            t0 = _t.perf_counter()
            node.plan(scene)
            t1 = _t.perf_counter()
            last = node.last[0]
            text, calls = node.rt.commentary(last["memory"], last["memory_mask"])
            lat.append((_t.perf_counter() - t0) * 1e3)
            act_ms.append((t1 - t0) * 1e3)
            tokens.append(calls)
            texts[text] = texts.get(text, 0) + 1

        run_route(g, spec, "expert", seed=seed, observer=observe)
    lat, act_ms = np.array(lat), np.array(act_ms)
    out = {"machine": machine_facts(),
           "model": node.model_id, "backend": node.net.backend, "calls": len(lat),
           "call_ms": {"p50": round(float(np.percentile(lat, 50)), 2), "p99": round(float(np.percentile(lat, 99)), 2),
                       "max": round(float(lat.max()), 2)},
           "features_raster_action_ms_p50": round(float(np.percentile(act_ms, 50)), 2),
           "text_graph_calls_mean": round(float(np.mean(tokens)), 1), "target": "p99 < 50 ms a call on this CPU",
           "commentaries": dict(sorted(texts.items(), key=lambda kv: -kv[1])[:10])}
    if log:
        log(f"takevla reasoning call ({out['backend']}): p50 {out['call_ms']['p50']} ms, p99 {out['call_ms']['p99']} "
            f"ms, max {out['call_ms']['max']} ms over {out['calls']} calls ({out['text_graph_calls_mean']} text-graph "
            "calls each)")
    return out


# ------------------------------------------------------------------------------------------------ scale
SCALE_ROUTES = 6  # routes dispatched per backend and worker count, when not given by id
RAY_OVERHEAD_TARGET = 0.05  # Ray's per-route dispatch overhead, as a fraction of the route's own time


def _timed_route(spec, index: int, cfg) -> tuple:
    """The per-route function `eval` dispatches (`evaluate._run_route`: load the town and policy, drive, score),
    timed inside its worker: (its result, seconds in the worker, the worker's process id)."""
    from .evaluation.evaluate import _run_route

    t0 = time.perf_counter()
    out = _run_route(spec, index, cfg)
    return out, time.perf_counter() - t0, os.getpid()


def scale_routes(routes_file: str | None = None, maps_dir: str | None = None, route_ids: list[str] | None = None,
                 n: int = SCALE_ROUTES, town: str = "Proc0", min_length: float = 250.0, seed: int = 0):
    """The routes `bench_scale` dispatches: (specs, source, skipped). From `routes_file`: the routes `route_ids`
    names, else its first `n` routes (by id) whose towns are in `maps_dir`; without a file: `n` random routes of
    at least `min_length` m on the procedural `town`."""
    from .routes.xml import RouteError, parse_routes

    if not routes_file:
        g = TownLoader(maps_dir).load(town)
        return (random_routes(g, n, seed=seed + 1, min_length=min_length),
                f"{n} random routes (>= {min_length:g} m, seed {seed + 1}) on {town}", [])
    loader = TownLoader(maps_dir)
    rf = parse_routes(routes_file)
    specs = sorted(rf.routes, key=lambda r: int(r.route_id) if r.route_id.isdigit() else r.route_id)
    if route_ids:
        wanted = [str(r) for r in route_ids]
        unknown = sorted(set(wanted) - {r.route_id for r in specs})
        if unknown:
            raise RouteError(f"{routes_file}: route ids not in the file: {', '.join(unknown)}")
        specs = [r for r in specs if r.route_id in wanted]
    skipped = [{"route_id": r.route_id, "town": r.town, "message": loader.missing_reason(r.town)}
               for r in specs if not loader.available(r.town)]
    specs = [r for r in specs if loader.available(r.town)]
    if not route_ids:
        specs, skipped = specs[:n], []
    if not specs:
        raise RouteError(f"{routes_file}: no route whose town is in {maps_dir}")
    return specs, f"routes {', '.join(r.route_id for r in specs)} of {routes_file} (maps: {maps_dir})", skipped


def _scale_run(specs, cfg, backend: str, workers: int, ray: str | None, log) -> tuple[dict, dict]:
    """Every route once through `dispatch` on one backend and worker count: (totals and per-route times, the
    routes' records as results.json holds them, by route id, less the wall-clock meta.duration_system)."""
    from .evaluation.dispatch import dispatch

    rows: list = [None] * len(specs)
    records: dict = {}
    seen: set = set()  # worker processes that have run a route (Ray reuses them; a forked worker runs one)
    t0 = time.perf_counter()
    for o in dispatch(_timed_route, [(spec, i, cfg) for i, spec in enumerate(specs)], workers=workers, ray=ray,
                      timeout_s=cfg.route_timeout_s, max_retries=cfg.max_retries):
        spec = specs[o.job]
        row = {"route_id": spec.route_id, "town": spec.town, "outcome": o.kind, "wall_s": o.wall}
        if o.kind == "ok":
            (kind, payload), worker_s, pid = o.result
            row["worker_s"], row["warm_worker"] = worker_s, pid in seen  # warm: its process ran a route before
            seen.add(pid)
            if kind == "ok":
                rec = json.loads(json.dumps(payload))  # what results.json holds
                row["route_s"] = rec["meta"]["duration_system"]
                row["status"], row["driving_score"] = rec["status"], rec["scores"]["score_composed"]
                rec["meta"].pop("duration_system", None)  # the wall-clock field: not compared
                records[spec.route_id] = rec
            else:
                row["status"], row["error"] = kind, str(payload).splitlines()[0]
        else:
            row["status"], row["error"] = o.kind, o.message
        if "route_s" in row:
            row["setup_s"] = row["worker_s"] - row["route_s"]  # the town and policy, loaded in the worker
            row["dispatch_s"] = row["wall_s"] - row["worker_s"]  # handing over, scheduling, result transfer
            row["dispatch_fraction"] = row["dispatch_s"] / max(row["route_s"], 1e-9)
        rows[o.job] = row
    wall = time.perf_counter() - t0
    timed = [r for r in rows if "route_s" in r]
    out = {"backend": backend, "workers": workers, "wall_s": wall, "routes_per_s": len(specs) / wall,
           "routes_ok": len(timed)}
    if timed:
        out.update({"route_s_median": float(np.median([r["route_s"] for r in timed])),
                    "route_wall_s_median": float(np.median([r["wall_s"] for r in timed])),
                    "dispatch_s_median": float(np.median([r["dispatch_s"] for r in timed])),
                    "dispatch_fraction_median": float(np.median([r["dispatch_fraction"] for r in timed]))})
        warm = [r for r in timed if r["warm_worker"]]
        if warm and len(warm) < len(timed):  # Ray: a worker process's first route also waits for it to start
            steady = float(np.median([r["dispatch_s"] for r in warm]))
            out.update({"dispatch_s_median_warm": steady,
                        "dispatch_fraction_median_warm": float(np.median([r["dispatch_fraction"] for r in warm])),
                        "worker_start_s": [r["dispatch_s"] - steady for r in timed if not r["warm_worker"]]})
    out["routes"] = rows
    log(f"{backend} x{workers}: {len(specs)} routes in {wall:.2f} s ({out['routes_per_s']:.2f} routes/s), median "
        f"per route: drive {out.get('route_s_median', 0):.3f} s, wall {out.get('route_wall_s_median', 0):.3f} s, "
        f"dispatch {out.get('dispatch_s_median', 0) * 1e3:.1f} ms")
    return out, records


def bench_scale(routes_file: str | None = None, maps_dir: str | None = None, route_ids: list[str] | None = None,
                n_routes: int = SCALE_ROUTES, workers: list[int] | None = None, policy: str = "rule",
                model: str | None = None, ray: str | None = "local", town: str = "Proc0",
                min_length: float = 250.0, seed: int = 0, log=print) -> dict:
    """Routes per second against the worker count, for `eval --workers N` (forked worker processes) and
    `eval --ray` (Ray tasks), and the per-route overhead Ray adds. The same routes (`scale_routes`) run once per
    backend and count through `evaluation.dispatch` with the function `eval` dispatches, timed inside the worker
    too. ray: "local" starts a Ray with each count of CPUs (its start timed apart: a one-off, not per route); an
    address joins that cluster once (one route per cluster CPU); None: local workers only."""
    from .evaluation.dispatch import LOCAL, RayMissing, import_ray, ray_init
    from .evaluation.evaluate import EvalConfig
    from .policies import check_policy

    check_policy(policy, model)
    specs, source, skipped = scale_routes(routes_file, maps_dir, route_ids, n_routes, town, min_length, seed)
    if workers is None:
        cap = min(os.cpu_count() or 1, len(specs))
        workers = sorted({1} | {2 ** k for k in range(1, 8) if 2 ** k <= cap} | {cap})
    cfg = EvalConfig(routes=str(routes_file or ""), out="", policy=policy, model=model, maps_dir=maps_dir, seed=seed)
    ray_mod, ray_skipped = None, None
    if ray:
        try:
            ray_mod = import_ray()
        except RayMissing as e:
            ray_skipped = f"ray rows skipped: {e}"
            log(ray_skipped)
    else:
        ray_skipped = "ray rows skipped: --no-ray"
    log(f"{len(specs)} routes ({source}), policy {policy}, workers {','.join(map(str, workers))}"
        + ("" if ray_mod is None else f", and Ray ({'a local Ray per count' if ray == LOCAL else ray})"))

    runs, recs = [], []

    def ray_run(w: int | None) -> None:
        t0 = time.perf_counter()
        own = ray_init(ray, w or 1)
        init_s = time.perf_counter() - t0
        try:
            cpus = int(ray_mod.cluster_resources().get("CPU", 0))
            run, rec = _scale_run(specs, cfg, "ray", w if ray == LOCAL else cpus, ray, log)
        finally:
            t1 = time.perf_counter()
            if own:
                ray_mod.shutdown()
            shutdown_s = time.perf_counter() - t1
        run.update({"ray_init_s": init_s, "ray_shutdown_s": shutdown_s, "ray_cluster_cpus": cpus,
                    "routes_per_s_with_init": len(specs) / (run["wall_s"] + init_s)})
        log(f"ray x{run['workers']}: Ray started in {init_s:.2f} s (one-off, not in routes/s)")
        runs.append(run)
        recs.append(rec)

    for w in workers:
        run, rec = _scale_run(specs, cfg, "workers", w, None, log)
        runs.append(run)
        recs.append(rec)
        if ray_mod is not None and ray == LOCAL:
            ray_run(w)
    if ray_mod is not None and ray != LOCAL:
        ray_run(None)

    statuses = [[x["status"] for x in r["routes"]] for r in runs]
    identical = all(r == recs[0] for r in recs[1:]) and all(st == statuses[0] for st in statuses[1:])
    by = {(r["backend"], r["workers"]): r for r in runs}
    overhead = None
    rays = [r for r in runs if r["backend"] == "ray" and "dispatch_fraction_median" in r]
    if rays:
        timed = [x for r in rays for x in r["routes"] if "dispatch_fraction" in x]
        warm = [x for x in timed if x["warm_worker"]]
        basis = warm or timed  # the per-route cost: routes on a Ray worker process that had started already
        median = float(np.median([x["dispatch_fraction"] for x in basis]))
        added = []  # per route: Ray's wall beyond the drive, less the local workers' at the same count
        for r in rays:
            loc = by.get(("workers", r["workers"]))
            if loc is None:
                continue
            for a, b in zip(r["routes"], loc["routes"]):
                if "route_s" in a and "route_s" in b and b["route_s"] > 0:
                    added.append(((a["wall_s"] - a["route_s"]) - (b["wall_s"] - b["route_s"])) / b["route_s"])
        local = [x for r in runs if r["backend"] == "workers" for x in r["routes"] if "route_s" in x]
        overhead = {
            "how": ("per route: dispatch_s = the dispatch wall (handed to the worker -> result back, Outcome.wall) "
                    "- worker_s (the per-route function timed inside its worker: town + policy load and the drive), "
                    "as a fraction of route_s, the drive itself (meta.duration_system). fraction_median: the median "
                    "over the Ray routes of every count that ran on a Ray worker process which had run a route "
                    "before (basis 'warm_workers'; 'all_routes' when there were none): the per-route cost. A Ray "
                    "worker process's first route also waits for the process to start and import drive-stack: "
                    "worker_start_s (its dispatch_s less the warm median), a one-off per worker like ray_init_s, "
                    "outside fraction_median but inside routes_per_s. added_vs_workers_fraction_median: per route, "
                    "Ray's (wall - route_s) less the local workers' (wall - route_s) at the same count, over "
                    "route_s, every route (negative: Ray saved time)"),
            "basis": "warm_workers" if warm else "all_routes",
            "fraction_median": median,
            "fraction_max": float(np.max([x["dispatch_fraction"] for x in basis])),
            "dispatch_ms_median": 1e3 * float(np.median([x["dispatch_s"] for x in basis])),
            "route_s_median": float(np.median([x["route_s"] for x in basis])),
            "fraction_median_all_routes": float(np.median([x["dispatch_fraction"] for x in timed])),
            "added_vs_workers_fraction_median": float(np.median(added)) if added else None,
            "workers_dispatch_fraction_median": (float(np.median([x["dispatch_fraction"] for x in local]))
                                                 if local else None),
            "workers_route_s_median": float(np.median([x["route_s"] for x in local])) if local else None,
            "ray_init_s": {str(r["workers"]): r["ray_init_s"] for r in rays},
            "worker_start_s": {str(r["workers"]): r.get("worker_start_s", []) for r in rays},
            "target_fraction": RAY_OVERHEAD_TARGET,
            "meets_target": bool(median < RAY_OVERHEAD_TARGET),
        }
        log(f"Ray per-route overhead: median {100 * median:.1f} % of a route's drive "
            f"({overhead['dispatch_ms_median']:.1f} ms of {overhead['route_s_median']:.3f} s, {overhead['basis']}; "
            f"target < {100 * RAY_OVERHEAD_TARGET:.0f} %: {'met' if overhead['meets_target'] else 'NOT met'}); "
            f"results identical across runs: {identical}")
    elif runs:
        log(f"results identical across runs: {identical}")
    scaling = {}
    for backend in ("workers", "ray"):
        rows = {str(r["workers"]): r["routes_per_s"] for r in runs if r["backend"] == backend}
        if rows:
            base = rows.get("1") or next(iter(rows.values()))
            scaling[backend] = {"routes_per_s": rows, "speedup_vs_1": {k: v / base for k, v in rows.items()}}
    try:
        import ray as _r
        ray_version = _r.__version__
    except ImportError:
        ray_version = None
    return {
        "what": ("routes per second against worker count: the same routes through evaluation.dispatch with the "
                 "function `eval` dispatches (town + policy load, closed-loop drive with background traffic and "
                 "the route's scenario, every Bench2Drive criterion), once per backend and count: `--workers N` "
                 "(a forked process per route, N at a time) and `--ray` (a Ray task per route, one CPU each; a "
                 "local Ray of N CPUs started per count, its start timed apart as ray_init_s, not in routes_per_s). "
                 "Per route: wall_s (dispatch: handed over -> result back), worker_s (inside the worker), route_s "
                 "(the drive). ray_overhead: Ray's per-route dispatch overhead against the route's time"),
        "machine": machine_facts(ray=ray_version),
        "routes": {"source": source, "count": len(specs), "policy": policy, "seed": seed,
                   "ids": [{"route_id": r.route_id, "town": r.town, "scenario_type": r.scenario_type} for r in specs],
                   "skipped": skipped},
        "workers": workers,
        "ray": ray if ray_mod is not None else None,
        "ray_skipped": ray_skipped,
        "scaling": scaling,
        "ray_overhead": overhead,
        "results_identical": identical,
        "target": f"Ray's per-route overhead under {100 * RAY_OVERHEAD_TARGET:.0f} % of a route's time",
        "runs": runs,
    }
