"""The offline dataset (collect: Bench2Drive anno frames + columnar copy; reading either back; replay scenes;
stats), renders and the evaluation report."""

import gzip
import json

import numpy as np
import pytest
from drivesim.dataset import (
    CollectConfig,
    FrameError,
    collect,
    dataset_stats,
    frame_to_arrays,
    read_episode,
    read_frame,
    replay_state,
)
from drivesim.routes.generate import random_routes
from drivesim.routes.xml import write_routes
from drivesim.sim.state import AgentKind


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, proc_town):
    root = tmp_path_factory.mktemp("ds")
    routes = root / "routes.xml"
    write_routes(random_routes(proc_town, 2, seed=3, min_length=120.0), routes)
    idx = collect(CollectConfig(routes=str(routes), out=str(root / "out"), workers=1, steer_noise=0.15,
                                noise_rate=0.5), log=lambda *_: None)
    return root / "out", idx


def test_collect_writes_both_formats_and_the_index(dataset):
    root, idx = dataset
    assert len(idx["episodes"]) == 2 and not idx["failed"]
    for e in idx["episodes"]:
        ep = root / "episodes" / e["episode"]
        arr = read_episode(ep)
        F = len(arr["t"])
        assert F == e["frames"] == len(list((ep / "anno").glob("*.json.gz"))) > 50
        assert np.allclose(np.diff(arr["t"]), 0.1, atol=1e-6)  # 10 Hz
        assert arr["agents"].shape[:2] == arr["agents_valid"].shape == (F, 63)
        assert arr["plan"].shape == (F, 30, 2) and arr["ego"].shape == (F, 8)
        # the labels are the expert's controls, within their ranges
        assert (arr["ego"][:, 5] >= 0).all() and (arr["ego"][:, 5] <= 1).all() and (np.abs(arr["ego"][:, 6]) <= 1).all()


def test_dagger_collection_drives_with_one_policy_and_labels_with_another(proc_town, tmp_path):
    """--driver rule --policy expert: the executed trajectory is the rule policy's own (the same as `eval
    --policy rule` on that route), while the recorded labels are the expert's plan and controls."""
    from drivesim.evaluation.runner import run_route

    spec = random_routes(proc_town, 1, seed=4, min_length=120.0)[0]
    routes = tmp_path / "r.xml"
    write_routes([spec], routes)
    idx = collect(CollectConfig(routes=str(routes), out=str(tmp_path / "dag"), workers=1, b2d=False, seed=7,
                                driver="rule"), log=lambda *_: None)
    e = idx["episodes"][0]
    arr = read_episode(tmp_path / "dag" / "episodes" / e["episode"])
    ref = run_route(proc_town, spec, "rule", seed=7, keep_states=True)
    xy = np.array([[s.x[0, 0], s.y[0, 0]] for s in ref.states[:-1:2]])
    n = min(len(xy), len(arr["t"]))
    np.testing.assert_allclose(arr["ego"][:n, :2], xy[:n], atol=1e-3)  # rule drove
    assert e["driving_score"] == pytest.approx(ref.record["scores"]["score_composed"])
    # the labels are the expert's: from the same first state, an expert-only collection records the same label
    idx2 = collect(CollectConfig(routes=str(routes), out=str(tmp_path / "exp"), workers=1, b2d=False, seed=7),
                   log=lambda *_: None)
    solo = read_episode(tmp_path / "exp" / "episodes" / idx2["episodes"][0]["episode"])
    np.testing.assert_allclose(arr["ego"][0, 5:8], solo["ego"][0, 5:8], atol=1e-6)
    np.testing.assert_allclose(arr["plan"][0], solo["plan"][0], atol=1e-6)
    m = min(len(solo["t"]), len(arr["t"]))
    assert np.abs(arr["ego"][:m, :2] - solo["ego"][:m, :2]).max() > 0.5  # and the two drives differ


