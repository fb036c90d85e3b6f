"""``drive-stack``: one CLI for offline work. Every subcommand has --help; JSON outputs are stable."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _write_json(path: str | None, obj) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=2))


# ---------------------------------------------------------------------------------------------- routes
def cmd_routes_check(a) -> int:
    from .maps import MapError, TownLoader
    from .routes import RouteError, parse_routes, plan_route

    rf = parse_routes(a.routes)
    loader = TownLoader(a.maps_dir)
    rows = []
    by_id = {r.route_id: r for r in rf.routes}
    for rid in rf.order:
        if rid in rf.errors:
            rows.append({"id": rid, "town": None, "status": "error", "message": rf.errors[rid]})
            continue
        r = by_id[rid]
        row = {"id": rid, "town": r.town, "status": "ok", "scenario_type": r.scenario_type,
               "keypoint_length_m": round(r.keypoint_length(), 2), "densified_length_m": None}
        if not loader.available(r.town):
            row["status"] = "missing_map"
            row["message"] = f"{r.town}.xodr not in {loader.maps_dir}"
        else:
            try:
                row["densified_length_m"] = round(plan_route(loader.load(r.town), r).length, 2)
            except (RouteError, MapError) as e:
                row["status"], row["message"] = "error", str(e)
        rows.append(row)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "missing_map", "error")}
    out = {"routes_file": str(a.routes), "maps_dir": str(loader.maps_dir), "counts": counts, "routes": rows}
    _write_json(a.json, out)
    for r in rows:
        if r["status"] == "error":
            print(f"  error {r['id']}: {r['message']}", file=sys.stderr)
    print(f"{a.routes}: {counts['ok']} ok, {counts['missing_map']} missing_map, {counts['error']} error")
    return 0


def cmd_routes_generate(a) -> int:
    from .maps import TownLoader
    from .routes import write_routes
    from .routes.generate import random_routes

    g = TownLoader(a.maps_dir).load(a.town)
    routes = random_routes(g, a.n, seed=a.seed, min_length=a.min_length, prefix=a.prefix)
    write_routes(routes, a.out)
    print(f"wrote {len(routes)} routes on {a.town} to {a.out}")
    return 0


# ---------------------------------------------------------------------------------------------- town
def cmd_town_generate(a) -> int:
    from .maps.procedural import generate_town_xodr

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(generate_town_xodr(a.seed))
    print(f"wrote procedural town Proc{a.seed} to {a.out}")
    return 0


def cmd_town_info(a) -> int:
    from .maps import TownLoader

    g = TownLoader(a.maps_dir).load(a.town)
    info = {"town": g.name, "lanes": g.num_lanes, "points": int(len(g.pt_xy)),
            "lane_km": float(g.lane_length.sum() / 1000), "junction_lanes": int((g.lane_junction >= 0).sum()),
            "traffic_lights": g.num_lights, "stop_signs": int(len(g.stop_id)),
            "crosswalks": int(len(g.cw_start) - 1), "bounds": g.bounds(),
            "speed_limits_kmh": sorted({round(float(v) * 3.6) for v in g.lane_speed_limit})}
    _write_json(a.json, info)
    print(json.dumps(info, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- eval
def _print_summary(s: dict) -> None:
    print(f"Driving Score {s['driving_score']:.2f} | Success Rate {s['success_rate']:.1f}% | "
          f"Efficiency {s['efficiency']:.1f} | Comfortness {s['comfortness']:.1f} | "
          f"routes evaluated {s['routes_evaluated']}, skipped {s['routes_skipped']} (of {s['routes_total']})")
    ab = ", ".join(f"{k} {v['success_rate']:.1f}" if v["success_rate"] is not None else f"{k} n/a"
                   for k, v in s["multi_ability"].items())
    print(f"Multi-ability success: {ab}")
    for n in s.get("notes", []):
        print(f"note: {n}")


def cmd_eval(a) -> int:
    from .evaluation.evaluate import EvalConfig, evaluate, skipped_lines

    cfg = EvalConfig(routes=a.routes, out=a.out, policy=a.policy, maps_dir=a.maps_dir,
                     route_ids=a.route_ids.split(",") if a.route_ids else None, workers=a.workers,
                     resume=a.resume, seed=a.seed, route_timeout_s=a.route_timeout, fault=a.fault,
                     render_failures=a.render_failures)
    s = evaluate(cfg)
    _print_summary(s)
    print(f"results: {Path(a.out) / 'results.json'}, summary: {Path(a.out) / 'summary.json'}")
    if s["routes_evaluated"] == 0:  # a score over no route is no result: say why and fail
        print(f"drive-stack: error: no route of {a.routes} could be evaluated ({s['routes_skipped']} skipped):",
              file=sys.stderr)
        for line in skipped_lines(s["skipped"]):
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(a) -> int:
    """The embedded default: the ROS 2 stack in closed loop (real processes over DDS) on a procedural-town route,
    then on a Bench2Drive route when ../shared is beside the checkout, then the batched library evaluation of
    a few procedural routes."""
    from .evaluation.evaluate import EvalConfig, evaluate
    from .maps import TownLoader
    from .routes import parse_routes, write_routes
    from .routes.generate import random_routes

    out = Path(a.out)
    town = f"Proc{a.seed}"
    t0 = time.perf_counter()
    g = TownLoader().load(town)
    print(f"procedural town {town}: {g.num_lanes} lanes, {g.lane_length.sum() / 1000:.1f} km of lanes, "
          f"{g.num_lights} traffic lights, {len(g.stop_id)} stop signs, {len(g.crosswalks())} crosswalks")
    if not a.no_stack:
        launcher = _stack_launcher()
        print(f"\n== ROS 2 stack (6 nodes as processes, Fast DDS on localhost) on a {town} route ==")
        print_stack_result(launcher.stack_run(None, None, str(out / "stack_proc"), policy=a.policy, seed=a.seed))
        b2d = Path(a.b2d_routes) if a.b2d_routes else None
        if b2d and b2d.exists() and a.maps_dir and Path(a.maps_dir).is_dir():
            loader = TownLoader(a.maps_dir)
            spec = next((r for r in parse_routes(b2d).routes if loader.available(r.town)), None)
            if spec is not None:
                print(f"\n== ROS 2 stack on Bench2Drive route {spec.route_id} ({spec.town}, {spec.scenario_type}) ==")
                print_stack_result(launcher.stack_run(str(b2d), spec.route_id, str(out / "stack_b2d"),
                                                      maps_dir=a.maps_dir, policy=a.policy, seed=a.seed))
        else:
            print(f"\n(no Bench2Drive routes/maps at {b2d} / {a.maps_dir}: the Bench2Drive stack route is skipped)")
    print(f"\n== batched pseudo-simulator evaluation: {a.routes} {town} routes, {a.workers} workers ==")
    routes_file = out / "routes.xml"
    write_routes(random_routes(g, a.routes, seed=a.seed), routes_file)
    s = evaluate(EvalConfig(routes=str(routes_file), out=str(out / "eval"), policy=a.policy, workers=a.workers,
                            seed=a.seed))
    _print_summary(s)
    print(f"done in {time.perf_counter() - t0:.1f} s; results in {out}/")
    return 0


def cmd_bench_stack(a) -> int:
    """Per-tick latency (odometry published -> stamped command accepted by the simulator) over a route."""
    import numpy as np

    launcher = _stack_launcher()
    res = launcher.stack_run(a.routes, a.route_id, a.out, maps_dir=a.maps_dir, seed=a.seed,
                             node_overrides={"recorder": {"mode": "continuous"}} if a.record else None)
    lat = np.array(json.loads((Path(res["out"]) / "latency.json").read_text())["latency_ms"])
    st = res["record"]["meta"]["stack"]
    out = {
        "what": ("per-tick latency from pseudo_sim publishing /carla/hero/odometry to the stamped "
                 "/carla/hero/vehicle_control_cmd arriving back (perception_input -> planner -> takeover_monitor, "
                 "3 DDS hops, all 6 nodes running as processes), over one route"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "route": res["record"]["route_id"], "town": res["record"]["meta"]["town"],
        "ticks": st["ticks"], "missed_ticks": st["missed_ticks"],
        "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p90": float(np.percentile(lat, 90)),
        "latency_ms_p99": float(np.percentile(lat, 99)), "latency_ms_max": float(lat.max()),
        "target_p99_ms": 20.0, "realtime_factor": st["ticks"] * 0.05 / st["wall_s"],
        "driving_score": res["record"]["scores"]["score_composed"],
    }
    _write_json(a.json, out)
    print(json.dumps(out, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- bench
def cmd_bench_sim(a) -> int:
    from .bench import bench_sim

    res = bench_sim(num_envs=a.envs, max_agents=a.agents, steps=a.steps, town=a.town, maps_dir=a.maps_dir,
                    procs=a.procs, routes_file=a.routes)
    _write_json(a.json, res)
    print(json.dumps(res, indent=2))
    return 0


def cmd_routes_suite(a) -> int:
    from .maps import TownLoader
    from .routes import write_routes
    from .routes.xml import DOS_TYPES, KNOWN_TYPES, SCENARIO_TYPES
    from .scenarios.suite import generate_suite

    g = TownLoader(a.maps_dir).load(a.town)
    groups = {"all": sorted(SCENARIO_TYPES), "dos": sorted(DOS_TYPES), "all+dos": sorted(KNOWN_TYPES)}
    types = groups.get(a.types) or [t.strip() for t in a.types.split(",")]
    unknown = [t for t in types if t not in KNOWN_TYPES]
    if unknown:
        raise SystemExit(f"drive-stack: unknown scenario types {unknown}")
    rep = generate_suite(g, types, a.n, seed=a.seed, min_length=a.min_length)
    write_routes(rep.routes, a.out)
    print(f"{len(rep.routes)} routes for {len(types)} types on {a.town} -> {a.out}")
    for t, why in rep.missing.items():
        print(f"  {t}: {why}")
    return 0


# ---------------------------------------------------------------------------------------------- stack
def _stack_launcher():
    try:
        from drive_stack import launcher
    except ImportError as e:
        raise SystemExit(f"drive-stack: the ROS 2 stack is not installed in this environment ({e}); run `make setup` "
                         "(it installs the ROS 2 wheels, builds the interface packages and the drive_stack package)") from e
    return launcher


def print_stack_result(res: dict) -> None:
    rec, s = res["record"], res["summary"]
    st = rec["meta"].get("stack", {})
    sc = rec["scores"]
    print(f"route {rec['route_id']} ({rec['meta']['town']}): {rec['status']}, RC {sc['score_route']:.1f}, "
          f"penalty {sc['score_penalty']:.2f}, DS {sc['score_composed']:.1f}")
    infr = {k: len(v) for k, v in rec["infractions"].items() if v and k != "min_speed_infractions"}
    print(f"infractions: {infr or 'none'}")
    print(f"ticks {st.get('ticks')}, missed {st.get('missed_ticks')}, control latency p50 "
          f"{st.get('latency_ms_p50', float('nan')):.1f} ms / p99 {st.get('latency_ms_p99', float('nan')):.1f} ms")
    print(f"takeovers recorded: {len(res['takeovers'])}")
    for tk in res["takeovers"]:
        print(f"  t={tk['takeover_time']:.2f} s {tk['cause']} ({tk['detail']}) -> {tk['controller']}; bag {tk['bag']} "
              f"window [{tk['window'][0]:.1f}, {tk['window'][1]:.1f}] s")
    print(f"Driving Score {s['driving_score']:.2f} | results: {res['out']}/results.json, summary.json, bags/ "
          f"({res['wall_s']:.1f} s)")


def cmd_stack_run(a) -> int:
    launcher = _stack_launcher()
    res = launcher.stack_run(a.routes, a.route_id, a.out, maps_dir=a.maps_dir, policy=a.policy, seed=a.seed,
                             faults=a.fault, record=a.record, timeout=a.timeout, tick_timeout=a.tick_timeout)
    print_stack_result(res)
    _write_json(a.json, res)
    return 0


def cmd_collect(a) -> int:
    from .dataset import CollectConfig, collect

    cfg = CollectConfig(routes=a.routes, out=a.out, maps_dir=a.maps_dir, policy=a.policy, workers=a.workers,
                        seed=a.seed, route_ids=a.route_ids.split(",") if a.route_ids else None,
                        max_routes=a.max_routes, b2d=not a.no_anno, steer_noise=a.steer_noise,
                        speed_noise=a.speed_noise, noise_rate=a.noise_rate, noise_duration=a.noise_duration,
                        driver=a.driver, driver_model=a.driver_model, branches=a.branches,
                        branch_every=a.branch_every)
    idx = collect(cfg)
    frames = sum(e["frames"] for e in idx["episodes"])
    print(f"{len(idx['episodes'])} episodes, {frames} frames ({frames * idx['frame_dt'] / 3600:.2f} h), "
          f"{len(idx['failed'])} failed, in {idx['wall_s']:.0f} s; index: {Path(a.out) / 'index.json'}")
    return 0 if not idx["failed"] else 1


def cmd_dataset_stats(a) -> int:
    from .dataset import dataset_stats

    s = dataset_stats(a.root)
    print(json.dumps(s, indent=2))
    _write_json(a.json, s)
    return 0


def cmd_render(a) -> int:
    from .maps import TownLoader
    from .render import BevRenderer, frames_from_arrays, record_route_frames, render_frames

    if bool(a.episode) == bool(a.routes):
        print("drive-stack render: give either --episode DIR or --routes FILE --route-id ID", file=sys.stderr)
        return 2
    if a.episode:
        from .dataset import read_episode

        ep = Path(a.episode)
        meta = json.loads((ep / "meta.json").read_text()) if (ep / "meta.json").exists() else {}
        if "town" not in meta:
            print(f"drive-stack render: {ep}/meta.json names no town (needed for the map)", file=sys.stderr)
            return 2
        arr = read_episode(ep)
        g = TownLoader(a.maps_dir).load(meta["town"])
        frames = frames_from_arrays(arr)
        route = arr.get("route_xy")
    else:
        from .routes import parse_routes

        spec = next((s for s in parse_routes(a.routes).routes if s.route_id == a.route_id), None)
        if spec is None:
            print(f"drive-stack render: no route {a.route_id!r} in {a.routes}", file=sys.stderr)
            return 2
        g = TownLoader(a.maps_dir).load(spec.town)
        frames, rec, dense = record_route_frames(g, spec, a.policy, a.seed, every=1)
        route = dense.xy
        print(f"route {spec.route_id} ({spec.town}, {spec.scenario_type}) with {a.policy}: {rec['status']}, "
              f"DS {rec['scores']['score_composed']:.1f}")
    w = render_frames(frames, BevRenderer(g, route, size=a.size), a.out, gif=True, png=not a.no_png, every=a.every)
    print(f"{w['frames']} frames -> {a.out}" + (f", {w['gif']}" if "gif" in w else ""))
    return 0


def cmd_bag_info(a) -> int:
    from .stack.bags import BagError, read_bag

    try:
        info = read_bag(Path(a.bag))
    except BagError as e:
        print(f"drive-stack: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- learning
def dataclass_args(q, cls) -> None:
    """One --option per dataclass field (lists are left out); `--help` lists every field with its default."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = "--" + f.name.replace("_", "-")
        if t is bool:
            q.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"(default {default})")
            continue
        if typing.get_origin(t) is list:
            continue
        args = typing.get_args(t)
        base = next((x for x in args if x is not type(None)), t) if args else t
        if base not in (int, float, str):
            continue
        q.add_argument(flag, dest=f.name, type=base, default=None, help=f"(default {default})")


