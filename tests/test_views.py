"""The stack's views (drivesim.stack.views -> the views node's MarkerArray) on a hand-built scene with known
answers, and the Foxglove layout that ships with the package: valid, and every topic it shows is one the stack
publishes and the recorder keeps."""

import json
import math
from pathlib import Path

import pytest
from drivesim.stack.topics import BEV
from drivesim.stack.views import CONTROLLER_COLORS, TAKEOVER_SHOW, plan_markers, scene_markers, takeover_marker, to_map

ROOT = Path(__file__).resolve().parents[1]


def test_markers_of_a_hand_built_scene():
    ego = (10.0, 5.0, math.pi / 2)  # facing +y in the map
    assert to_map(ego, 10.0, 0.0) == pytest.approx((10.0, 15.0))  # 10 m ahead
    assert to_map(ego, 0.0, 2.0) == pytest.approx((8.0, 5.0))  # 2 m to the left
    agents = [(412, 0, 10.0, 0.0, 0.0, 5.5, 4.5, 2.0), (977, 1, 6.0, 3.0, -math.pi / 2, 1.2, 0.6, 0.6)]
    specs = scene_markers(ego, agents, [(0.0, 0.0), (5.0, 0.0), (10.0, 0.0)])
    by = {(s.ns, s.id): s for s in specs}
    car, walker = by[("agents", 412)], by[("agents", 977)]
    assert (car.x, car.y) == pytest.approx((10.0, 15.0)) and car.yaw == pytest.approx(math.pi / 2)
    assert car.scale == pytest.approx((4.5, 2.0, 1.5)) and car.z == pytest.approx(0.75)
    assert (walker.x, walker.y) == pytest.approx((7.0, 11.0)) and walker.yaw == pytest.approx(0.0)
    assert car.color != walker.color
    assert by[("agent_ids", 412)].text == "412 5.5 m/s" and by[("agent_ids", 977)].kind == "text"
    route = by[("route", 0)]
    assert route.kind == "line_strip" and route.points == [pytest.approx((10.0, 5.0)), pytest.approx((10.0, 10.0)),
                                                           pytest.approx((10.0, 15.0))]
    assert by[("ego", 0)].x == 10.0 and len(specs) == 1 + 2 * 2 + 1
    plan = plan_markers(ego, [(2.0, 0.0), (4.0, 0.5)], 7.25, "expert")
    assert plan[0].color == CONTROLLER_COLORS["expert"] and plan[1].text == "expert 7.2 m/s"
    assert plan[0].points[1] == pytest.approx((9.5, 9.0))
    assert plan_markers(ego, [(2.0, 0.0)], 1.0, "planner") == []  # one point is no path
    assert takeover_marker(ego, "LOW_TTC", "expert", 3.0, 3.0 + TAKEOVER_SHOW)[0].text == "TAKEOVER: LOW_TTC -> expert"
    assert takeover_marker(ego, "LOW_TTC", "expert", 3.0, 3.1 + TAKEOVER_SHOW) == []


def test_the_foxglove_layout_shows_what_the_stack_publishes():
    pytest.importorskip("drive_stack")
    from drive_stack import node_table as T

    lay = json.loads((ROOT / "ros2_ws/src/drive_stack/config/foxglove_layout.json").read_text())
    panels = lay["configById"]

    def leaves(node):
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])

    assert sorted(leaves(lay["layout"])) == sorted(panels)  # every panel placed, none missing
    topics = set(panels["3D!stack"]["topics"])
    topics |= {panels["Image!bev"]["imageMode"]["imageTopic"]}
    topics |= {p["value"].split(".")[0] for p in panels["Plot!speed"]["paths"]}
    topics |= {v["topicPath"] for k, v in panels.items() if k.startswith("RawMessages")}
    assert topics - set(T.RECORDED) == {BEV}  # the BEV image is live-only (not recorded: its size)
    assert T.MARKERS in topics
    setup = (ROOT / "ros2_ws/src/drive_stack/setup.py").read_text()
    assert 'glob("config/*.json")' in setup  # installed into share/drive_stack/config