def test_anno_frames_read_back_like_the_columnar_copy(dataset, tmp_path):
    """Rebuild an episode from its anno/*.json.gz only: ego poses and controls equal the columnar arrays (to the
    written precision) and every agent within 75 m of the ego is there with its box."""
    import shutil

    root, idx = dataset
    e = idx["episodes"][0]
    src = root / "episodes" / e["episode"]
    col = read_episode(src)
    only = tmp_path / "only_anno"
    shutil.copytree(src / "anno", only / "anno")
    rebuilt = read_episode(only)
    assert len(rebuilt["t"]) == len(col["t"])
    np.testing.assert_allclose(rebuilt["ego"][:, :2], col["ego"][:, :2], atol=2e-3)
    np.testing.assert_allclose(rebuilt["ego"][:, 5:8], col["ego"][:, 5:8], atol=2e-4)
    k = len(col["t"]) // 2
    ex, ey = col["ego"][k, :2]
    near = col["agents_valid"][k] & (np.hypot(col["agents"][k, :, 0] - ex, col["agents"][k, :, 1] - ey) <= 74.0)
    ids = set((np.flatnonzero(near) + 1).tolist())  # columnar slot a is agent id a + 1
    got = {int(i) for i, v in zip(rebuilt["agent_ids"], rebuilt["agents_valid"][k], strict=True) if v}
    assert ids <= got
    for i in ids:
        j = list(rebuilt["agent_ids"]).index(i)
        np.testing.assert_allclose(rebuilt["agents"][k, j, [0, 1, 4, 5]], col["agents"][k, i - 1, [0, 1, 4, 5]],
                                   atol=2e-3)


def test_a_hand_written_bench2drive_frame(tmp_path):
    """A frame with Bench2Drive's documented fields (rotation [roll, pitch, yaw] in degrees, half extents,
    classes ego_vehicle/vehicle/walker/traffic_light) is read into agent rows with full sizes and radians."""
    frame = {
        "x": 10.0, "y": 5.0, "theta": 1.0, "speed": 3.5, "throttle": 0.4, "steer": -0.1, "brake": 0.0,
        "command_near": 4, "command_far": 1, "x_target": 20.0, "y_target": 5.0,
        "bounding_boxes": [
            {"class": "ego_vehicle", "id": 7, "location": [10.0, 5.0, 0.0], "rotation": [0.0, 0.0, 90.0],
             "extent": [2.45, 1.06, 0.75], "speed": 3.5},
            {"class": "vehicle", "id": 11, "type_id": "vehicle.tesla.model3", "location": [20.0, 5.0, 0.0],
             "rotation": [0.0, 0.0, -90.0], "extent": [2.4, 1.0, 0.8], "speed": 6.0, "distance": 10.0},
            {"class": "walker", "id": 12, "type_id": "walker.pedestrian.0001", "location": [12.0, 9.0, 0.0],
             "rotation": [0.0, 0.0, 180.0], "extent": [0.3, 0.3, 0.9], "speed": 1.2},
            {"class": "traffic_light", "id": 13, "location": [30.0, 0.0, 0.0], "rotation": [0, 0, 0],
             "extent": [0.5, 0.5, 2.0], "state": 0, "affects_ego": True},
        ],
    }
    p = tmp_path / "00000.json.gz"
    with gzip.open(p, "wt") as f:
        json.dump(frame, f)
    a = frame_to_arrays(read_frame(p))
    np.testing.assert_allclose(a["ego"], [10.0, 5.0, np.pi / 2, 3.5])
    assert a["ids"].tolist() == [11, 12]
    np.testing.assert_allclose(a["agents"][0], [20.0, 5.0, -np.pi / 2, 6.0, 4.8, 2.0, AgentKind.VEHICLE])
    np.testing.assert_allclose(a["agents"][1], [12.0, 9.0, np.pi, 1.2, 0.6, 0.6, AgentKind.PEDESTRIAN])
    assert a["command_near"] == 4 and a["command_far"] == 1


