"""Maps, procedural towns, route XML, global planning and `routes check`."""

import json

import numpy as np
import pytest
from conftest import B2D, MAPS, need_shared
from drivesim.cli import main
from drivesim.maps import LaneGraph, MapError, TownLoader, load_xodr
from drivesim.maps.lanegraph import Command
from drivesim.maps.procedural import generate_town_xodr
from drivesim.routes import RouteError, parse_routes, plan_route, write_routes
from drivesim.routes.generate import random_routes


def test_procedural_town_same_seed_same_town(proc_town):
    a, b = generate_town_xodr(0), generate_town_xodr(0)
    assert a == b and a != generate_town_xodr(1)
    g = proc_town
    g.validate()
    assert g.num_lights > 0 and len(g.stop_id) > 0
    assert (g.lane_junction >= 0).any() and (g.lane_left >= 0).any()  # junctions and a multi-lane arterial
    assert np.all(g.lane_ds <= 1.0 + 1e-9)


def test_lane_graph_cache_round_trip(proc_town, tmp_path):
    p = tmp_path / "g.npz"
    proc_town.save(p)
    g2 = LaneGraph.load(p)
    assert np.array_equal(g2.pt_xy, proc_town.pt_xy) and np.array_equal(g2.lane_succ, proc_town.lane_succ)


def test_drivable_area(proc_town):
    g = proc_town
    lane = int(np.flatnonzero(g.lane_junction < 0)[0])
    x, y, yaw = g.lane_position(lane, g.lane_length[lane] / 2)
    left = np.array([np.sin(yaw), -np.cos(yaw)])
    inside, _ = g.on_lane(np.array([[x, y], [x + 50 * left[0], y + 50 * left[1]]]) if False else np.array(
        [[x, y]]))
    assert inside[0]
    far = np.array([[g.bounds()[0] - 100, g.bounds()[1] - 100]])
    assert not g.on_lane(far)[0][0]


def test_bad_opendrive_is_a_clear_error(tmp_path):
    bad = tmp_path / "Broken.xodr"
    bad.write_text("<OpenDRIVE><road id='1'")
    with pytest.raises(MapError, match="Broken.xodr"):
        load_xodr(bad, use_cache=False)
    with pytest.raises(MapError, match="not found"):
        load_xodr(tmp_path / "Nope.xodr")


def test_route_xml_errors_name_file_and_route(tmp_path):
    p = tmp_path / "r.xml"
    p.write_text("<routes><route id='1' town='Proc0'><waypoints><position x='1' y='2' z='0'/>")
    with pytest.raises(RouteError, match="r.xml"):
        parse_routes(p)
    p.write_text("<routes><route id='7' town='Proc0'><waypoints><position x='1' y='2' z='0'/>"
                 "<position x='3' y='2' z='0'/></waypoints><scenarios><scenario name='a' type='Flying'>"
                 "<trigger_point x='0' y='0' z='0' yaw='0'/></scenario></scenarios></route>"
                 "<route id='8' town='Proc0'><waypoints><position x='1' y='2' z='0'/><position x='3' y='q' z='0'/>"
                 "</waypoints></route></routes>")
    rf = parse_routes(p)
    assert "unknown scenario type 'Flying'" in rf.errors["7"] and "route 7" in rf.errors["7"]
    assert "route 8" in rf.errors["8"] and rf.routes == []


def test_route_far_off_lanes_is_an_error(proc_town, tmp_path):
    r = random_routes(proc_town, 1, seed=0)[0]
    r.keypoints = r.keypoints + np.array([5000.0, 0.0, 0.0])
    with pytest.raises(RouteError, match="from any lane"):
        plan_route(proc_town, r)


def test_densify_spacing_and_commands(proc_town, tmp_path):
    routes = random_routes(proc_town, 5, seed=2)
    p = tmp_path / "gen.xml"
    write_routes(routes, p)
    back = parse_routes(p).routes
    assert [r.route_id for r in back] == [r.route_id for r in routes]
    cmds = set()
    for r in back:
        d = plan_route(proc_town, r)
        gaps = np.linalg.norm(np.diff(d.xy, axis=0), axis=1)
        assert gaps.max() <= 1.0 + 1e-6
        assert abs(d.length - r.keypoint_length()) < 0.05 * d.length + 3.0
        cmds |= set(np.unique(d.command).tolist())
    assert Command.LANEFOLLOW in cmds and cmds & {Command.LEFT, Command.RIGHT, Command.STRAIGHT}


