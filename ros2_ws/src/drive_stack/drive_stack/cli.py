"""``drive-stack-ros``: the commands that run the ROS 2 stack (the node table as processes over DDS, `launcher.py`).

    drive-stack-ros stack run     one route through the whole stack (pseudo-simulator in place of CARLA)
    drive-stack-ros bench stack   the control loop's latency over one route (JSON)
    drive-stack-ros demo          the embedded default (`make demo`): the stack on a procedural route, on a
                                  Bench2Drive route when the shared data is there, then a batched evaluation

The library's own CLI (`drive-stack`: routes, eval, collect, train, ...) never imports this package; this one uses
the library (imports point from the ROS package to `drivesim`, never back).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from drivesim.cli import add_maps_arg, demo_batched_eval, demo_town, shared_defaults

PROG = "drive-stack-ros"


def _launcher():
    try:
        from . import launcher
    except ImportError as e:  # rclpy or the interface packages are missing
        raise SystemExit(f"{PROG}: the ROS 2 stack is not installed in this environment ({e}); run `make setup` "
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
    from .params import parse_set

    try:
        overrides = parse_set(a.set)
    except ValueError as e:
        print(f"drive-stack-ros stack run: error: {e}", file=sys.stderr)
        return 2
    res = _launcher().stack_run(a.routes, a.route_id, a.out, maps_dir=a.maps_dir, policy=a.policy, seed=a.seed,
                                faults=a.fault, record=a.record, timeout=a.timeout, tick_timeout=a.tick_timeout,
                                node_overrides=overrides, perception=a.perception, route_length=a.route_length)
    print_stack_result(res)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


def cmd_bench_stack(a) -> int:
    """Per-tick latency (odometry published -> stamped command accepted by the simulator) over a route."""
    import numpy as np

    res = _launcher().stack_run(a.routes, a.route_id, a.out, maps_dir=a.maps_dir, seed=a.seed, route_length=a.route_length,
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
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


def cmd_demo(a) -> int:
    """The embedded default: the ROS 2 stack in closed loop (real processes over DDS) on a procedural-town route,
    then on a Bench2Drive route when the routes and maps are found (`drivesim.cli.shared_defaults`: the options,
    else $DRIVE_STACK_MAPS / $DRIVE_STACK_SHARED, else ../shared beside the checkout), then the batched library
    evaluation of a few procedural routes (`drive-stack demo --no-stack` runs only that)."""
    from drivesim.maps import TownLoader
    from drivesim.routes import parse_routes

    launcher = _launcher()
    out = Path(a.out)
    town = f"Proc{a.seed}"
    t0 = time.perf_counter()
    g = demo_town(a.seed)
    print(f"\n== ROS 2 stack (6 nodes as processes, Fast DDS on localhost) on a {town} route ==")
    print_stack_result(launcher.stack_run(None, None, str(out / "stack_proc"), policy=a.policy, seed=a.seed))
    shared = shared_defaults(a.b2d_routes, a.maps_dir)
    missing = shared.missing()
    if missing:
        print(f"\n({missing}: the Bench2Drive stack route is skipped; pass --b2d-routes FILE --maps-dir DIR)")
    else:
        loader = TownLoader(str(shared.maps_dir))
        spec = next((r for r in parse_routes(shared.routes).routes if loader.available(r.town)), None)
        if spec is None:
            print(f"\n(no route of {shared.routes} is on a town in {shared.maps_dir}: the Bench2Drive stack route "
                  "is skipped)")
        else:
            print(f"\n== ROS 2 stack on Bench2Drive route {spec.route_id} ({spec.town}, {spec.scenario_type}) ==")
            print_stack_result(launcher.stack_run(str(shared.routes), spec.route_id, str(out / "stack_b2d"),
                                                  maps_dir=str(shared.maps_dir), policy=a.policy, seed=a.seed))
    demo_batched_eval(g, out, a.routes, a.workers, a.policy, a.seed)
    print(f"done in {time.perf_counter() - t0:.1f} s; results in {out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from drivesim.policies import POLICIES

    policies = ", ".join(POLICIES)
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def route_args(q, what: str):
        q.add_argument("--routes", default=None, help=f"route XML of the {what} (default: a random route on procedural "
                       "town Proc<seed>, written to OUT/routes.xml)")
        q.add_argument("--route-id", default=None, help="the route of --routes to drive (required with --routes)")
        add_maps_arg(q)
        q.add_argument("--seed", type=int, default=0, help="seed of the procedural route (without --routes), "
                       "background traffic and light phases (default: %(default)s)")
        q.add_argument("--route-length", type=float, default=250.0, metavar="M",
                       help="least length in metres of the procedural route (without --routes) (default: %(default)s)")

    st = sub.add_parser("stack", help="the ROS 2 stack: run").add_subparsers(dest="sub", required=True,
                                                                           metavar="SUBCOMMAND")
    q = st.add_parser("run", help="run the node table as processes over DDS on one route (pseudo-simulator)")
    route_args(q, "run")
    q.add_argument("--policy", default="rule", help=f"the planner node's policy: {policies} (default: %(default)s)")
    q.add_argument("--out", default="results/stack", help="output folder: results.json, summary.json, bags/, logs/, "
                   "params/ (default: %(default)s)")
    q.add_argument("--fault", action="append", default=[], metavar="NODE:KIND@T",
                   help="inject a fault at sim time T [s], e.g. planner:stall@12.0, planner:nan@12.0, "
                        "planner:exit@12.0, planner:raise@12.0 (repeatable; default: none)")
    q.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="a node parameter (config/stack.yaml), e.g. takeover_monitor.steer_threshold=0.2 (TakeAD's "
                        "shadow-mode steering trigger) (repeatable; default: none)")
    q.add_argument("--record", default="takeover", choices=["takeover", "continuous", "both"],
                   help="recorder mode: a bag per takeover, 5 s segment bags, or both (default: %(default)s)")
    q.add_argument("--timeout", type=float, default=900.0, help="wall-clock seconds for the whole run "
                   "(default: %(default)s)")
    q.add_argument("--tick-timeout", type=float, default=1.0, help="wall-clock seconds the simulator waits for a "
                   "tick's command before the tick counts as missed (default: %(default)s)")
    q.add_argument("--perception", default="privileged", choices=["privileged", "sensors"],
                   help="what the stack perceives from: privileged (the bridge's odometry, objects and traffic-light "
                        "pseudo sensors) or sensors (GNSS + IMU + speedometer for the ego; objects and lights from "
                        "the detector topics, which the pseudo-simulator's ideal detector fills) (default: %(default)s)")
    q.add_argument("--json", help="write the run's result here too (default: none)")
    q.set_defaults(fn=cmd_stack_run)

    b = sub.add_parser("bench", help="benchmarks of the ROS 2 stack (JSON): stack").add_subparsers(
        dest="sub", required=True, metavar="SUBCOMMAND")
    q = b.add_parser("stack", help="control-loop latency of the ROS 2 stack over one route (p50/p99, missed ticks)")
    q.add_argument("--json", help="write the result here too (default: none)")
    route_args(q, "timed run")
    q.add_argument("--out", default="results/bench/stack_run", help="the run's output folder (default: %(default)s)")
    q.add_argument("--record", action="store_true", help="with the recorder in continuous mode (segment bags)")
    q.set_defaults(fn=cmd_bench_stack)

    q = sub.add_parser("demo", help="the embedded default (`make demo`): the stack on a procedural route, on a "
                       "Bench2Drive route when the routes and maps are found, then a batched evaluation")
    q.add_argument("--out", default="results/demo", help="output folder (default: %(default)s)")
    q.add_argument("--b2d-routes", default=None,
                   help="Bench2Drive route XML for the second stack run; its first route on a town in --maps-dir is "
                        "driven (default: $DRIVE_STACK_SHARED/bench2drive/bench2drive220.xml, else "
                        "../shared/bench2drive/bench2drive220.xml beside the checkout; none found: skipped)")
    q.add_argument("--maps-dir", default=None,
                   help="folder of CARLA OpenDRIVE maps (<Town>.xodr) for the Bench2Drive route (default: "
                        "$DRIVE_STACK_MAPS or $CARLA_ROOT's OpenDRIVE folder, else $DRIVE_STACK_SHARED/carla_maps, "
                        "else ../shared/carla_maps beside the checkout; none found: skipped)")
    q.add_argument("--seed", type=int, default=0, help="procedural town Proc<seed>, its routes and the evaluation "
                   "seed (default: %(default)s)")
    q.add_argument("--routes", type=int, default=4, help="number of routes in the batched evaluation "
                   "(default: %(default)s)")
    q.add_argument("--workers", type=int, default=2, help="route worker processes of the batched evaluation "
                   "(default: %(default)s)")
    q.add_argument("--policy", default="perlad", help=f"the planner: {policies} (perlad: the committed ONNX planner) "
                   "(default: %(default)s)")
    q.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    from drivesim.maps import MapError
    from drivesim.policies import UnknownPolicy
    from drivesim.routes import RouteError

    args = build_parser().parse_args(argv)
    np.seterr(all="ignore")
    try:
        return args.fn(args)
    except (RouteError, MapError, UnknownPolicy, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