def test_corrupt_or_incomplete_frames_name_the_file(tmp_path):
    p = tmp_path / "00001.json.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(FrameError, match="00001.json.gz"):
        read_frame(p)
    with pytest.raises(FrameError, match="ego_vehicle"):
        frame_to_arrays({"speed": 1.0, "bounding_boxes": [{"class": "vehicle"}]}, "x.json.gz")


def test_a_logged_frame_becomes_a_replay_scene(dataset, proc_town):
    """replay_state(k): the agents start where frame k has them and, stepped by the simulator, follow their log:
    1 s later they are where frame k + 10 has them."""
    from drivesim.sim.world import Controls, Simulator

    root, idx = dataset
    arr = read_episode(root / "episodes" / idx["episodes"][0]["episode"])
    k = 10
    st = replay_state(arr["ego"][:, :4], arr["agents"], arr["agents_valid"], k, 0.1, max_agents=64)
    sim = Simulator(proc_town, track_ego_lane=False)
    for _ in range(20):
        st = sim.step(st, Controls.zeros(1))
    both = arr["agents_valid"][k] & arr["agents_valid"][k + 10]
    assert both.sum() > 3
    np.testing.assert_allclose(st.x[0, 1:][both], arr["agents"][k + 10, both, 0], atol=1e-3)
    np.testing.assert_allclose(st.y[0, 1:][both], arr["agents"][k + 10, both, 1], atol=1e-3)


def test_dataset_stats_add_up(dataset):
    root, idx = dataset
    s = dataset_stats(root)
    assert s["frames"] == sum(e["frames"] for e in idx["episodes"])
    assert sum(s["speed_histogram"]["counts"]) == s["frames"]
    assert sum(s["command_histogram"].values()) == s["frames"]
    assert s["hours"] == pytest.approx(s["frames"] * 0.1 / 3600, abs=1e-3)


def test_render_draws_the_episode_as_png_and_gif(dataset, proc_town, tmp_path):
    from drivesim.render import BevRenderer, frames_from_arrays, render_frames
    from PIL import Image

    root, idx = dataset
    arr = read_episode(root / "episodes" / idx["episodes"][0]["episode"])
    frames = frames_from_arrays(arr)[:6]
    w = render_frames(frames, BevRenderer(proc_town, arr["route_xy"], size=200), tmp_path, every=2)
    assert len(w["png"]) == 3
    gif = Image.open(w["gif"])
    assert gif.n_frames == 3
    img = np.asarray(Image.open(w["png"][0]).convert("RGB"))
    assert tuple(img[104, 100]) == (60, 220, 90)  # the ego (green) at the centre, heading up (its rear half)


def test_report_lists_routes_with_their_infractions(tmp_path):
    from drivesim.evaluation.report import failing, write_report

    recs = [{"route_id": "RouteScenario_1_rep0", "status": "Completed", "meta": {"town": "Proc0", "scenario_type": "X"},
             "scores": {"score_route": 100.0, "score_penalty": 0.6, "score_composed": 60.0},
             "infractions": {"collisions_vehicle": ["Agent collided against object with type=vehicle and id=3 at "
                                                    "(x=1.0, y=2.0, z=0.0)"], "min_speed_infractions": ["x"]}},
            {"route_id": "RouteScenario_2_rep0", "status": "Perfect", "meta": {"town": "Proc0", "scenario_type": "Y"},
             "scores": {"score_route": 100.0, "score_penalty": 1.0, "score_composed": 100.0}, "infractions": {}}]
    assert [r["route_id"] for r in failing(recs, 5)] == ["RouteScenario_1_rep0"]
    p = write_report(tmp_path, {"policy": "expert", "driving_score": 80.0, "success_rate": 50.0, "efficiency": 1.0,
                                "comfortness": 1.0, "multi_ability": {}}, recs, {"RouteScenario_1_rep0": "r/1.gif"})
    doc = p.read_text()
    assert "RouteScenario_2_rep0" in doc and "collisions_vehicle" in doc and 'src="r/1.gif"' in doc
    assert "min_speed_infractions" not in doc.split("<h2>Routes</h2>")[1].split("summary.json")[0]