@pytest.mark.shared
def test_routes_check_bench2drive(tmp_path):
    need_shared()
    out = tmp_path / "check.json"
    assert main(["routes", "check", "--routes", str(B2D), "--maps-dir", str(MAPS), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["counts"] == {"ok": 38, "missing_map": 182, "error": 0}
    for r in rep["routes"]:
        assert {"id", "town", "status", "keypoint_length_m", "densified_length_m"} <= set(r)
        if r["status"] == "ok":
            assert abs(r["densified_length_m"] - r["keypoint_length_m"]) < 0.15 * r["keypoint_length_m"] + 10


@pytest.mark.shared
def test_town01_lane_graph(town01):
    g = town01
    g.validate()
    assert g.num_lanes > 100 and g.num_lights > 10
    marks = set(np.unique(g.pt_left_mark).tolist())
    assert 1 in marks and marks <= set(range(11))  # Town01 centre lines are broken markings
    assert TownLoader(MAPS).available("Town01") and not TownLoader(MAPS).available("Town12")


def _lane_of(g, road, lane_id, last=False):
    idx = [i for i in range(g.num_lanes) if g.lane_road[i] == road and g.lane_id[i] == lane_id]
    return sorted(idx, key=lambda i: g.lane_section[i])[-1 if last else 0]


def _spec(g, lanes):
    """A route through the given lanes' middle points (start of the first, end of the last)."""
    from drivesim.routes.xml import RouteSpec

    pts = [g.lane_points(lanes[0])[1]] + [g.lane_points(i)[len(g.lane_points(i)) // 2] for i in lanes[1:-1]] + [
        g.lane_points(lanes[-1])[-2]]
    return RouteSpec("hw", g.name, np.array([[x, y, 0.0] for x, y in pts]))


def test_procedural_highway_exit_and_on_ramp(proc_town):
    """Proc towns carry a 3+3-lane 90 km/h highway: eastbound traffic leaves by an exit lane onto the off-ramp
    (a lane change right, then a right curve); the on-ramp joins the westbound side through an acceleration
    lane (a lane change left). Both are driven to the end with the deployed controller."""
    from conftest import drive

    g = proc_town
    assert np.isclose(g.lane_speed_limit[g.lane_road == 502], 90 / 3.6).all()
    # eastbound: H0 lane -1 (inner), exit lane -4, off-ramp 503
    exit_route = plan_route(g, _spec(g, [_lane_of(g, 500, -1), _lane_of(g, 503, -1)]))
    assert Command.CHANGELANERIGHT in exit_route.command
    assert exit_route.lane[-1] == _lane_of(g, 503, -1)
    # westbound: on-ramp 504 -> acceleration lane 4 of H1 -> lane 3 -> H0 lane 1
    entry_route = plan_route(g, _spec(g, [_lane_of(g, 504, 1), _lane_of(g, 500, 1)]))
    assert Command.CHANGELANELEFT in entry_route.command
    assert _lane_of(g, 513, 1) in set(entry_route.lane.tolist()) and entry_route.lane[-1] == _lane_of(g, 500, 1)
    for d in (exit_route, entry_route):
        mon = drive(g, d, speed=12.0)
        assert mon.completed[0], mon.rc[0]
        assert mon.outside_pct(0) == 0.0
        assert not any(mon.infractions[0].values())


def test_procedural_parking_lanes(proc_town):
    """Parking lanes line some single-lane streets; each point lies beside its driving lane, on its right."""
    g = proc_town
    assert len(g.park_xy) > 100
    pi, lat, _ = g.project(g.park_xy, g.park_yaw)
    lane = g.pt_lane[pi]
    # the point's nearest centreline is its driving lane (or, at a lane's very end, where the next one starts)
    assert all(a == b or a in g.successors(int(b)) + g.predecessors(int(b)) for a, b in zip(lane, g.park_lane))
    expected = -(g.lane_width[lane] / 2 + g.park_width / 2)  # right of the lane (negative lateral)
    np.testing.assert_allclose(lat, expected, atol=0.2)
    inside, _ = g.on_lane(g.park_xy)
    assert not inside.any()  # parking is not a driving lane
