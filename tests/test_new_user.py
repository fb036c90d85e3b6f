"""What a new user hits: an evaluation that evaluates nothing, maps that crash CARLA's parser, non-finite route
numbers, benchmark outputs over tracked files, bags that are not bags or were cut short, the multi-ability
score as Bench2Drive 0.0.4 computes it."""

import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT
from drivesim.cli import main
from drivesim.maps import MapError, MapTimeout, build_lane_graph_isolated, load_xodr
from drivesim.metrics.bench2drive import (
    empty_infractions,
    junction_completion,
    junction_meta,
    multi_ability,
    summarize,
    traffic_signs_junction_credit,
)
from drivesim.routes import parse_routes, write_routes
from drivesim.routes.generate import random_routes
from drivesim.routes.xml import ABILITIES, ABILITY_NAMES, SCENARIO_TYPES


def _route(rid, town, x0=0.0, trigger=None, extra=""):
    trig = trigger or 'x="10" y="0" z="0" yaw="0"'
    return (f'<route id="{rid}" town="{town}"><waypoints><position x="{x0}" y="0" z="0"/>'
            f'<position x="{x0 + 100}" y="0" z="0"/></waypoints><scenarios><scenario name="s{rid}" type="Accident">'
            f'<trigger_point {trig}/>{extra}</scenario></scenarios></route>')