def cmd_train(a) -> int:
    from .learn.train import config_from_args

    if a.sub == "il":
        from .learn.configs import ILConfig
        from .learn.train import ILStage

        m = ILStage(config_from_args(ILConfig, a)).run()
        print(json.dumps(m["final_val"], indent=2))
    elif a.sub == "wm":
        from .learn.configs import WMConfig
        from .learn.train import WMStage

        m = WMStage(config_from_args(WMConfig, a)).run()
        print(json.dumps(m["final_val"], indent=2))
    elif a.sub == "rl":
        from .learn.configs import RLConfig
        from .learn.rl import RLStage

        m = RLStage(config_from_args(RLConfig, a)).run()
        print(json.dumps(m["val"], indent=2))
    else:
        from .learn.pipeline import PipelineConfig, run_pipeline

        rep = run_pipeline(config_from_args(PipelineConfig, a))
        print(json.dumps({k: {kk: v.get(kk) for kk in ("wall_s", "onnx", "final", "datasets") if kk in v} for k, v in rep["stages"].items()},
                         indent=2))
    return 0


def cmd_eval_table(a) -> int:
    from .evaluation.report import summary_table

    runs = dict(item.split("=", 1) for item in a.runs.split(","))
    md = summary_table(runs, a.title)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(md)
    print(md)
    return 0


