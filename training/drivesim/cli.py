"""``drive-stack``: one CLI for offline work. Every subcommand has --help; JSON outputs are stable.

The ROS 2 stack has its own CLI, ``drive-stack-ros`` (stack run, bench stack, demo), in the ROS package: this library
never imports it."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
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
    from .evaluation.dispatch import RayMissing
    from .evaluation.evaluate import EvalConfig, evaluate, skipped_lines

    cfg = EvalConfig(routes=a.routes, out=a.out, policy=a.policy, model=a.model, maps_dir=a.maps_dir,
                     route_ids=a.route_ids.split(",") if a.route_ids else None, workers=a.workers,
                     resume=a.resume, seed=a.seed, route_timeout_s=a.route_timeout, fault=a.fault,
                     render_failures=a.render_failures, ray=a.ray, max_retries=a.max_retries,
                     perception=a.perception, gnss_noise=a.gnss_noise, check=a.check,
                     unstall=a.unstall, check_margin=a.check_margin)
    try:
        s = evaluate(cfg)
    except RayMissing as e:
        print(f"drive-stack: error: {e}", file=sys.stderr)
        return 2
    _print_summary(s)
    print(f"results: {Path(a.out) / 'results.json'}, summary: {Path(a.out) / 'summary.json'}")
    if s["routes_evaluated"] == 0:  # a score over no route is no result: say why and fail
        print(f"drive-stack: error: no route of {a.routes} could be evaluated ({s['routes_skipped']} skipped):",
              file=sys.stderr)
        for line in skipped_lines(s["skipped"]):
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------- demo
ROS_CLI = "drive-stack-ros"  # the CLI of the ROS 2 package (under ros2_ws/src): stack run, bench stack, demo
B2D_ROUTES = Path("bench2drive") / "bench2drive220.xml"  # under the shared data folder
B2D_MAPS = Path("carla_maps")


def repo_root() -> Path:
    """The checkout this library runs from (an editable install: <repo>/training/drivesim), else the working
    directory."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


@dataclasses.dataclass(frozen=True)
class SharedDefaults:
    """Where the Bench2Drive routes and CARLA maps were found (None: not found) and the places looked at."""

    routes: Path | None
    maps_dir: Path | None
    routes_looked: tuple[str, ...]  # every place tried, in order, for the console
    maps_looked: tuple[str, ...]

    def missing(self) -> str | None:
        """None when both exist, else one line saying what is missing and where it was looked for."""
        gone = [f"no Bench2Drive {what} (looked at: {', '.join(looked)})"
                for what, p, looked in (("routes", self.routes, self.routes_looked),
                                        ("maps", self.maps_dir, self.maps_looked)) if p is None or not p.exists()]
        return "; ".join(gone) or None


def shared_defaults(routes: str | None = None, maps_dir: str | None = None, root: Path | None = None) -> SharedDefaults:
    """The Bench2Drive routes file and CARLA maps folder a command uses when its options are not given, as
    `make demo` passes them. Routes: the option when given (kept even if absent: `missing()` says so), else
    $DRIVE_STACK_SHARED/bench2drive/bench2drive220.xml, else ../shared/bench2drive/bench2drive220.xml beside
    the repository root (`root`, default `repo_root()`) when it exists. Maps: the option, else
    $DRIVE_STACK_MAPS or $CARLA_ROOT's OpenDRIVE folder (`maps.towns.default_maps_dir`), else
    $DRIVE_STACK_SHARED/carla_maps, else ../shared/carla_maps when it exists. Not found: None."""
    from .maps.towns import default_maps_dir

    shared = [("$DRIVE_STACK_SHARED/", Path(os.environ["DRIVE_STACK_SHARED"]))] if os.environ.get("DRIVE_STACK_SHARED") else []
    shared.append(("", (root or repo_root()).resolve().parent / "shared"))

    def pick(given: str | None, option: str, rel: Path, looked: list[str]) -> Path | None:
        if given:
            looked.append(f"{option} {given}")
            return Path(given)
        for label, base in shared:
            cand = base / rel
            looked.append(f"{label}{rel} = {cand}" if label else str(cand))
            if cand.exists():
                return cand
        return None

    routes_looked: list[str] = []
    maps_looked: list[str] = []
    found_routes = pick(routes, "--b2d-routes", B2D_ROUTES, routes_looked)
    env_maps = None if maps_dir else default_maps_dir()
    if env_maps is not None:
        maps_looked.append(f"$DRIVE_STACK_MAPS / $CARLA_ROOT: {env_maps}")
        found_maps = env_maps
    else:
        if not maps_dir:
            maps_looked.append("$DRIVE_STACK_MAPS / $CARLA_ROOT (unset)")
        found_maps = pick(maps_dir, "--maps-dir", B2D_MAPS, maps_looked)
    return SharedDefaults(found_routes, found_maps, tuple(routes_looked), tuple(maps_looked))


def demo_town(seed: int):
    """The demo's first line: the procedural town Proc<seed> and its facts. Returns its lane graph."""
    from .maps import TownLoader

    g = TownLoader().load(f"Proc{seed}")
    print(f"procedural town {g.name}: {g.num_lanes} lanes, {g.lane_length.sum() / 1000:.1f} km of lanes, "
          f"{g.num_lights} traffic lights, {len(g.stop_id)} stop signs, {len(g.crosswalks())} crosswalks")
    return g


def demo_batched_eval(g, out: Path, n_routes: int, workers: int, policy: str, seed: int) -> dict:
    """The demo's library part: n_routes random routes on g, evaluated in the batched pseudo-simulator."""
    from .evaluation.evaluate import EvalConfig, evaluate
    from .routes import write_routes
    from .routes.generate import random_routes

    print(f"\n== batched pseudo-simulator evaluation: {n_routes} {g.name} routes, {workers} workers ==")
    routes_file = out / "routes.xml"
    write_routes(random_routes(g, n_routes, seed=seed), routes_file)
    s = evaluate(EvalConfig(routes=str(routes_file), out=str(out / "eval"), policy=policy, workers=workers, seed=seed))
    _print_summary(s)
    return s


