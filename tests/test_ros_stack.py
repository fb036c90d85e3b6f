"""The ROS 2 stack as real processes over DDS (Fast DDS, localhost, a fresh domain per run): interface hashes,
parity with the direct library loop, takeovers on planner faults, invalid messages, takeover bags, and bags that
survive a killed recorder."""

import json
import sys
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 wheels not installed: run make setup")
pytestmark = pytest.mark.ros

WS = Path(__file__).resolve().parents[1] / "ros2_ws"
MSG_DIRS = [WS / "compat" / "carla_msgs" / "msg", WS / "compat" / "derived_object_msgs" / "msg",
            WS / "src" / "drive_stack_msgs" / "msg"]


def test_interface_type_hashes_match_their_definitions():
    """RIHS01 hashes of the built interfaces (rosidl's type description) equal the hashes rosbags computes from
    the same .msg definitions: a changed field in either place is caught."""
    from drivesim.stack.bags import make_typestore

    ts = make_typestore(MSG_DIRS)
    checked = 0
    for d in MSG_DIRS:
        pkg = d.parent.name
        share = Path(sys.prefix) / "share" / pkg / "msg"
        for f in sorted(d.glob("*.msg")):
            built = json.loads((share / f"{f.stem}.json").read_text())["type_hashes"][0]
            assert built["type_name"] == f"{pkg}/msg/{f.stem}"
            assert ts.hash_rihs01(f"{pkg}/msg/{f.stem}") == built["hash_string"], f"{pkg}/{f.stem}"
            checked += 1
    assert checked == 12


def _run(tmp_path, name, **kw):
    from drive_stack.launcher import stack_run

    return stack_run(None, None, str(tmp_path / name), seed=kw.pop("seed", 0), timeout=300, **kw)


QUIET_MONITOR = {"takeover_monitor": {"ttc_threshold": 0.0, "horizon": 0.0}}  # only deadline / invalid checks


def test_ros_loop_matches_the_direct_loop(tmp_path):
    """Same route, same policy: scored through the ROS graph and through the library loop, the results agree."""
    from drivesim.evaluation.runner import run_route
    from drivesim.maps import TownLoader
    from drivesim.routes.xml import parse_routes

    res = _run(tmp_path, "parity", node_overrides=QUIET_MONITOR)
    spec = parse_routes(Path(res["out"]) / "routes.xml").routes[0]
    direct = run_route(TownLoader().load(spec.town), spec, "rule", seed=0).record
    ros = res["record"]
    assert ros["meta"]["stack"]["missed_ticks"] == 0
    assert abs(ros["scores"]["score_composed"] - direct["scores"]["score_composed"]) <= 1.0
    count = lambda r: {k: len(v) for k, v in r["infractions"].items() if v}  # noqa: E731
    assert count(ros) == count(direct)
    assert abs(ros["meta"]["duration_game"] - direct["meta"]["duration_game"]) <= 0.5
    fx, fy = ros["meta"]["final_position"]
    dx, dy = direct["meta"]["final_position"]
    assert abs(fx - dx) + abs(fy - dy) < 1.0
    assert res["summary"]["via"] == "ros" and (Path(res["out"]) / "results.json").exists()


def test_planner_killed_mid_route_means_takeover_safe_control_and_a_bag(tmp_path):
    """planner:exit@5: the monitor misses the planner's deadline at t = 5.0 s, takes over (the simulator offers
    the privileged expert) within the tick, no tick is missed, and the recorder cuts a bag [t - 10, t + 5]."""
    res = _run(tmp_path, "exit", faults=["planner:exit@5.0"], node_overrides=QUIET_MONITOR, record="both")
    assert res["node_exits"]["planner"] == 3
    st = res["record"]["meta"]["stack"]
    assert st["missed_ticks"] == 0
    assert len(res["takeovers"]) == 1
    tk = res["takeovers"][0]
    assert tk["cause"] == "MISSED_DEADLINE" and tk["controller"] == "expert"
    assert tk["takeover_time"] == pytest.approx(5.0, abs=0.051)
    from drivesim.stack.bags import read_bag

    info = read_bag(tk["bag"])
    assert info["start"] == pytest.approx(0.0, abs=0.06) and info["end"] == pytest.approx(tk["takeover_time"] + 5.0, abs=0.06)
    assert {"/drive_stack/takeover", "/carla/hero/vehicle_control_cmd", "/carla/hero/odometry",
            "/drive_stack/scene", "/carla/hero/objects"} <= set(info["topics"])
    assert info["topics"]["/drive_stack/takeover"]["count"] == 1
    # the expert kept driving: the route still ends (not blocked at the takeover point)
    assert res["record"]["scores"]["score_route"] > 50
    segs = sorted((Path(res["out"]) / "bags" / "continuous").glob("seg_*"))
    assert len(segs) >= 2


def test_nan_from_the_planner_is_rejected_and_the_stack_keeps_going(tmp_path):
    """planner:nan@3: NaN commands never reach the vehicle: the monitor rejects them (INVALID_MESSAGE takeover),
    the simulator applies no NaN and misses no tick, every node but the planner's fault keeps running."""
    res = _run(tmp_path, "nan", faults=["planner:nan@3.0"], node_overrides=QUIET_MONITOR)
    tk = res["takeovers"]
    assert len(tk) == 1 and tk[0]["cause"] == "INVALID_MESSAGE" and tk[0]["takeover_time"] == pytest.approx(3.0, abs=0.051)
    assert res["record"]["meta"]["stack"]["missed_ticks"] == 0
    assert res["record"]["meta"]["stack"]["rejected_commands"] == []  # nothing invalid reached the simulator
    assert all(code in (0, -2) for code in res["node_exits"].values()), res["node_exits"]
    log = (Path(res["out"]) / "logs" / "takeover_monitor.log").read_text()
    assert "rejected" in log and "throttle is nan" in log


def test_recorder_killed_keeps_its_flushed_segments(tmp_path):
    """recorder:exit@6 (os._exit, no cleanup, like SIGKILL) in continuous mode: the segments closed before it
    are complete bags that rosbags reads back."""
    from drivesim.stack.bags import read_bag

    res = _run(tmp_path, "kill", faults=["recorder:exit@6.0"], record="continuous", node_overrides=QUIET_MONITOR)
    assert res["node_exits"]["recorder"] == 3
    segs = sorted((Path(res["out"]) / "bags" / "continuous").glob("seg_*"))
    assert len(segs) >= 1
    for p in segs:
        info = read_bag(p)
        assert info["topics"]["/carla/hero/odometry"]["count"] > 0 and info["end"] <= 6.0
