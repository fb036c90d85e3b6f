"""Takeover bags as training data (`drive-stack takeover ingest`): a takeover the ROS stack recorded and the same
takeover collected offline (same route, seed and policy) give the same training samples; a bag cut short by a
crash is salvaged up to its last complete chunk; a bag without the expert's labels is refused by name."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import B2D, MAPS, need_shared

rclpy = pytest.importorskip("rclpy", reason="ROS 2 wheels not installed: run make setup")
pytestmark = [pytest.mark.ros, pytest.mark.shared]

ROUTE = "24211"  # Town01 DynamicObjectCrossing: perlad alone hits the walker; the expert takes over at 6.85 s (LOW_TTC)
FEATURES = ("ego", "route", "route_mask", "agents", "agents_mask", "lanes", "lanes_mask", "path", "speed", "controller")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The stack (perlad planner, shadow expert with TakeAD's steering trigger) drives the route and records its
    takeover bag; the same route, seed and policy are collected offline with the same gate."""
    need_shared()
    from drive_stack.launcher import stack_run
    from drivesim.dataset import CollectConfig, collect

    root = tmp_path_factory.mktemp("ingest")
    res = stack_run(str(B2D), ROUTE, str(root / "ros"), maps_dir=str(MAPS), seed=0, timeout=300, policy="perlad",
                    record="takeover",
                    # planner_ok_window 1 s: the hand-back after the 2 s needs the planner to have answered a recent
                    # tick; under a takeover the simulator runs ahead of a lagging planner (2 cores, 7 nodes), and
                    # with the default 3 ticks the takeover once ended a tick later than offline (CI, 1 in ~10)
                    node_overrides={"takeover_monitor": {"steer_threshold": 0.2, "planner_ok_window": 1.0}})
    idx = collect(CollectConfig(routes=str(B2D), out=str(root / "offline"), maps_dir=str(MAPS), route_ids=[ROUTE],
                                workers=1, b2d=False, driver="perlad", takeover=True, takeover_steer=0.2, branches=0),
                  log=lambda *_: None)
    return {"root": root, "ros": res, "offline": idx}


def test_what_ingest_needs_is_recorded():
    from drive_stack import node_table as T
    from drivesim.dataset import ingest as I

    # what ingest needs is recorded, and the latched topics reach every takeover bag
    assert set(I.REQUIRED) <= set(T.RECORDED) and set(T.LATCHED_TOPICS) <= set(T.RECORDED)


def test_a_takeover_recorded_by_the_stack_gives_the_offline_samples(recorded):
    from drivesim.dataset.collect import read_episode
    from drivesim.dataset.ingest import ingest
    from drivesim.learn.data import episode_samples
    from drivesim.maps import TownLoader
    from drivesim.maps.opendrive import load_xodr_text

    ros, off = recorded["ros"], recorded["offline"]["episodes"][0]
    assert [(t["cause"], t["takeover_time"]) for t in ros["takeovers"]] == [("LOW_TTC", 6.85)]
    assert [(e["cause"], e["t"]) for e in off["takeovers"]["events"]] == [("LOW_TTC", 6.85)]
    bag = Path(ros["takeovers"][0]["bag"])
    out = recorded["root"] / "ingested"
    idx = ingest([str(bag.parent)], str(out), log=lambda *_: None)  # the folder: every bag under it
    (entry,) = idx["episodes"]
    assert entry["takeovers"]["count"] == 1 and entry["takeovers"]["causes"] == {"LOW_TTC": 1}
    assert entry["truncated"] is False and entry["takeover_json"]["cause"] == "LOW_TTC"
    ep = out / "episodes" / entry["episode"]
    a = read_episode(ep)
    b = read_episode(recorded["root"] / "offline" / "episodes" / off["episode"])
    # the bag's frames are the offline episode's frames of the window [t - 10 s, t + 5 s] = [0, 11.85]: the recorder
    # stamps messages by their headers and writes the bag 0.5 s after the window, so the last tick's messages are
    # in even when they arrive after the clock moved on (by receipt time, CI once lost the last frame)
    j = np.round(a["t"] / 0.1).astype(int)
    assert a["t"][0] == pytest.approx(0.0) and a["t"][-1] == pytest.approx(11.8, abs=1e-3)
    assert np.allclose(b["t"][j], a["t"], atol=1e-6)
    assert (a["controller"] == b["controller"][j]).all() and (a["controller"] == 1).sum() == 20  # the expert's 2 s
    np.testing.assert_allclose(a["ego"], b["ego"][j], atol=1e-4)  # pose, speed, accel, the expert's controls
    np.testing.assert_allclose(a["plan"], b["plan"][j], atol=1e-4)
    np.testing.assert_allclose(a["plan_speed"], b["plan_speed"][j], atol=1e-4)
    np.testing.assert_allclose(a["policy_ctl"], b["policy_ctl"][j], atol=1e-5)  # perlad's own commands
    assert (a["lights"] == b["lights"][j]).all()
    # the training samples: features rebuilt from the bag's own map equal those from the town's
    sa = episode_samples(ep, load_xodr_text("bag", (ep / "map.xodr").read_text()))
    sb = episode_samples(recorded["root"] / "offline" / "episodes" / off["episode"], TownLoader(MAPS).load("Town01"))
    for k in FEATURES:
        np.testing.assert_allclose(sa[k], sb[k][j], atol=1e-4, err_msg=k)
    inner = a["t"] <= a["t"][-1] - 3.0  # futures (3 s) inside the window
    for k in ("ego_future", "agents_future", "roll_ego"):
        np.testing.assert_allclose(sa[k][inner], sb[k][j][inner], atol=1e-4, err_msg=k)
    # and the dataset trains like any other: build_samples reads it with no maps folder
    from drivesim.learn.data import DataConfig, build_samples

    d = build_samples(DataConfig(str(out), None, 1), log=lambda *_: None)
    assert len(d["speed"]) == len(a["t"]) and (d["controller"] == 1).sum() == 20