def cmd_demo(a) -> int:
    """`drive-stack demo --no-stack`: the library part of the demo (the procedural town, then the batched
    evaluation of a few of its routes). The whole demo runs the ROS 2 stack first: `drive-stack-ros demo`."""
    if not a.no_stack:
        return _moved("demo", "demo", " (`drive-stack demo --no-stack` runs only the batched library evaluation)")
    out = Path(a.out)
    t0 = time.perf_counter()
    g = demo_town(a.seed)
    demo_batched_eval(g, out, a.routes, a.workers, a.policy, a.seed)
    print(f"done in {time.perf_counter() - t0:.1f} s; results in {out}/")
    return 0


def _moved(typed: str, ros_cmd: str, extra: str = "") -> int:
    print(f"drive-stack: `drive-stack {typed}` runs the ROS 2 stack, which has its own CLI: use "
          f"`{ROS_CLI} {ros_cmd}`{extra}", file=sys.stderr)
    return 2


def cmd_moved(a) -> int:
    return _moved(a.moved, a.moved)


# ---------------------------------------------------------------------------------------------- bench
def cmd_bench_sim(a) -> int:
    from .bench import bench_sim

    res = bench_sim(num_envs=a.envs, max_agents=a.agents, steps=a.steps, town=a.town, maps_dir=a.maps_dir,
                    procs=a.procs, routes_file=a.routes)
    _write_json(a.json, res)
    print(json.dumps(res, indent=2))
    return 0