@pytest.fixture
def no_maps(monkeypatch, tmp_path):
    """No maps directory from the environment, and a cache of this test's own."""
    for k in ("DRIVE_STACK_MAPS", "CARLA_ROOT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DRIVE_STACK_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------------ 1. zero evaluated
def test_eval_that_evaluates_no_route_fails_and_says_why(tmp_path, no_maps, capsys):
    p = tmp_path / "r.xml"
    p.write_text("<routes>" + "".join(_route(i, "Town98") for i in range(3))
                 + "".join(_route(10 + i, "Town99") for i in range(2)) + "</routes>")
    assert main(["eval", "--routes", str(p), "--out", str(tmp_path / "ev")]) == 1
    cap = capsys.readouterr()
    both = cap.out + cap.err
    town98 = [ln for ln in cap.out.splitlines() if "Town98.xodr" in ln]
    town99 = [ln for ln in cap.out.splitlines() if "Town99.xodr" in ln]
    assert len(town98) == 1 and "3 routes" in town98[0] and "--maps-dir" in town98[0]  # one line per missing town
    assert len(town99) == 1 and "2 routes" in town99[0]
    assert "no route of" in cap.err and "could be evaluated" in cap.err and "Town98.xodr" in cap.err
    assert "routes evaluated 0, skipped 5" in both


def test_eval_prints_every_refused_route_and_still_passes_with_one_route(tmp_path, no_maps, proc_town, capsys):
    good = random_routes(proc_town, 1, seed=4, min_length=120.0)[0]
    p = tmp_path / "r.xml"
    write_routes([good], p)
    text = p.read_text().replace("</routes>", _route("77", "Town98") + _route("78", "Proc0",
                                 trigger='x="inf" y="0" z="0" yaw="0"') + "</routes>")
    p.write_text(text)
    assert main(["eval", "--routes", str(p), "--out", str(tmp_path / "ev"), "--policy", "expert"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"skipped route 77 \(missing_map\): map Town98\.xodr not found", out)
    assert re.search(r"skipped route 78 \(error\): .*route 78: scenario 's78': trigger_point\.x: non-finite", out)
    assert "routes evaluated 1, skipped 2 (of 3)" in out


# ------------------------------------------------------------------------------------------ 2. maps that crash CARLA
CRASHING_XODR = """<?xml version="1.0" standalone="yes"?>
<OpenDRIVE>
  <header revMajor="1" revMinor="4" name="Crash" version="1"/>
  <road name="r1" length="100.0" id="1" junction="-1">
    <link/>
    <planView>
    </planView>
    <lanes><laneSection s="0.0">
      <center><lane id="0" type="none" level="false"/></center>
      <right><lane id="-1" type="driving" level="false"><width sOffset="0" a="3.5" b="0" c="0" d="0"/></lane></right>
    </laneSection></lanes>
  </road>
  <road name="r2" length="50.0" id="2" junction="-1">
    <link/>
    <planView/>
    <lanes><laneSection s="0.0">
      <center><lane id="0" type="none" level="false"/></center>
      <right><lane id="-1" type="driving" level="false"><width sOffset="0" a="3.5" b="0" c="0" d="0"/></lane></right>
    </laneSection></lanes>
  </road>
</OpenDRIVE>
"""


def _cli(*args, env=None):
    """drive-stack in a child process: a segmentation fault there fails the test instead of killing pytest."""
    return subprocess.run([sys.executable, "-m", "drivesim.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_map_with_empty_planviews_is_an_error_route_not_a_segfault(tmp_path, no_maps):
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "Crash.xodr").write_text(CRASHING_XODR)
    p = tmp_path / "r.xml"
    p.write_text("<routes>" + _route(1, "Crash") + _route(2, "Proc0") + "</routes>")
    j = tmp_path / "check.json"
    r = _cli("routes", "check", "--routes", str(p), "--maps-dir", str(maps), "--json", str(j))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["id"]: row for row in json.loads(j.read_text())["routes"]}
    assert rows["2"]["status"] in ("ok", "error")  # the other route still has its row
    row = rows["1"]
    assert row["status"] == "error" and "Crash.xodr" in row["message"] and "empty <planView>" in row["message"]
    assert "road 1" in row["message"] and "road 2" in row["message"]
    # eval records the reason (not "Simulation crashed" without a why) and, nothing evaluated, fails
    p.write_text("<routes>" + _route(1, "Crash") + "</routes>")
    r = _cli("eval", "--routes", str(p), "--maps-dir", str(maps), "--out", str(tmp_path / "ev"))
    assert r.returncode == 1 and "planView" in r.stderr and "Crash.xodr" in r.stderr
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert s["routes_evaluated"] == 0 and s["skipped"][0]["status"] == "error"
    assert "Crash.xodr" in s["skipped"][0]["message"] and "planView" in s["skipped"][0]["message"]


def test_a_crash_of_carlas_parser_cannot_take_the_caller_down(tmp_path, no_maps):
    """The pre-check off, libcarla really crashes (SIGSEGV) on the map: in the child process, which becomes a
    MapError naming the file; a build that hangs past its limit is a MapTimeout."""
    src = str(tmp_path / "Crash.xodr")
    with pytest.raises(MapError, match=r"Crash\.xodr: CARLA's OpenDRIVE parser crashed on this map \(killed by SIG"):
        build_lane_graph_isolated("Crash", CRASHING_XODR, src, check=False)
    from drivesim.maps.procedural import generate_town_xodr

    with pytest.raises(MapTimeout, match="did not finish within"):
        build_lane_graph_isolated("Proc0", generate_town_xodr(0), timeout=0.05)


def test_a_failed_map_build_is_remembered_by_hash(tmp_path, no_maps, monkeypatch):
    import drivesim.maps.opendrive as od

    # one straight road, valid, but no lane connects to another: CARLA's topology is empty (a MapError in the child)
    lonely = re.sub(r'<road name="r2".*?</road>\s*', "", CRASHING_XODR, flags=re.S).replace(
        "<planView>\n    </planView>", '<planView><geometry s="0" x="0" y="0" hdg="0" length="100"><line/></geometry>'
        "</planView>")
    path = tmp_path / "Lonely.xodr"
    path.write_text(lonely)
    with pytest.raises(MapError, match="empty topology"):
        load_xodr(path)
    assert len(list((tmp_path / "cache" / "maps").glob("failed-*.json"))) == 1

    def no_build(*a, **k):
        raise AssertionError("a remembered failure is not built again")

    monkeypatch.setattr(od, "build_lane_graph_isolated", no_build)
    with pytest.raises(MapError, match="Lonely.xodr: .*empty topology.*verdict cached"):
        load_xodr(path)


@pytest.mark.parametrize("route,field", [
    (_route(5, "Proc0", x0=float("inf")), "route 5: waypoint 0 position.x: non-finite number 'inf'"),
    (_route(5, "Proc0", trigger='x="1" y="inf" z="0" yaw="0"'), "route 5: scenario 's5': trigger_point.y: non-finite"),
    (_route(5, "Proc0", trigger='x="1" y="2" z="0" yaw="nan"'), "route 5: scenario 's5': trigger_point.yaw: non-finite"),
    (_route(5, "Proc0", extra='<distance value="inf"/>'), "route 5: scenario 's5': s5.distance.value: non-finite"),
    (_route(5, "Proc0", extra='<speed from="0" to="-inf"/>'), "route 5: scenario 's5': s5.speed.to: non-finite"),
    (_route(5, "Proc0").replace("</route>", '<weathers><weather cloudiness="nan"/></weathers></route>'),
     "route 5: weather.cloudiness: non-finite"),
])
def test_non_finite_route_numbers_are_refused(tmp_path, route, field):
    p = tmp_path / "r.xml"
    p.write_text(f"<routes>{route}{_route(6, 'Proc0')}</routes>")
    rf = parse_routes(p)
    assert [r.route_id for r in rf.routes] == ["6"] and field in rf.errors["5"] and "r.xml" in rf.errors["5"]


# ------------------------------------------------------------------------------------------ 4. benchmark outputs
def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_every_script_the_readme_runs_is_tracked_and_executable():
    """The README runs its scripts as `training/scripts/x.sh ...`: a clean clone must be able to (session 26 found
    perlad_pipeline.sh committed without its executable bit: 'Permission denied')."""
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    readme = (ROOT / "README.md").read_text()
    scripts = sorted(set(re.findall(r"(?<![\w./-])((?:training|results)/[\w./-]+\.sh)\b", readme)))
    assert "training/scripts/perlad_pipeline.sh" in scripts and len(scripts) >= 10
    for s in scripts:
        staged = _git("ls-files", "-s", "--", s).stdout.split()
        assert staged, f"the README runs {s}, which is not tracked"
        assert staged[0] == "100755", f"{s} is tracked as {staged[0]}: git update-index --chmod=+x {s}"


def test_benchmarks_write_untracked_outputs():
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    mk = (ROOT / "Makefile").read_text()
    bench_out = re.search(r"^BENCH_OUT \?= (\S+)", mk, re.M).group(1)
    recipe = re.search(r"^bench:.*?\n((?:\t.*\n)+)", mk, re.M).group(1)
    paths = [p.replace("$(BENCH_OUT)", bench_out) for p in re.findall(r"--(?:json|out) (\S+)", recipe)]
    readme = (ROOT / "README.md").read_text()
    paths += re.findall(r"drive-stack bench \w+ --json (\S+)", readme)
    assert len(paths) >= 5
    for p in paths:
        assert _git("ls-files", "--error-unmatch", p).returncode != 0, f"{p} is a tracked file"
        assert _git("check-ignore", "-q", p).returncode == 0, f"{p} is not gitignored"
    # the committed figures stay where the README quotes them
    assert all(_git("ls-files", "--error-unmatch", f"results/bench/{n}.json").returncode == 0
               for n in ("sim", "stack", "infer"))


# ------------------------------------------------------------------------------------------ 5. bags
def test_bag_info_on_a_folder_that_is_not_a_bag(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for p in (tmp_path, tmp_path / "nope"):
        assert main(["bag", "info", str(p)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(p) in err and "metadata.yaml" in err and ".mcap" in err
        assert "Traceback" not in err


def test_a_bag_cut_short_by_a_crash_reads_to_its_last_complete_chunk(tmp_path, capsys):
    pytest.importorskip("rosbags")
    from drivesim.stack.bags import NS, Recorded, make_typestore, read_bag, write_bag

    ts = make_typestore()

    def cdr(k):
        return bytes(ts.serialize_cdr(ts.types["std_msgs/msg/String"](data=f"{k:06d}" * 40), "std_msgs/msg/String"))

    recs = [Recorded(int(round(k * 0.05 * NS)), topic, "std_msgs/msg/String", cdr(k))
            for k in range(4000) for topic in ("/a", "/b")]
    bag = write_bag(tmp_path / "bag", recs, ts)
    full = read_bag(bag)
    assert full["topics"]["/a"]["count"] == 4000 and "truncated" not in full
    mcap = next(bag.glob("*.mcap"))
    os.truncate(mcap, int(mcap.stat().st_size * 0.6))  # the recorder died mid-file: no footer, no summary
    warned = []
    cut = read_bag(bag, log=warned.append)
    n = cut["topics"]["/a"]["count"] + cut["topics"]["/b"]["count"]
    assert 0 < n < 0.7 * 8000 and cut["start"] == 0.0 and 0 < cut["end"] < full["end"]
    assert cut["truncated"] == [str(mcap)]
    assert len(warned) == 1 and str(mcap) in warned[0] and "cut short" in warned[0] and f"read {n} messages" in warned[0]
    # the CLI: the summary, exit 0, one warning line naming the file
    assert main(["bag", "info", str(bag)]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["topics"]["/a"]["count"] == cut["topics"]["/a"]["count"]
    assert cap.err.startswith("warning: ") and str(mcap) in cap.err
    # a crash before the bag was closed leaves no metadata.yaml either
    (bag / "metadata.yaml").unlink()
    again = read_bag(bag, log=warned.append)
    assert again["topics"] == cut["topics"] and "no metadata.yaml" in warned[1]


# ------------------------------------------------------------------------------------------ 6. multi-ability
# Bench2Drive 0.0.4, tools/ability_benchmark.py lines 12-18 (commit 7ec25d1c, "Release Bench2Drive 0.0.4"), verbatim
UPSTREAM_ABILITY = {
    "Overtaking": ['Accident', 'AccidentTwoWays', 'ConstructionObstacle', 'ConstructionObstacleTwoWays',
                   'HazardAtSideLaneTwoWays', 'HazardAtSideLane', 'ParkedObstacleTwoWays', 'ParkedObstacle',
                   'VehicleOpensDoorTwoWays'],
    "Merging": ['CrossingBicycleFlow', 'EnterActorFlow', 'HighwayExit', 'InterurbanActorFlow', 'HighwayCutIn',
                'InterurbanAdvancedActorFlow', 'MergerIntoSlowTrafficV2', 'MergerIntoSlowTraffic',
                'NonSignalizedJunctionLeftTurn', 'NonSignalizedJunctionRightTurn',
                'NonSignalizedJunctionLeftTurnEnterFlow', 'ParkingExit', 'SequentialLaneChange',
                'SignalizedJunctionLeftTurn', 'SignalizedJunctionRightTurn', 'SignalizedJunctionLeftTurnEnterFlow'],
    "Emergency_Brake": ['BlockedIntersection', 'DynamicObjectCrossing', 'HardBreakRoute',
                        'OppositeVehicleTakingPriority', 'OppositeVehicleRunningRedLight', 'ParkingCutIn',
                        'PedestrianCrossing', 'ParkingCrossingPedestrian', 'StaticCutIn', 'VehicleTurningRoute',
                        'VehicleTurningRoutePedestrian', 'ControlLoss'],
    "Give_Way": ['InvadingTurn', 'YieldToEmergencyVehicle'],
    "Traffic_Signs": ['BlockedIntersection', 'OppositeVehicleTakingPriority', 'OppositeVehicleRunningRedLight',
                      'PedestrianCrossing', 'VehicleTurningRoute', 'VehicleTurningRoutePedestrian', 'EnterActorFlow',
                      'CrossingBicycleFlow', 'NonSignalizedJunctionLeftTurn', 'NonSignalizedJunctionRightTurn',
                      'NonSignalizedJunctionLeftTurnEnterFlow', 'OppositeVehicleTakingPriority',
                      'OppositeVehicleRunningRedLight', 'PedestrianCrossing', 'SignalizedJunctionLeftTurn',
                      'SignalizedJunctionRightTurn', 'SignalizedJunctionLeftTurnEnterFlow', 'T_Junction',
                      'VanillaNonSignalizedTurn', 'VanillaSignalizedTurnEncounterGreenLight',
                      'VanillaSignalizedTurnEncounterRedLight', 'VanillaNonSignalizedTurnEncounterStopsign',
                      'VehicleTurningRoute', 'VehicleTurningRoutePedestrian'],
}


def test_ability_lists_are_bench2drives():
    assert tuple(UPSTREAM_ABILITY) == ABILITY_NAMES
    for a, members in UPSTREAM_ABILITY.items():
        ours = {t for t in SCENARIO_TYPES if a in ABILITIES[t]}
        assert ours == set(members), a


def _rec(stype, status="Failed - Agent got blocked", rc=100.0, meta=None, **infr):
    inf = empty_infractions()
    for k, v in infr.items():
        inf[k] = v
    return {"route_id": "RouteScenario_1_rep0", "index": 0, "status": status, "infractions": inf,
            "scores": {"score_route": rc, "score_penalty": 1.0, "score_composed": rc},
            "meta": {"route_length": 100.0, "duration_game": 1.0, "duration_system": 1.0, "scenario_type": stype,
                     "efficiency": 100.0, "comfort": 1.0, **(meta or {})}}


def test_traffic_signs_junction_credit_as_bench2drive_0_0_4():
    # a 100-point route: lanes 0 and 1 off junctions, lane 2 (points 80..99) in junction 3
    g = SimpleNamespace(lane_junction=np.array([-1, -1, 3]))
    dense = SimpleNamespace(lane=np.array([0] * 50 + [1] * 30 + [2] * 20))
    meta = junction_meta(g, dense)
    assert meta == {"first_junction_index": 80, "route_points": 100}
    assert junction_completion(meta) == pytest.approx((81 + 8) / 100)  # count (1-based) + 8 over the points
    assert junction_meta(g, SimpleNamespace(lane=np.zeros(10, int)))["first_junction_index"] is None
    tj = "T_Junction"  # Traffic_Signs only
    assert traffic_signs_junction_credit(_rec(tj, rc=89.5, meta=meta))  # 0.895 > 0.89
    assert not traffic_signs_junction_credit(_rec(tj, rc=89.0, meta=meta))  # not strictly past
    assert not traffic_signs_junction_credit(_rec(tj, rc=95.0, meta=meta, red_light=["r"]))
    assert not traffic_signs_junction_credit(_rec(tj, rc=95.0, meta=meta, stop_infraction=["s"]))
    assert traffic_signs_junction_credit(_rec(tj, rc=95.0, meta=meta, collisions_vehicle=["c"]))  # only signs count
    assert not traffic_signs_junction_credit(_rec(tj, rc=95.0))  # no junction meta: no credit
    # rates: per ability, a failed Traffic_Signs route passing its junction counts as a Traffic_Signs success
    # (and only there: PedestrianCrossing is Emergency_Brake too, where it stays a failure)
    recs = [
        _rec(tj, status="Perfect", meta=meta),  # success
        _rec(tj, rc=95.0, meta=meta, collisions_vehicle=["c"], status="Completed"),  # failed, credited
        _rec(tj, rc=40.0, meta=meta),  # failed before the junction
        _rec("PedestrianCrossing", rc=92.0, meta=meta),  # failed, credited for Traffic_Signs only
        _rec("Accident", status="Perfect"), _rec("Accident", rc=50.0),
        _rec("HighwayExit", status="Perfect"), _rec("ControlLoss", rc=10.0), _rec("InvadingTurn", status="Perfect"),
    ]
    ab = multi_ability(recs)
    assert ab["Traffic_Signs"] == {"success_rate": pytest.approx(75.0), "routes": 4, "junction_credited": 2}
    assert ab["Emergency_Brake"]["success_rate"] == pytest.approx(0.0) and ab["Emergency_Brake"]["routes"] == 2
    assert ab["Overtaking"]["success_rate"] == pytest.approx(50.0) and ab["Merging"]["success_rate"] == 100.0
    s = summarize(recs)
    assert s["multi_ability"]["Traffic_Signs"]["success_rate"] == pytest.approx(75.0)
    assert s["multi_ability_mean"] == pytest.approx((50.0 + 100.0 + 0.0 + 100.0 + 75.0) / 5)  # upstream: sum / 5
    assert s["success_rate"] == pytest.approx(100.0 * 4 / 9)  # the plain success rate is unchanged