def test_a_bag_cut_short_is_salvaged_up_to_its_last_chunk(recorded, tmp_path):
    from drivesim.dataset.collect import read_episode
    from drivesim.dataset.ingest import ingest

    src = Path(recorded["ros"]["takeovers"][0]["bag"])
    bag = tmp_path / src.name
    shutil.copytree(src, bag)
    full = ingest([str(bag)], str(tmp_path / "full"), log=lambda *_: None)["episodes"][0]
    mcap = next(bag.glob("*.mcap"))
    os.truncate(mcap, int(mcap.stat().st_size * 0.6))  # the recorder died mid-file: no footer, no summary
    (bag / "metadata.yaml").unlink()
    lines = []
    idx = ingest([str(bag)], str(tmp_path / "cut"), log=lines.append)
    (cut,) = idx["episodes"]
    assert cut["truncated"] is True and 0 < cut["frames"] < full["frames"]
    assert any("cut short" in m and str(mcap) in m for m in lines)
    a = read_episode(tmp_path / "cut" / "episodes" / cut["episode"])
    b = read_episode(tmp_path / "full" / "episodes" / full["episode"])
    n = len(a["t"])
    for k in ("t", "ego", "agents", "plan", "controller"):
        np.testing.assert_array_equal(a[k], b[k][:n])  # what was recorded before the break, unchanged


def test_a_bag_without_the_experts_labels_is_refused_by_name(recorded, tmp_path, capsys):
    from drivesim.cli import main
    from drivesim.dataset.ingest import EXPERT_PLAN, bag_typestore
    from drivesim.stack.bags import Recorded, _open_bag, write_bag

    src = Path(recorded["ros"]["takeovers"][0]["bag"])
    ts = bag_typestore(src)
    _, it, _ = _open_bag(src, ts, print)
    recs = [Recorded(t, topic, mt, data) for topic, mt, t, data in it if topic != EXPERT_PLAN]
    bag = write_bag(tmp_path / "no_expert", recs, ts)
    assert main(["takeover", "ingest", str(bag), "--out", str(tmp_path / "ds")]) == 1  # nothing usable
    out = capsys.readouterr().out
    assert f"no {EXPERT_PLAN} in this bag" in out and "offer_expert" in out
    idx = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert idx["episodes"] == [] and idx["failed"][0]["bag"] == str(bag)
    # a folder with no bags at all: an error naming it, exit 2
    (tmp_path / "empty").mkdir()
    assert main(["takeover", "ingest", str(tmp_path / "empty"), "--out", str(tmp_path / "ds2")]) == 2
    assert "no bag folders" in capsys.readouterr().err