def cmd_bench_scale(a) -> int:
    from .bench import bench_scale

    try:
        workers = [int(w) for w in a.workers.split(",") if w.strip()] if a.workers else None
    except ValueError:
        print(f"drive-stack: error: --workers wants comma-separated counts, not {a.workers!r}", file=sys.stderr)
        return 2
    if workers is not None and (not workers or min(workers) < 1):
        print(f"drive-stack: error: --workers wants counts of at least 1, not {a.workers!r}", file=sys.stderr)
        return 2
    res = bench_scale(routes_file=a.routes, maps_dir=a.maps_dir,
                      route_ids=a.route_ids.split(",") if a.route_ids else None, n_routes=a.routes_n,
                      workers=workers, policy=a.policy, model=a.model, ray=None if a.no_ray else a.ray,
                      town=a.town, min_length=a.route_length, seed=a.seed,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
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


def cmd_collect(a) -> int:
    from .dataset import CollectConfig, collect
    from .evaluation.dispatch import RayMissing

    cfg = CollectConfig(routes=a.routes, out=a.out, maps_dir=a.maps_dir, policy=a.policy, workers=a.workers,
                        seed=a.seed, route_ids=a.route_ids.split(",") if a.route_ids else None,
                        max_routes=a.max_routes, b2d=not a.no_anno, steer_noise=a.steer_noise,
                        speed_noise=a.speed_noise, noise_rate=a.noise_rate, noise_duration=a.noise_duration,
                        driver=a.driver, driver_model=a.driver_model, driver_check=a.driver_check,
                        driver_unstall=a.driver_unstall, branches=a.branches,
                        takeover=a.takeover,
                        takeover_steer=a.takeover_steer, takeover_steer_min_speed=a.takeover_steer_min_speed,
                        takeover_duration=a.takeover_duration,
                        takeover_stall=a.takeover_stall, takeover_stall_speed=a.takeover_stall_speed,
                        branch_every=a.branch_every, ray=a.ray, max_retries=a.max_retries,
                        route_timeout_s=a.route_timeout)
    try:
        idx = collect(cfg)
    except RayMissing as e:
        print(f"drive-stack: error: {e}", file=sys.stderr)
        return 2
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




def timeline_line(topic: str, msg) -> str:
    """One message as a timeline line: its stamp [s], topic and the fields a reader wants."""
    from .stack.wire import stamp_sec

    t = stamp_sec(msg.header.stamp) if hasattr(msg, "header") else float("nan")
    if msg.__msgtype__.endswith("/Reasoning"):
        cap = f", cap {msg.speed_cap:.1f} m/s" if msg.speed_cap >= 0 else ""
        what = f"[{msg.model}] {msg.advisory}{cap}: {msg.text}"
    elif msg.__msgtype__.endswith("/TakeoverEvent"):
        what = f"TAKEOVER {msg.cause_name} ({msg.detail}) -> {msg.controller} for {msg.duration:.1f} s"
    else:
        what = msg.__msgtype__
    return f"{t:8.2f}  {topic:<26} {what}"


def cmd_bag_timeline(a) -> int:
    from .dataset.ingest import read_messages
    from .stack.bags import BagError

    try:
        msgs, _ = read_messages(Path(a.bag), warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    except BagError as e:
        print(f"drive-stack: error: {e}", file=sys.stderr)
        return 2
    topics = [t for t in a.topics.split(",") if t]
    rows = sorted((timeline_line(t, m) for t in topics for _, m in msgs.get(t, [])),
                  key=lambda line: float(line.split()[0]))
    for r in rows:
        print(r)
    missing = [t for t in topics if t not in msgs]
    if missing:
        print(f"(not in this bag: {', '.join(missing)})", file=sys.stderr)
    return 0


def cmd_takeover_ingest(a) -> int:
    from .dataset.ingest import ingest
    from .stack.bags import BagError

    try:
        idx = ingest(a.bags, a.out, max_agents=a.max_agents)
    except BagError as e:
        print(f"drive-stack: error: {e}", file=sys.stderr)
        return 2
    return 0 if idx["episodes"] else 1


# ---------------------------------------------------------------------------------------------- learning
def dataclass_args(q, cls) -> None:
    """One --option per leaf field of a config dataclass (`typed.options`: a nested config's fields as
    --stage.field, e.g. `train pipeline --rl.kl-ref 0.1`; lists are left out), its dest the field's dotted path
    (what `learn.train.config_from_args` reads). `--help` shows each field's documentation (its `# comment` in
    the source, `typed.field_docs`), its values (Literal fields) and its default. Options default to None
    (unset): the config's own default applies."""
    import types
    import typing

    from .typed import options

    fixed = getattr(cls, "SET_BY_PIPELINE", ())  # stage fields a pipeline sets itself: no option (it would refuse it)
    for o in options(cls):
        if "." in o.path and o.path.rsplit(".", 1)[1] in fixed:
            continue
        t = o.type
        if typing.get_origin(t) in (typing.Union, types.UnionType):  # X | None -> X
            rest = [x for x in typing.get_args(t) if x is not type(None)]
            t = rest[0] if len(rest) == 1 else t
        shown = "unset" if o.default is None else o.default
        shown = getattr(shown, "value", shown)  # an Enum's value, as it is typed
        hlp = f"{o.doc} (default: {shown})".strip().replace("%", "%%")
        flag = "--" + o.path.replace("_", "-")
        if t is bool:
            q.add_argument(flag, dest=o.path, action=argparse.BooleanOptionalAction, default=None, help=hlp)
        elif typing.get_origin(t) is typing.Literal:
            values = typing.get_args(t)
            q.add_argument(flag, dest=o.path, type=type(values[0]), choices=values, default=None, help=hlp)
        elif t in (int, float, str):
            q.add_argument(flag, dest=o.path, type=t, default=None, help=hlp, metavar=t.__name__.upper())
        elif isinstance(t, type) and issubclass(t, enum.Enum):
            values = [m.value for m in t]
            q.add_argument(flag, dest=o.path, type=type(values[0]), choices=values, default=None, help=hlp)


def cmd_train(a) -> int:
    from .learn.train import config_from_args

    if a.sub in ("il", "wm", "takevla"):  # under torchrun: data-parallel (learn/dist.py); process 0 prints
        from .learn import dist
        from .learn.configs import ILConfig, WMConfig
        from .learn.train import ILStage, WMStage
        from .learn.vla import VLAConfig, finish_vla, make_stage

        cls, stage = {"il": (ILConfig, ILStage), "wm": (WMConfig, WMStage), "takevla": (VLAConfig, make_stage)}[a.sub]
        try:
            cfg = config_from_args(cls, a)
            st = stage(cfg)
            m = st.run()
        except BaseException:
            dist.teardown(sync=False)
            raise
        dist.teardown()
        if not st.dist.main:
            return 0
        if a.sub == "takevla":  # process 0 alone exports and evaluates, after the group is gone
            rep = finish_vla(cfg, m)
            m = {"final_val": rep["metrics"]["final_val"], "model": rep["model"], "eval": rep.get("eval")}
        print(json.dumps(m if a.sub == "takevla" else m["final_val"], indent=2))
    elif a.sub == "rl":
        from .learn.configs import RLConfig
        from .learn.rl import RLStage

        m = RLStage(config_from_args(RLConfig, a)).run()
        print(json.dumps(m["val"], indent=2))
    elif a.sub == "takead":
        from .learn.takead import TakeADConfig, run_takead

        rep = run_takead(config_from_args(TakeADConfig, a))
        print(json.dumps([{k: r.get(k) for k in ("round", "takeovers", "takeovers_per_km", "disengagement_states",
                                                 "driving_score_collect", "eval", "onnx")} for r in rep["rounds"]],
                         indent=2))
    elif a.sub == "dreaming":
        from .learn.dreaming import DreamConfig, run_dreaming

        rep = run_dreaming(config_from_args(DreamConfig, a))
        print(json.dumps({k: rep.get(k) for k in ("first_heldout", "last_heldout", "model", "eval")}, indent=2))
    else:
        from .learn.pipeline import PipelineConfig, run_pipeline

        rep = run_pipeline(config_from_args(PipelineConfig, a))
        print(json.dumps({k: {kk: v.get(kk) for kk in ("wall_s", "onnx", "final", "datasets") if kk in v} for k, v in rep["stages"].items()},
                         indent=2))
    return 0


def parse_runs(spec: str) -> dict[str, str]:
    """`label=eval_out_dir,...` -> {label: dir}. A label given twice is refused (its row would silently show only
    the last run): the runs of one label are joined with '+' (averaged, e.g. seeds)."""
    runs: dict[str, str] = {}
    for item in spec.split(","):
        label, sep, path = (x.strip() for x in item.partition("="))
        if not sep or not label or not path:
            raise ValueError(f"--runs: {item!r} is not label=eval_out_dir")
        if label in runs:
            raise ValueError(f"--runs: label {label!r} is given twice ({runs[label]} and {path}); give each run its "
                             f"own label, or join one label's runs with '+' to average them ({label}={runs[label]}+{path})")
        runs[label] = path
    return runs


def cmd_eval_table(a) -> int:
    from .evaluation.report import infraction_table, summary_table

    try:
        runs = parse_runs(a.runs)
    except ValueError as e:
        print(f"drive-stack eval-table: error: {e}", file=sys.stderr)
        return 2
    md = summary_table(runs, a.title)
    if a.infractions:
        md += "\n" + infraction_table(runs)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(md)
    print(md)
    return 0


def cmd_eval_language(a) -> int:
    from .learn.vla import language_eval
    from .policies import resolve_vla

    m = language_eval(resolve_vla(a.model or None), a.data, a.maps_dir, a.max_frames, workers=a.workers)
    _write_json(a.json, m)
    print(json.dumps(m, indent=2))
    return 0


def cmd_export(a) -> int:
    if a.tensorrt:
        return cmd_export_tensorrt(a)
    if not a.ckpt or not a.out:
        print("drive-stack export: error: give --ckpt CKPT --out DIR (ONNX export), or --tensorrt MODEL.onnx "
              "(TensorRT engine)", file=sys.stderr)
        return 2
    from .models.export import export_checkpoint

    man = export_checkpoint(a.ckpt, a.out, name=a.name, batch=a.batch)
    print(json.dumps({k: man[k] for k in ("name", "file", "sha256", "inputs", "outputs", "parity_max_abs_err")},
                     indent=2))
    return 0


def cmd_export_tensorrt(a) -> int:
    """The TensorRT engine of an ONNX file, from the engine cache or built into it (models/engine_cache.py).
    Without TensorRT or an NVIDIA GPU: one line on stderr, exit 3."""
    from .models.engine_cache import TensorRTUnavailable, build_cached_engine, tensorrt_environment
    from .models.runtime import default_engine_cache

    onnx_path = Path(a.tensorrt)
    if not onnx_path.is_file():
        print(f"drive-stack export: error: {onnx_path}: no such ONNX file", file=sys.stderr)
        return 2
    precision = "int8" if a.int8 else "fp32" if a.fp32 else "fp16"
    if (precision == "int8") != bool(a.calib):
        print("drive-stack export: error: --int8 needs --calib DATASET (and --calib only goes with --int8)",
              file=sys.stderr)
        return 2
    cache = Path(a.cache) if a.cache else default_engine_cache()
    try:
        tensorrt_environment()  # before any calibration work: fail fast, in one line, where TensorRT cannot run
        calibration = calibration_from_dataset(a, onnx_path) if precision == "int8" else None
        res = build_cached_engine(onnx_path, cache, precision, calibration, log=print)
    except TensorRTUnavailable as e:
        print(f"drive-stack export: error: {e}", file=sys.stderr)
        return 3
    print(f"{onnx_path}: {res.action} {res.path} ({precision}, {len(res.blob)} bytes)"
          + (f": {res.reason}" if res.reason else ""))
    return 0


def calibration_from_dataset(a, onnx_path: Path) -> list:
    """INT8 calibration batches: features of the collected dataset's frames (learn.data.build_samples, the same
    features the planner sees), drawn to the engine's static input shapes. Untested here (needs a GPU)."""
    from .learn.data import DataConfig, build_samples
    from .models.engine_cache import calibration_batches, onnx_input_shapes

    samples = build_samples(DataConfig(data=a.calib, maps_dir=a.maps_dir, workers=1), log=print)
    return calibration_batches(samples, onnx_input_shapes(onnx_path), max_batches=a.calib_batches, seed=0,
                               aliases={"ego_plan": "ego_future"})


def cmd_bench_infer(a) -> int:
    from .bench import bench_infer
    from .policies.learned import find_model

    models = {}
    for spec in a.models.split(","):
        name, kind = (spec.split(":") + ["planner"])[:2]
        models[f"{name}/{kind}"] = str(find_model(name, kind))
    res = bench_infer(models, batch=a.batch, backend=a.backend, threads=a.threads, log=print)
    res["target"] = "planner p99 < 5 ms at batch 1 on this CPU"
    if a.vla:
        from .bench import bench_vla
        from .policies import resolve_vla

        try:
            path = resolve_vla(a.vla if a.vla.endswith(".onnx") else None, "takevla")
        except FileNotFoundError as e:
            print(f"takevla reasoning not timed: {e}")
        else:
            res["takevla_reasoning"] = bench_vla(str(path), backend=a.backend, log=print)
    _write_json(a.json, res)
    print(json.dumps(res, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    from .policies import LEARNED, POLICIES

    policies = ", ".join(POLICIES)
    p = argparse.ArgumentParser(prog="drive-stack", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def maps_arg(q):
        add_maps_arg(q)

    def policy_arg(q, default, what="the policy that drives"):
        q.add_argument("--policy", default=default,
                       help=f"{what}: {policies} (rule: IDM + pure pursuit on the perceived scene; expert: privileged, "
                            f"sees everything; {', '.join(LEARNED)}: the learned ONNX planners; takevla: the "
                            f"vision-language-action model) "
                            f"(default: %(default)s)")

    r = sub.add_parser("routes", help="route files: check, generate, suite").add_subparsers(
        dest="sub", required=True, metavar="SUBCOMMAND")
    q = r.add_parser("check", help="parse and densify every route; per-route status JSON")
    q.add_argument("--routes", required=True, help="route XML file (Bench2Drive/Leaderboard 2.0 schema)")
    maps_arg(q)
    q.add_argument("--json", help="write the per-route report (id, town, status, lengths [m]) here (default: none)")
    q.set_defaults(fn=cmd_routes_check)
    q = r.add_parser("generate", help="random routes on a town (our own route files)")
    q.add_argument("--town", required=True, help="town name: Proc<seed> (procedural) or a CARLA town in --maps-dir, "
                   "e.g. Town01")
    q.add_argument("--n", type=int, default=5, help="number of routes (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="random seed of the routes' start, turns and end "
                   "(default: %(default)s)")
    q.add_argument("--min-length", type=float, default=250.0, help="shortest route [m] (default: %(default)s)")
    q.add_argument("--prefix", default="", help="route id prefix: ids are PREFIX0, PREFIX1, ... (default: none)")
    q.add_argument("--out", required=True, help="route XML file to write")
    maps_arg(q)
    q.set_defaults(fn=cmd_routes_generate)

    q = r.add_parser("suite", help="N routes per scenario type with the scenario placed where it fits (our own suites)")
    q.add_argument("--town", required=True, help="town name: Proc<seed> (procedural) or a CARLA town in --maps-dir, "
                   "e.g. Town04")
    q.add_argument("--types", default="all", help="comma-separated scenario types, or 'all' (the 44 Bench2Drive "
                   "types), 'dos' (the occlusion variants) or 'all+dos' (default: %(default)s)")
    q.add_argument("--n", type=int, default=2, help="routes per type (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="random seed of the routes and scenario placements "
                   "(default: %(default)s)")
    q.add_argument("--min-length", type=float, default=250.0, help="shortest route [m] (default: %(default)s)")
    q.add_argument("--out", required=True, help="route XML file to write")
    maps_arg(q)
    q.set_defaults(fn=cmd_routes_suite)

    t = sub.add_parser("town", help="procedural towns and map facts").add_subparsers(
        dest="sub", required=True, metavar="SUBCOMMAND")
    q = t.add_parser("generate", help="write procedural town Proc<seed> as OpenDRIVE")
    q.add_argument("--seed", type=int, default=0, help="the town's seed: Proc<seed>, same seed same bytes "
                   "(default: %(default)s)")
    q.add_argument("--out", required=True, help="OpenDRIVE (.xodr) file to write")
    q.set_defaults(fn=cmd_town_generate)
    q = t.add_parser("info", help="load a town and print its lane-graph facts")
    q.add_argument("--town", required=True, help="town name: Proc<seed> or a CARLA town in --maps-dir, e.g. Town01")
    q.add_argument("--json", help="write the facts here too (default: none)")
    maps_arg(q)
    q.set_defaults(fn=cmd_town_info)

    q = sub.add_parser("eval", help="closed-loop Bench2Drive evaluation in the pseudo-simulator")
    q.add_argument("--routes", required=True, help="route XML file (Bench2Drive bench2drive220.xml or our own)")
    maps_arg(q)
    policy_arg(q, "rule")
    q.add_argument("--model", default=None, help="learned policies: the planner ONNX file to drive with (default: "
                   "<dir>/<policy>/planner.onnx of $DRIVE_STACK_MODELS, else the committed models/); its path and "
                   "sha256 are printed and recorded")
    q.add_argument("--out", required=True, help="output folder: results.json (Leaderboard 2.0 shape), summary.json, "
                   "report.html")
    q.add_argument("--route-ids", default=None, help="comma-separated subset of route ids (default: every route)")
    q.add_argument("--workers", type=int, default=1, help="route worker processes (default: %(default)s)")
    q.add_argument("--resume", action="store_true", help="continue from OUT/results.json (routes already there are "
                   "not run again)")
    q.add_argument("--seed", type=int, default=0, help="seed of background traffic and light phases "
                   "(default: %(default)s)")
    q.add_argument("--route-timeout", type=float, default=600.0, help="wall-clock seconds before a route's worker "
                   "counts as hung (default: %(default)s)")
    q.add_argument("--render-failures", type=int, default=0, metavar="N",
                   help="render the N worst failing routes (GIF) into OUT/renders and the HTML report "
                        "(default: %(default)s)")
    q.add_argument("--perception", choices=("privileged", "sensors"), default="privileged",
                   help="how a non-privileged policy localises: privileged (the simulator's pose, the bridge's "
                        "odometry) or sensors (GNSS with the Leaderboard's noise + IMU + speedometer, filtered, as "
                        "the stack's perception:=sensors) (default: %(default)s)")
    q.add_argument("--gnss-noise", type=float, default=None, metavar="DEG",
                   help="--perception sensors: the GNSS noise standard deviation in degrees (default: the "
                        "Leaderboard's 5e-6, about 0.56 m; 0: none)")
    q.add_argument("--check", type=float, default=0.0, metavar="SECONDS",
                   help="learned planners: check the network's best (path, speed) candidate against the perceived "
                        "agents (constant velocity) over this horizon and drive the best-scored safe one instead "
                        "when it collides (policies/learned.py CandidateCheck; default: off)")
    q.add_argument("--unstall", type=float, default=0.0, metavar="SECONDS",
                   help="with --check: where the ego has stood this long and the plan (after the check) still stands, drive "
                        "the best-scored candidate of at least 2 m/s the check clears (never before a red or "
                        "yellow light; CandidateCheck.unstall; default: off)")
    q.add_argument("--check-margin", type=float, default=0.0, metavar="METRES",
                   help="with --check: widen the forecast ego's box by this much on each side (the controller cuts "
                        "corners; CandidateCheck.margin; default: %(default)s)")
    ray_args(q)
    q.add_argument("--fault", default=None, help=argparse.SUPPRESS)  # testing aid: crash|hang|exit:<route_id>
    q.set_defaults(fn=cmd_eval)

    q = sub.add_parser("render", help="bird's-eye view of an episode: a dataset episode, or a route driven now")
    q.add_argument("--episode", default=None, help="a collected episode directory (arrays.npz or anno/*.json.gz) (default: none; "
                   "give it or --routes)")
    q.add_argument("--routes", default=None, help="route XML: drive --route-id with --policy and render it "
                   "(default: none; give it or --episode)")
    q.add_argument("--route-id", default=None, help="the route to drive, with --routes (default: none)")
    policy_arg(q, "expert", "the policy that drives --route-id")
    q.add_argument("--seed", type=int, default=0, help="seed of background traffic and light phases when driving "
                   "a route (default: %(default)s)")
    maps_arg(q)
    q.add_argument("--out", required=True, help="output folder: PNG frames and episode.gif")
    q.add_argument("--every", type=int, default=2, help="render every N-th frame (episodes are 10 Hz, a route "
                   "driven now 20 Hz) (default: %(default)s)")
    q.add_argument("--no-png", action="store_true", help="only the animated GIF")
    q.add_argument("--size", type=int, default=480, help="image side [pixels], 80 m across (default: %(default)s)")
    q.set_defaults(fn=cmd_render)

    q = sub.add_parser("demo", help=f"with --no-stack: the demo's batched library evaluation (the whole demo, "
                       f"with the ROS 2 stack: {ROS_CLI} demo)")
    q.add_argument("--no-stack", action="store_true", help=f"run the library part: required here (the stack runs "
                   f"are {ROS_CLI} demo's)")
    q.add_argument("--out", default="results/demo", help="output folder (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="procedural town Proc<seed>, its routes and the evaluation "
                   "seed (default: %(default)s)")
    q.add_argument("--routes", type=int, default=4, help="number of routes in the batched evaluation "
                   "(default: %(default)s)")
    q.add_argument("--workers", type=int, default=2, help="route worker processes (default: %(default)s)")
    policy_arg(q, "perlad", "the planner (perlad: the committed ONNX planner)")
    q.set_defaults(fn=cmd_demo)

    q = sub.add_parser("stack", help=f"moved: the ROS 2 stack has its own CLI, `{ROS_CLI} stack run`",
                       add_help=False)
    q.add_argument("rest", nargs=argparse.REMAINDER, help=f"ignored: use {ROS_CLI}")
    q.set_defaults(fn=cmd_moved, moved="stack run")

    q = sub.add_parser("collect", help="drive a route suite with the expert and write the offline dataset "
                                       "(Bench2Drive anno/*.json.gz + columnar arrays.npz, 10 Hz)")
    q.add_argument("--routes", "--suite", dest="routes", required=True, help="route XML (e.g. from `routes suite`)")
    maps_arg(q)
    q.add_argument("--out", required=True, help="dataset folder: episodes/<town>_<route>_s<seed>/, index.json")
    policy_arg(q, "expert", "the policy whose controls are the labels (and that drives, unless --driver)")
    q.add_argument("--workers", type=int, default=1, help="route worker processes (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="episode i uses seed + i (default: %(default)s)")
    q.add_argument("--route-ids", default=None, help="comma-separated subset of route ids (default: every route)")
    q.add_argument("--max-routes", type=int, default=None, help="collect at most this many routes (default: all)")
    q.add_argument("--no-anno", action="store_true", help="only the columnar copy (no Bench2Drive json.gz frames)")
    q.add_argument("--steer-noise", type=float, default=0.0, help="std of the executed steering offset in noise "
                   "events [steer units, -1..1] (default: %(default)s)")
    q.add_argument("--speed-noise", type=float, default=0.0, help="std of the executed speed error in noise events "
                   "[m/s] (default: %(default)s)")
    q.add_argument("--noise-rate", type=float, default=0.1, help="noise events per second [1/s] (default: %(default)s)")
    q.add_argument("--noise-duration", type=float, default=1.0, help="length of a noise event [s] "
                   "(default: %(default)s)")
    q.add_argument("--driver", default=None,
                   help="DAgger: this policy drives (e.g. il) while --policy (the expert) labels every frame "
                        "(default: --policy drives)")
    q.add_argument("--driver-model", default=None,
                   help="ONNX file of a learned --driver (default: <dir>/<driver>/planner.onnx of $DRIVE_STACK_MODELS, "
                        "else the committed models/)")
    q.add_argument("--driver-check", type=float, default=0.0,
                   help="a learned --driver's candidate check horizon [s] (as `eval --check`); 0: off "
                        "(default: %(default)s)")
    q.add_argument("--driver-unstall", type=float, default=0.0, metavar="SECONDS",
                   help="with --driver-check: the check's unstall (as `eval --unstall`); 0: off (default: %(default)s)")
    q.add_argument("--takeover", action="store_true",
                   help="shadow mode (TakeAD): the expert (--policy) watches the --driver through the takeover gate "
                        "and drives when the driver's plan is about to fail or steers away from its own; frames "
                        "record who drove and the driver's own controls")
    q.add_argument("--takeover-steer", type=float, default=0.2,
                   help="steering difference (of the [-1, 1] command) that triggers a takeover; 0: off "
                        "(default: %(default)s, TakeAD's)")
    q.add_argument("--takeover-steer-min-speed", type=float, default=0.5,
                   help="the steering trigger counts only while the ego drives this fast [m/s] (a wheel angle at a "
                        "standstill moves nothing); 0: at a standstill too (default: %(default)s)")
    q.add_argument("--takeover-duration", type=float, default=2.0,
                   help="a takeover lasts at least this long [s of sim time] (default: %(default)s)")
    q.add_argument("--takeover-stall", type=float, default=0.0,
                   help="the expert also takes over where the ego has stood this long [s] while it would drive "
                        "(STALLED); 0: off (default: %(default)s)")
    q.add_argument("--takeover-stall-speed", type=float, default=2.0,
                   help="STALLED counts only where the expert's plan reaches this speed [m/s] (a creep to a stop "
                        "point a few metres ahead is not a stall); 0: its command alone (default: %(default)s)")
    q.add_argument("--branches", type=int, default=3,
                   help="counterfactual ego plans per branch point, the world model's reactivity data, 0: none "
                        "(default: %(default)s)")
    q.add_argument("--branch-every", type=float, default=1.0, help="time between branch points [s] "
                   "(default: %(default)s)")
    q.add_argument("--route-timeout", type=float, default=None, help="wall-clock seconds before a route's worker "
                   "counts as hung (default: no limit)")
    ray_args(q)
    q.set_defaults(fn=cmd_collect)
    d = sub.add_parser("dataset", help="collected datasets: stats").add_subparsers(
        dest="sub", required=True, metavar="SUBCOMMAND")
    q = d.add_parser("stats", help="frames, hours, per-scenario-type counts, speed and command histograms")
    q.add_argument("root", help="dataset folder (collect --out)")
    q.add_argument("--json", help="write the statistics here too (default: none)")
    q.set_defaults(fn=cmd_dataset_stats)
    g = sub.add_parser("bag", help="recorded bags: info, timeline").add_subparsers(dest="sub", required=True,
                                                                         metavar="SUBCOMMAND")
    q = g.add_parser("info", help="topics, message counts and time window of a bag (rosbags AnyReader)")
    q.add_argument("bag", help="bag folder (metadata.yaml + .mcap), e.g. OUT/bags/takeover_000_t00005.00 of a "
                   "stack run")
    q.set_defaults(fn=cmd_bag_info)
    q = g.add_parser("timeline", help="the reasoning (model, advisory, text) and the takeover events of a bag, in "
                     "stamp order")
    q.add_argument("bag", help="bag folder (a takeover or continuous bag of `drive-stack-ros stack run`)")
    from .stack.topics import REASONING, TAKEOVER

    q.add_argument("--topics", default=f"{TAKEOVER},{REASONING}", help="comma-separated (default: %(default)s)")
    q.set_defaults(fn=cmd_bag_timeline)
    g = sub.add_parser("takeover", help="takeover bags as training data").add_subparsers(
        dest="sub", required=True, metavar="SUBCOMMAND")
    q = g.add_parser("ingest", help="turn the stack's takeover bags into a dataset (collect's format: train il|takead "
                     "--data reads it); labels are the privileged expert's command and plan recorded in the bag")
    q.add_argument("bags", nargs="+", help="bag folders, or folders holding them (e.g. OUT/bags of `drive-stack-ros "
                   "stack run`)")
    q.add_argument("--out", required=True, help="dataset folder (index.json + episodes/); added to if it exists")
    q.add_argument("--max-agents", type=int, default=64, help="agent slots of the scene, ego included (default 64)")
    q.set_defaults(fn=cmd_takeover_ingest)

    from .learn.configs import ILConfig, RLConfig, WMConfig
    from .learn.dreaming import DreamConfig
    from .learn.pipeline import PipelineConfig
    from .learn.takead import TakeADConfig
    from .learn.vla import VLAConfig

    tr = sub.add_parser("train", help="PerlAD training stages (imitation, world model, RL) and the whole pipeline"
                        ).add_subparsers(dest="sub", required=True, metavar="STAGE")
    for name, cls, hlp in (("il", ILConfig, "imitation of both planner heads on a collected dataset"),
                           ("wm", WMConfig, "the prediction world model (multi-modal, conditioned on the ego plan)"),
                           ("rl", RLConfig, "RL of the longitudinal head in the pseudo-simulator (GRPO or PPO)"),
                           ("pipeline", PipelineConfig, "il -> wm -> perlad -> perlad_logreplay, exported to ONNX"),
                           ("takead", TakeADConfig, "TakeAD rounds: the planner drives, the expert takes over in "
                            "shadow mode, then DAgger and DPO on the takeovers"),
                           ("takevla", VLAConfig, "TakeVLA (BEV raster + instruction -> commentary + path + speed) "
                            "from scratch, with pre-takeover language supervision from shadow-mode takeovers"),
                           ("dreaming", DreamConfig, "TakeVLA's Scenario Dreaming: GRPO in takeover scenarios rebuilt "
                            "in the pseudo-simulator (2 s at 5 Hz, perturbed variants)")):
        q = tr.add_parser(name, help=hlp, description=f"{hlp}. Every option is a field of {cls.__name__}; unset "
                          "options keep the field's default.")
        dataclass_args(q, cls)
        q.set_defaults(fn=cmd_train)
    q = sub.add_parser("eval-table", help="a Markdown table (DS, SR, Efficiency, Comfortness, multi-ability) of "
                       "several evaluations")
    q.add_argument("--runs", required=True, help="label=eval_out_dir,... one row per label, in this order (each "
                   "folder with its summary.json; label=dir1+dir2 averages several runs, e.g. seeds; a label may "
                   "appear once)")
    q.add_argument("--title", default="", help="a bold title line above the table (default: none)")
    q.add_argument("--infractions", action="store_true", help="a second table: infraction counts (collisions by "
                   "kind, red lights, stop signs, lane departures, blocked), averaged over each label's runs")
    q.add_argument("--out", default=None, help="write the table here too (default: only printed)")
    q.set_defaults(fn=cmd_eval_table)
    q = sub.add_parser("eval-language", help="TakeVLA's commentary against its labels on a collected dataset "
                       "(decision, reason, hazard, precaution, advisory accuracy; greedy decoding as deployed)")
    q.add_argument("--data", required=True, help="a collected dataset (the expert on held-out routes: "
                   "drive-stack collect --no-anno)")
    q.add_argument("--model", default="", help="a vla.onnx (default: the usual lookup of takevla)")
    q.add_argument("--max-frames", type=int, default=2000, help="frames drawn evenly (default: %(default)s)")
    q.add_argument("--workers", type=int, default=2, help="feature-building processes (default: %(default)s)")
    q.add_argument("--json", help="write the result here too (default: none)")
    maps_arg(q)
    q.set_defaults(fn=cmd_eval_language)
    q = sub.add_parser("export", help="export a training checkpoint to ONNX (static shapes) with its manifest, or "
                       "build an ONNX model's TensorRT engine into the engine cache (--tensorrt)")
    q.add_argument("--ckpt", default=None, help="a stage's checkpoint (OUT/ckpt.pt of train il|wm|rl) (default: none; "
                   "give it with --out, or --tensorrt)")
    q.add_argument("--out", default=None, help="with --ckpt: directory for <planner|world_model>.onnx + "
                   ".manifest.json (default: none)")
    q.add_argument("--name", default=None, help="the model's name in the manifest (default: its kind, planner or "
                   "world_model)")
    q.add_argument("--batch", type=int, default=1, help="the static batch size of the exported graph "
                   "(default: %(default)s)")
    q.add_argument("--tensorrt", default=None, metavar="MODEL.onnx",
                   help="build (or find) this ONNX file's TensorRT engine in --cache, keyed by ONNX sha256 + GPU + "
                        "TensorRT version + precision; needs TensorRT and an NVIDIA GPU (default: none)")
    q.add_argument("--cache", default=None, help="engine cache folder (default: $DRIVE_STACK_CACHE/trt, "
                   "~/.cache/drive-stack/trt without it: where the runtime looks)")
    prec = q.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="FP16 engine (the default precision, the runtime's)")
    prec.add_argument("--fp32", action="store_true", help="FP32 engine")
    prec.add_argument("--int8", action="store_true", help="INT8 engine (FP16 fallback), entropy-calibrated on "
                      "--calib")
    q.add_argument("--calib", default=None, metavar="DATASET", help="with --int8: a collected dataset "
                   "(drive-stack collect --out) whose frames' features calibrate INT8 (default: none)")
    q.add_argument("--calib-batches", type=int, default=32, help="calibration batches drawn from --calib "
                   "(default: %(default)s)")
    maps_arg(q)
    q.set_defaults(fn=cmd_export)

    b = sub.add_parser("bench", help="benchmarks (JSON): infer, sim, scale").add_subparsers(
        dest="sub", required=True, metavar="SUBCOMMAND")
    q = b.add_parser("infer", help="per-call latency (p50/p99) of the planner and world model, batch 1 and a "
                     "training batch, on the backend the runtime picks")
    q.add_argument("--json", help="write the result here too (default: none)")
    q.add_argument("--models", default="perlad:planner,world_model:world_model",
                   help="name[:kind] list, found as <models dir>/<name>/<kind>.onnx (default: %(default)s)")
    q.add_argument("--batch", type=int, default=256, help="the training batch size timed beside batch 1 "
                   "(default: %(default)s)")
    q.add_argument("--backend", default="auto", help="auto, tensorrt, ort-cuda or ort-cpu (default: %(default)s)")
    q.add_argument("--threads", type=int, default=1, help="ONNX Runtime CPU threads (default: %(default)s)")
    q.add_argument("--vla", default="takevla", help="also time the vla_reasoning node's TakeVLA call on real scenes "
                   "(features, raster, action graph, commentary): takevla (the usual lookup) or a vla.onnx; '' to "
                   "skip (default: %(default)s)")
    q.set_defaults(fn=cmd_bench_infer)
    q = b.add_parser("sim", help="agent-steps per second of the batched simulator, and a route's real-time factor")
    q.add_argument("--json", help="write the result here too (default: none)")
    q.add_argument("--envs", type=int, default=256, help="environments per batch (default: %(default)s)")
    q.add_argument("--agents", type=int, default=64, help="agent slots per environment (default: %(default)s)")
    q.add_argument("--steps", type=int, default=100, help="steps timed, of 0.05 s each (default: %(default)s)")
    q.add_argument("--town", default="Proc0", help="town of the batched traffic, and of the random single routes "
                   "(default: %(default)s)")
    q.add_argument("--procs", type=int, default=None,
                   help="processes stepping a batch each at the same time (default: one per CPU)")
    q.add_argument("--routes", default=None,
                   help="Bench2Drive route XML: its first 5 routes (by id) whose towns are in --maps-dir are timed "
                        "for the single-route real-time factor (default, or none there: random routes on --town)")
    maps_arg(q)
    q.set_defaults(fn=cmd_bench_sim)
    q = b.add_parser("scale", help="routes per second against worker count for --workers and --ray, and the "
                     "per-route overhead Ray adds")
    q.add_argument("--json", help="write the result here too (default: none)")
    q.add_argument("--routes", default=None, help="route XML (e.g. Bench2Drive's bench2drive220.xml): its "
                   "--route-ids, else its first --routes-n routes (by id) whose towns are in --maps-dir "
                   "(default: --routes-n random routes on --town)")
    q.add_argument("--route-ids", default=None, help="comma-separated route ids of --routes (default: see --routes)")
    q.add_argument("--routes-n", type=int, default=6, metavar="N", help="routes, when not given by id "
                   "(default: %(default)s)")
    q.add_argument("--town", default="Proc0", help="town of the random routes without --routes "
                   "(default: %(default)s)")
    q.add_argument("--route-length", type=float, default=250.0, metavar="M", help="minimum length of the random "
                   "routes [m] (default: %(default)s)")
    q.add_argument("--workers", default=None, metavar="N,N,...", help="worker counts, comma-separated, each timed "
                   "on both backends (default: 1, 2, 4, ... up to the CPUs or the routes, whichever is fewer)")
    policy_arg(q, "rule")
    q.add_argument("--model", default=None, help="learned policies: the planner ONNX file (default: the deployed "
                   "one)")
    q.add_argument("--seed", type=int, default=0, help="seed of the routes' traffic and random routes "
                   "(default: %(default)s)")
    q.add_argument("--ray", nargs="?", const="local", default="local", metavar="ADDRESS",
                   help="the Ray rows: a Ray started here per worker count with that many CPUs (default), or "
                        "`auto`, `HOST:PORT`, `ray://HOST:PORT`: that running cluster, once, one route per CPU. "
                        "Without the ray extra the Ray rows are skipped, and the JSON says so")
    q.add_argument("--no-ray", action="store_true", help="local worker processes only")
    maps_arg(q)
    q.set_defaults(fn=cmd_bench_scale)
    q = b.add_parser("stack", help=f"moved: the ROS 2 stack's latency is `{ROS_CLI} bench stack`", add_help=False)
    q.add_argument("rest", nargs=argparse.REMAINDER, help=f"ignored: use {ROS_CLI}")
    q.set_defaults(fn=cmd_moved, moved="bench stack")
    return p


def ray_args(q) -> None:
    """--ray and --max-retries, as eval and collect take them."""
    q.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the routes as Ray tasks (needs the ray extra): alone, on a Ray started here with "
                        "--workers CPUs; with `auto`, `HOST:PORT` or `ray://HOST:PORT`, on that running cluster, one "
                        "route per CPU (default: worker processes here)")
    q.add_argument("--max-retries", type=int, default=1, metavar="N", help="with --ray: times a route whose worker "
                   "process or node died is run again before it counts as a simulation crash (default: %(default)s)")


def add_maps_arg(q) -> None:
    """--maps-dir, as every command that loads CARLA towns takes it."""
    q.add_argument("--maps-dir", default=None,
                   help="folder of CARLA OpenDRIVE maps (<Town>.xodr) (default: $DRIVE_STACK_MAPS or $CARLA_ROOT's "
                        "OpenDRIVE folder). Procedural towns (Proc<seed>) need none.")


# commands that run the ROS 2 stack: answered with the command to use, whatever follows them
MOVED = {("stack",): "stack run", ("bench", "stack"): "bench stack"}


def main(argv: list[str] | None = None) -> int:
    from .dataset.b2d import FrameError
    from .evaluation.dispatch import RayMissing
    from .maps import MapError
    from .policies import ModelError, UnknownPolicy
    from .routes import RouteError

    argv = sys.argv[1:] if argv is None else list(argv)
    for head, cmd in MOVED.items():
        if tuple(argv[:len(head)]) == head:
            return _moved(" ".join(head), cmd)
    args = build_parser().parse_args(argv)
    np.seterr(all="ignore")
    try:
        return args.fn(args)
    except (RouteError, MapError, UnknownPolicy, ModelError, FileNotFoundError, RayMissing, FrameError) as e:
        print(f"drive-stack: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