def cmd_export(a) -> int:
    from .models.export import export_checkpoint

    man = export_checkpoint(a.ckpt, a.out, name=a.name, batch=a.batch)
    print(json.dumps({k: man[k] for k in ("name", "file", "sha256", "inputs", "outputs", "parity_max_abs_err")},
                     indent=2))
    return 0


def cmd_bench_infer(a) -> int:
    from .bench import bench_infer
    from .policies.learned import find_model

    models = {}
    for spec in a.models.split(","):
        name, kind = (spec.split(":") + ["planner"])[:2]
        models[f"{name}/{kind}"] = str(find_model(name, kind))
    res = bench_infer(models, batch=a.batch, backend=a.backend, threads=a.threads, log=print)
    res["target"] = "planner p99 < 5 ms at batch 1 on this CPU"
    _write_json(a.json, res)
    print(json.dumps(res, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="drive-stack", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def maps_arg(q):
        q.add_argument("--maps-dir", default=None,
                       help="folder of CARLA OpenDRIVE maps (<Town>.xodr); default $DRIVE_STACK_MAPS or "
                            "$CARLA_ROOT's OpenDrive folder. Procedural towns (Proc<seed>) need none.")

    r = sub.add_parser("routes", help="route files: check, generate").add_subparsers(dest="sub", required=True)
    q = r.add_parser("check", help="parse and densify every route; per-route status JSON")
    q.add_argument("--routes", required=True)
    maps_arg(q)
    q.add_argument("--json", help="write the per-route report here")
    q.set_defaults(fn=cmd_routes_check)
    q = r.add_parser("generate", help="random routes on a town (our own route files)")
    q.add_argument("--town", required=True, help="e.g. Proc0 or Town01")
    q.add_argument("--n", type=int, default=5)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--min-length", type=float, default=250.0)
    q.add_argument("--prefix", default="")
    q.add_argument("--out", required=True)
    maps_arg(q)
    q.set_defaults(fn=cmd_routes_generate)

    q = r.add_parser("suite", help="N routes per scenario type with the scenario placed where it fits (our own suites)")
    q.add_argument("--town", required=True, help="e.g. Proc0 or Town04")
    q.add_argument("--types", default="all", help="comma-separated scenario types, or 'all' (the 44 Bench2Drive types), 'dos' (the occlusion "
                   "variants) or 'all+dos'")
    q.add_argument("--n", type=int, default=2, help="routes per type")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--min-length", type=float, default=250.0)
    q.add_argument("--out", required=True)
    maps_arg(q)
    q.set_defaults(fn=cmd_routes_suite)

    t = sub.add_parser("town", help="procedural towns and map facts").add_subparsers(dest="sub", required=True)
    q = t.add_parser("generate", help="write procedural town Proc<seed> as OpenDRIVE")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", required=True)
    q.set_defaults(fn=cmd_town_generate)
    q = t.add_parser("info", help="load a town and print its lane-graph facts")
    q.add_argument("--town", required=True)
    q.add_argument("--json")
    maps_arg(q)
    q.set_defaults(fn=cmd_town_info)

    q = sub.add_parser("eval", help="closed-loop Bench2Drive evaluation in the pseudo-simulator")
    q.add_argument("--routes", required=True)
    maps_arg(q)
    q.add_argument("--policy", default="rule", help="rule, expert (privileged; later: il, perlad)")
    q.add_argument("--out", required=True)
    q.add_argument("--route-ids", default=None, help="comma-separated subset")
    q.add_argument("--workers", type=int, default=1)
    q.add_argument("--resume", action="store_true", help="continue from OUT/results.json")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--route-timeout", type=float, default=600.0, help="wall-clock seconds before a route is hung")
    q.add_argument("--render-failures", type=int, default=0, metavar="N",
                   help="render the N worst failing routes (GIF) into OUT/renders and the HTML report")
    q.add_argument("--fault", default=None, help=argparse.SUPPRESS)
    q.set_defaults(fn=cmd_eval)

    q = sub.add_parser("render", help="bird's-eye view of an episode: a dataset episode, or a route driven now")
    q.add_argument("--episode", default=None, help="a collected episode directory (arrays.npz or anno/*.json.gz)")
    q.add_argument("--routes", default=None, help="route XML: drive --route-id with --policy and render it")
    q.add_argument("--route-id", default=None)
    q.add_argument("--policy", default="expert")
    q.add_argument("--seed", type=int, default=0)
    maps_arg(q)
    q.add_argument("--out", required=True)
    q.add_argument("--every", type=int, default=2, help="render every N-th frame")
    q.add_argument("--no-png", action="store_true", help="only the animated GIF")
    q.add_argument("--size", type=int, default=480, help="pixels per side (80 m across)")
    q.set_defaults(fn=cmd_render)

    q = sub.add_parser("demo", help="the embedded default: the ROS stack on a procedural route (and a Bench2Drive "
                                    "route when ../shared is there), then a batched evaluation")
    q.add_argument("--out", default="results/demo")
    q.add_argument("--b2d-routes", default=None, help="Bench2Drive route XML for the second stack run (optional)")
    maps_arg(q)
    q.add_argument("--no-stack", action="store_true", help="only the batched library evaluation")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--routes", type=int, default=4)
    q.add_argument("--workers", type=int, default=2)
    q.add_argument("--policy", default="perlad", help="planner policy (default perlad: the committed ONNX planner; rule, expert, il, ...)")
    q.set_defaults(fn=cmd_demo)

    st = sub.add_parser("stack", help="the ROS 2 stack").add_subparsers(dest="sub", required=True)
    q = st.add_parser("run", help="run the node table as processes over DDS on one route (pseudo-simulator)")
    q.add_argument("--routes", default=None, help="route XML; without it, a random route on procedural town Proc<seed>")
    q.add_argument("--route-id", default=None)
    maps_arg(q)
    q.add_argument("--policy", default="rule")
    q.add_argument("--out", default="results/stack")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--fault", action="append", default=[], metavar="NODE:KIND@T",
                   help="inject a fault, e.g. planner:stall@12.0, planner:nan@12.0, planner:exit@12.0, "
                        "planner:raise@12.0 (repeatable)")
    q.add_argument("--record", default="takeover", choices=["takeover", "continuous", "both"])
    q.add_argument("--timeout", type=float, default=900.0, help="wall-clock seconds for the whole run")
    q.add_argument("--tick-timeout", type=float, default=1.0, help="wall seconds the simulator waits for a command")
    q.add_argument("--json", help="write the run's result here")
    q.set_defaults(fn=cmd_stack_run)
    q = sub.add_parser("collect", help="drive a route suite with the expert and write the offline dataset "
                                       "(Bench2Drive anno/*.json.gz + columnar arrays.npz, 10 Hz)")
    q.add_argument("--routes", "--suite", dest="routes", required=True, help="route XML (e.g. from `routes suite`)")
    maps_arg(q)
    q.add_argument("--out", required=True)
    q.add_argument("--policy", default="expert")
    q.add_argument("--workers", type=int, default=1)
    q.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    q.add_argument("--route-ids", default=None)
    q.add_argument("--max-routes", type=int, default=None)
    q.add_argument("--no-anno", action="store_true", help="only the columnar copy (no Bench2Drive json.gz frames)")
    q.add_argument("--steer-noise", type=float, default=0.0, help="std of the executed steering offset in noise events")
    q.add_argument("--speed-noise", type=float, default=0.0, help="std [m/s] of the executed speed error in noise events")
    q.add_argument("--noise-rate", type=float, default=0.1, help="noise events per second")
    q.add_argument("--noise-duration", type=float, default=1.0, help="[s] per noise event")
    q.add_argument("--driver", default=None,
                   help="DAgger: this policy drives (e.g. il) while --policy (the expert) labels every frame")
    q.add_argument("--driver-model", default=None,
                   help="ONNX file of a learned --driver (default: $DRIVE_STACK_MODELS, results/models, models/)")
    q.add_argument("--branches", type=int, default=3,
                   help="counterfactual ego plans per branch point, the world model's reactivity data (0: none)")
    q.add_argument("--branch-every", type=float, default=1.0, help="[s] between branch points")
    q.set_defaults(fn=cmd_collect)
    d = sub.add_parser("dataset", help="collected datasets").add_subparsers(dest="sub", required=True)
    q = d.add_parser("stats", help="frames, hours, per-scenario-type counts, speed and command histograms")
    q.add_argument("root")
    q.add_argument("--json")
    q.set_defaults(fn=cmd_dataset_stats)
    g = sub.add_parser("bag", help="recorded bags").add_subparsers(dest="sub", required=True)
    q = g.add_parser("info", help="topics, message counts and time window of a bag (rosbags AnyReader)")
    q.add_argument("bag")
    q.set_defaults(fn=cmd_bag_info)

    from .learn.configs import ILConfig, RLConfig, WMConfig
    from .learn.pipeline import PipelineConfig

    tr = sub.add_parser("train", help="PerlAD training stages (imitation, world model, RL) and the whole pipeline"
                        ).add_subparsers(dest="sub", required=True)
    for name, cls, hlp in (("il", ILConfig, "imitation of both planner heads on a collected dataset"),
                           ("wm", WMConfig, "the prediction world model (multi-modal, conditioned on the ego plan)"),
                           ("rl", RLConfig, "RL of the longitudinal head in the pseudo-simulator (GRPO or PPO)"),
                           ("pipeline", PipelineConfig, "il -> wm -> perlad -> perlad_logreplay, exported to ONNX")):
        q = tr.add_parser(name, help=hlp)
        dataclass_args(q, cls)
        q.set_defaults(fn=cmd_train)
    q = sub.add_parser("eval-table", help="a Markdown table (DS, SR, Efficiency, Comfortness, multi-ability) of "
                       "several evaluations")
    q.add_argument("--runs", required=True, help="label=eval_out_dir,... (each with its summary.json)")
    q.add_argument("--title", default="")
    q.add_argument("--out", default=None, help="write the table here too")
    q.set_defaults(fn=cmd_eval_table)
    q = sub.add_parser("export", help="export a training checkpoint to ONNX (static shapes) with its manifest")
    q.add_argument("--ckpt", required=True)
    q.add_argument("--out", required=True, help="directory: <planner|world_model>.onnx + .manifest.json")
    q.add_argument("--name", default=None)
    q.add_argument("--batch", type=int, default=1)
    q.set_defaults(fn=cmd_export)

    b = sub.add_parser("bench", help="benchmarks (JSON)").add_subparsers(dest="sub", required=True)
    q = b.add_parser("infer", help="per-call latency (p50/p99) of the planner and world model, batch 1 and a "
                     "training batch, on the backend the runtime picks")
    q.add_argument("--json")
    q.add_argument("--models", default="perlad:planner,world_model:world_model",
                   help="name[:kind] list, found as <models dir>/<name>/<kind>.onnx")
    q.add_argument("--batch", type=int, default=256)
    q.add_argument("--backend", default="auto", help="auto, tensorrt, ort-cuda or ort-cpu")
    q.add_argument("--threads", type=int, default=1)
    q.set_defaults(fn=cmd_bench_infer)
    q = b.add_parser("sim", help="agent-steps per second of the batched simulator, and a route's real-time factor")
    q.add_argument("--json")
    q.add_argument("--envs", type=int, default=256)
    q.add_argument("--agents", type=int, default=64)
    q.add_argument("--steps", type=int, default=100)
    q.add_argument("--town", default="Proc0")
    q.add_argument("--procs", type=int, default=None,
                   help="processes stepping a batch each at the same time (default: one per CPU)")
    q.add_argument("--routes", default=None,
                   help="Bench2Drive route XML: its first 5 routes (by id) whose towns are in --maps-dir are timed "
                        "for the single-route real-time factor (default, or none there: random routes on --town)")
    maps_arg(q)
    q.set_defaults(fn=cmd_bench_sim)
    q = b.add_parser("stack", help="control-loop latency of the ROS 2 stack over one route (p50/p99, missed ticks)")
    q.add_argument("--json")
    q.add_argument("--routes", default=None, help="route XML (default: a random Proc<seed> route)")
    q.add_argument("--route-id", default=None)
    maps_arg(q)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default="results/bench/stack_run")
    q.add_argument("--record", action="store_true", help="with the recorder in continuous mode")
    q.set_defaults(fn=cmd_bench_stack)
    return p


def main(argv: list[str] | None = None) -> int:
    from .maps import MapError
    from .policies import UnknownPolicy
    from .routes import RouteError

    args = build_parser().parse_args(argv)
    np.seterr(all="ignore")
    try:
        return args.fn(args)
    except (RouteError, MapError, UnknownPolicy) as e:
        print(f"drive-stack: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
