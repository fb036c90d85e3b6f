"""TakeVLA: the tokenizer, the commentary labels and the raster on hand-built scenes, the pre-takeover rows, and
training -> ONNX export -> closed-loop driving and commentary."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from drivesim.maps.lanegraph import Command
from drivesim.models.features import COMMANDS, DIST_CAP, EGO_DIM, POS_SCALE, SPEED_SCALE, STEP_DIM, FeatureConfig
from drivesim.vla.language import (
    EOS,
    MAX_LEN,
    PAD,
    UNK,
    TokenError,
    advisory,
    commentary,
    decode,
    encode,
    parse_commentary,
    precaution,
    prompts,
)

H = FeatureConfig().history
N, T, U, K = 4, 6, 2, 30


def _sample(ego_speed=5.0, plan_speed=5.0, path_y=0.0):
    """One training-table row: an empty straight road, the expert's path straight ahead (or offset by path_y m at
    its end), the logged ego moving straight at ego_speed."""
    ego = np.zeros(EGO_DIM, np.float32)
    ego[0] = ego_speed / SPEED_SCALE
    ego[3] = ego[7] = 1.0  # no light, no stop sign (the cap)
    ego[9 + COMMANDS.index(Command.LANEFOLLOW)] = 1
    route = np.zeros((20, 4), np.float32)
    route[:, 0] = np.arange(20) * 2.0 / POS_SCALE
    route[:, 2] = 1
    path = np.stack([np.arange(1, 7) * 2.0, np.linspace(0, path_y, 6)], -1).astype(np.float32)
    ef = np.zeros((T, 3), np.float32)
    ef[:, 0] = ego_speed * 0.5 * np.arange(1, T + 1)
    return {"ego": ego, "agents": np.zeros((N, H * STEP_DIM + 7), np.float32), "agents_mask": np.zeros(N, bool),
            "route": route, "route_mask": np.ones(20, bool), "path": path, "speed": np.float32(plan_speed),
            "ego_future": ef, "ego_future_mask": np.ones(T, bool), "agents_future": np.zeros((N, T, 2), np.float32),
            "agents_future_mask": np.zeros((N, T), bool), "roll_unseen_mask": np.zeros((U, K), bool),
            "unseen_kind": np.full(U, -1.0, np.float32)}


def _agent(s, j, x, y, kind, yaw=0.0, length=4.5, width=1.9):
    a = np.zeros(H * STEP_DIM + 7, np.float32)
    for h in range(H):
        a[h * STEP_DIM: (h + 1) * STEP_DIM] = [x / POS_SCALE, y / POS_SCALE, np.cos(yaw), np.sin(yaw), 0, 1]
    a[H * STEP_DIM: H * STEP_DIM + 2] = [length / 5.0, width / 2.0]
    a[H * STEP_DIM + 2 + kind] = 1
    s["agents"][j], s["agents_mask"][j] = a, True


def _table(rows):
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_tokenizer_round_trip_pads_and_refuses_too_long():
    ids = encode("i stop for the red light .")
    assert ids.shape == (MAX_LEN,) and ids[0] == 1 and ids[8] == EOS and (ids[9:] == PAD).all()
    assert decode(ids) == "i stop for the red light ."
    assert encode("i stop for the giraffe")[5] == UNK
    with pytest.raises(TokenError, match="tokens >"):
        encode(" ".join(["i"] * MAX_LEN))
    ego = np.zeros((2, EGO_DIM), np.float32)
    ego[0, 9 + COMMANDS.index(Command.LEFT)] = 1  # the second row has no command: follow the lane
    p = prompts(ego)
    assert decode(np.r_[1, p[0]]) == "turn left at the junction" and decode(np.r_[1, p[1]]) == "follow the lane"


def test_commentary_of_hand_built_scenes():
    red = _sample(ego_speed=5.0, plan_speed=0.0)
    red["ego"][3], red["ego"][4] = 20.0 / DIST_CAP, 1  # a red light 20 m ahead
    ped = _sample(ego_speed=6.0, plan_speed=2.0)  # a pedestrian 12 m ahead, 5 m right, walking into the ego's path
    _agent(ped, 0, 12.0, 5.0, 1, width=0.6, length=0.6)
    ped["agents_future"][0] = np.stack([np.full(T, 9.0), np.linspace(4.0, -1.0, T)], -1)
    ped["agents_future_mask"][0] = True
    lead = _sample(ego_speed=5.0, plan_speed=5.0)
    _agent(lead, 0, 15.0, 0.3, 0)
    clear = _sample(ego_speed=3.0, plan_speed=8.0)
    clear["roll_unseen_mask"][1, 10], clear["unseen_kind"][1] = True, 1  # a pedestrian hidden now, near later
    around = _sample(ego_speed=4.0, plan_speed=4.0, path_y=-2.0)  # the expert's path 2 m left of the route
    _agent(around, 0, 10.0, 0.0, 3, length=1.0, width=1.0)
    hold = _sample(ego_speed=0.0, plan_speed=0.0)
    hold["ego"][7], hold["ego"][8] = 5.0 / DIST_CAP, 1  # a stop sign 5 m ahead
    txt = commentary(_table([red, ped, lead, clear, around, hold]), history=H)
    assert txt == ["i stop for the red light .",
                   "i slow down to yield to the crossing pedestrian .",
                   "i keep my speed behind the vehicle ahead .",
                   "i speed up : the road is clear . watch for a hidden pedestrian .",
                   "i keep my speed and steer around to the left behind the obstacle ahead .",
                   "i stay stopped for the stop sign ."]
    assert all(decode(encode(t)) == t for t in txt)  # every word is in the vocabulary
    t = _table([ped, around])
    assert precaution("PREDICTED_COLLISION", t, 0, H) == "careful : i must brake early for the pedestrian ahead ."
    assert precaution("STEER_DISAGREEMENT", t, 1, H) == "careful : i must steer left ."
    stall = precaution("STALLED", t, 0, H)  # the ego stood where the expert drove off: go, and the advisory lets it
    assert decode(encode(stall)) == stall and advisory(stall + " " + txt[0], 0.0) == ("proceed", -1.0)
    assert advisory(precaution("LOW_TTC", t, 0, H) + " " + txt[0], 3.0) == ("slow_down", 3.0)
    assert parse_commentary(stall + " " + txt[3])["precaution"] == "careful : i must go : the road is clear"
    from drivesim.vla.language import language_metrics

    pre = "careful : i must brake early for the pedestrian ahead . " + txt[3]
    assert parse_commentary(pre) == {"precaution": "careful : i must brake early for the pedestrian ahead",
                                     "decision": "i speed up", "reason": "the road is clear", "hazard": "pedestrian"}
    assert parse_commentary(txt[4])["decision"] == "i keep my speed and steer around to the left"
    m = language_metrics([txt[0], "i slow down .", pre], [txt[0], txt[1], txt[3]])
    assert m["decision_acc"] == 1.0 and m["reason_acc"] == pytest.approx(2 / 3, abs=1e-3) and m["exact"] == pytest.approx(1 / 3, abs=1e-3)
    assert m["hazard_recall"] == 1.0 and m["hazard_precision"] == 1.0 and m["precaution_acc"] is None
    assert advisory("i stop for the red light .", 0.0) == ("stop", 0.0)
    assert advisory("careful : i must brake early .", 3.0) == ("slow_down", 3.0)
    assert advisory("i speed up : the road is clear .", 8.0) == ("proceed", -1.0)


def test_raster_puts_a_hand_built_scene_where_it_is():
    from drivesim.vla.raster import CHANNELS, EGO_ROW, RES, SIZE, raster

    s = _sample()
    _agent(s, 0, 15.0, 0.0, 0)  # a car 15 m ahead
    _agent(s, 1, 6.0, -4.5, 1, length=0.6, width=0.6)  # a pedestrian 6 m ahead, 4.5 m left
    lanes = np.zeros((1, 16, 10, 10), np.float32)
    lanes[0, 0, :, 0] = np.linspace(-10, 30, 10) / POS_SCALE  # a lane under the ego, its light red
    lanes[0, 0, :, 2], lanes[0, 0, :, 7] = 1, 1
    f = {"route": s["route"][None], "route_mask": s["route_mask"][None], "agents": s["agents"][None],
         "agents_mask": s["agents_mask"][None], "lanes": lanes, "lanes_mask": np.r_[1, np.zeros(15)][None]}
    img = raster(f, H)
    assert img.shape == (1, len(CHANNELS), SIZE, SIZE)
    ch = {c: img[0, i] for i, c in enumerate(CHANNELS)}
    row = lambda x: int(np.floor(EGO_ROW - x / RES))  # noqa: E731
    col = lambda y: int(np.floor(SIZE / 2 + y / RES))  # noqa: E731
    assert ch["vehicles"][row(15.0), col(0.0)] == 1 and ch["vehicles"][row(15.0), col(3.0)] == 0
    ys, xs = np.nonzero(ch["vehicles"])
    assert (ys.max() - ys.min() + 1) * RES == pytest.approx(4.5, abs=1.0)  # 4.5 m long, along x (up)
    assert ch["vulnerable"][row(6.0), col(-4.5)] == 1 and ch["vulnerable"].sum() <= 4
    assert ch["route"][row(10.0), col(0.0)] == 1 and ch["route"][EGO_ROW + 2].sum() == 0  # ahead only
    assert ch["lanes"][row(20.0), col(0.0)] == 1 and ch["stop_lanes"][row(20.0), col(0.0)] == 1
    assert ch["obstacles"].sum() == 0 and ch["history"][row(15.0), col(0.0)] == 1


def test_takeover_rows_pick_the_takeovers_and_the_seconds_before():
    from drivesim.learn.vla import takeover_rows

    ctl = np.array([0] * 40 + [1] * 20 + [0] * 10 + [0] * 30 + [1] * 5, np.int8)  # episode 0: 70 frames, 1: 35
    ep = np.r_[np.zeros(70, int), np.ones(35, int)]
    fr = np.r_[np.arange(70), np.arange(35)]
    data = {"controller": ctl, "episode": ep, "frame": fr}
    index = {"episodes": [{"takeovers": {"events": [{"t": 4.0, "cause": "PREDICTED_COLLISION"}]}},
                          {"takeovers": {"events": [{"t": 1.0, "cause": "LOW_TTC"}, {"t": 3.0, "cause": "STEER_DISAGREEMENT"}]}}]}
    rows, causes = takeover_rows(data, index, "pre", 1.0)
    pre0, post0 = set(range(30, 40)), set(range(40, 60))
    pre1, post1 = set(range(90, 100)), set(range(100, 105))  # episode 1's takeover at its frame 30: t = 3.0
    assert set(rows.tolist()) == pre0 | post0 | pre1 | post1
    assert {causes[r] for r in pre0} == {"PREDICTED_COLLISION"} and {causes[r] for r in pre1} == {"STEER_DISAGREEMENT"}
    assert set(causes) == pre0 | pre1
    rows_plain, c_plain = takeover_rows(data, index, "pre_plain", 1.0)
    assert set(rows_plain.tolist()) == set(rows.tolist()) and c_plain == {}
    assert set(takeover_rows(data, index, "post", 1.0)[0].tolist()) == post0 | post1
    assert len(takeover_rows(data, index, "none", 1.0)[0]) == 0


def test_speed_points_are_the_experts_planned_speeds_ahead_and_the_pid_follows_the_profile():
    """Labels: the expert's planned speed 0 / 0.5 / 1.0 s later in the same episode (its last frame where it ends
    first); a table whose episodes are not runs of frames is refused. The PID's target: the profile, linear in
    time, held outside it."""
    from drivesim.learn.vla import speed_profile
    from drivesim.sim.control import profile_target

    ep = np.r_[np.zeros(12, int), np.ones(4, int)]
    fr = np.r_[np.arange(12), np.arange(4)]
    data = {"episode": ep, "frame": fr, "speed": (100 * ep + fr).astype(np.float32)}
    lab = speed_profile(data, np.array([0.0, 0.5, 1.0]))
    assert lab[0].tolist() == [0, 5, 10] and lab[3].tolist() == [3, 8, 11] and lab[11].tolist() == [11, 11, 11]
    assert lab[12].tolist() == [100, 103, 103]
    with pytest.raises(ValueError, match="not runs of consecutive frames"):
        speed_profile({k: v[::2] for k, v in data.items()}, np.array([0.0, 0.5]))
    times = np.array([0.0, 0.5, 1.0, 1.5])
    v = np.array([[8.0, 6.0, 2.0, 0.0], [4.0, 4.0, 5.0, 6.0]])
    assert profile_target(v, times, 0.25).tolist() == [7.0, 4.0]
    assert profile_target(v, times, np.array([0.0, 0.75, 9.0])).tolist() == [[8.0, 4.0, 0.0], [4.0, 4.5, 6.0]]
    assert profile_target(v[:, :1], times[:1], 0.5).tolist() == [8.0, 4.0]  # one point: held


def test_takevla_trains_exports_drives_and_explains(tmp_path, learn_dataset, proc_town, shadow_data):
    """Base data (the expert) + a shadow-mode collection (the committed perlad drives, the expert takes over): training
    moves the weights and lowers the loss, the pre-takeover frames carry precautionary commentary, the ONNX graphs
    match torch, and `--policy takevla` drives a route and explains itself in the vocabulary's words."""
    from drivesim.learn.vla import VLAConfig, language_eval, make_stage, run_vla
    from drivesim.policies import ModelError, check_policy, find_model, make_policy
    from drivesim.sim.perception import ScenePerceiver

    routes, shadow = shadow_data / "routes.xml", shadow_data / "shadow"
    cfg = VLAConfig(data=str(learn_dataset / "ds"), out=str(tmp_path / "vla"), workers=1, d_model=32, layers=1,
                    epochs=3, batch_size=64, lr=3e-3, takeover_data=str(shadow), pre_takeover=2.0)
    stage = make_stage(cfg, log=lambda *_: None)
    init = {k: v.clone() for k, v in stage.model.state_dict().items()}
    counts = dict(json.loads((tmp_path / "vla" / "commentary_counts.json").read_text()))
    assert any(t.startswith("careful : ") for t in counts)  # the pre-takeover frames' precaution
    m = stage.run()
    hist = m["history"]
    assert hist[-1]["train"]["loss"] < hist[0]["train"]["loss"] and hist[-1]["val"]["text"] < hist[0]["val"]["text"]
    moved = [k for k, v in stage.model.state_dict().items() if not torch.equal(v, init[k])]
    assert len(moved) > 20
    rep = run_vla(VLAConfig(**{**cfg.__dict__, "resume": True, "eval_routes": str(routes)}), log=lambda *_: None)
    man = json.loads((tmp_path / "vla" / "model" / "vla.manifest.json").read_text())
    assert max(man["parity_max_abs_err"].values()) < 1e-3 and man["kind"] == "vla"
    assert man["speed_times_s"] == [0.0, 0.5, 1.0, 1.5] and man["speed_lookahead_s"] == 0.5
    assert hist[-1]["train"]["speed"] < hist[0]["train"]["speed"]  # the speed points learn (every point counts)
    assert 0 <= rep["eval"]["driving_score"] <= 100
    onnx = str(tmp_path / "vla" / "model" / "vla.onnx")
    assert check_policy("takevla", onnx)["sha256"] == man["sha256"]
    lm = language_eval(onnx, str(learn_dataset / "ds"), max_frames=30, workers=1, log=lambda *_: None)
    assert lm["frames"] == 30 and all(0 <= lm[k] <= 1 for k in ("decision_acc", "reason_acc", "exact", "advisory_acc"))
    assert lm["decision_acc"] > 0.3  # trained on these very frames (3 tiny epochs): it says what the expert does
    with pytest.raises(ModelError, match="no manifest vla_text.manifest.json"):
        check_policy("takevla", str(tmp_path / "vla" / "model" / "vla_text.onnx"))
    with pytest.raises(ModelError, match="kind 'planner', not a TakeVLA export"):
        check_policy("takevla", str(find_model("perlad")))
    # drive a few ticks on a scene and explain: words of the vocabulary, an advisory consistent with the words
    from drivesim.dataset.collect import read_episode
    from drivesim.learn.data import _frame_state, dense_route

    pol = make_policy("takevla", 1, g=proc_town, model=onnx)
    rt = pol.rt  # the PID's target: the profile of each point's best speed, `speed_lookahead_s` ahead
    logits = np.full((1, 4, 13), -5.0, np.float32)
    logits[0, np.arange(4), [8, 6, 2, 0]] = 5.0  # 8, 6, 2, 0 m/s at 0, 0.5, 1.0, 1.5 s
    assert rt.speed_profile(logits[0]).tolist() == [8.0, 6.0, 2.0, 0.0] and rt.target_speed(logits[0]) == 6.0
    rt.speed_lookahead = 0.75
    assert rt.target_speed(logits[0]) == pytest.approx(4.0)
    rt.speed_lookahead = man["speed_lookahead_s"]
    ep = sorted((learn_dataset / "ds" / "episodes").iterdir())[0]
    arr = read_episode(ep)
    per = ScenePerceiver(proc_town, [dense_route(arr)])
    for f in range(0, 30, 10):
        st = _frame_state(arr, f, proc_town.num_lights)
        scene = per(st, np.zeros((1, proc_town.num_lights), np.int8))
        ctl, plan = pol.act(scene)
        assert np.isfinite([ctl.throttle[0], ctl.steer[0], ctl.brake[0]]).all()
        adv = pol.explain(0)
        assert adv.text and "<unk>" not in adv.text and adv.advisory in ("stop", "slow_down", "proceed")


def _scenario(agent_x=12.0, agent_speed=0.0, agent_y=0.0, kind=0, expert_speed=0.0):
    """One dreaming scenario (the table's keys): the ego at 8 m/s on a straight road, one agent ahead at agent_x
    moving along +y at agent_speed (its log, 10 Hz), the expert's plan straight ahead at expert_speed."""
    s = _sample(ego_speed=8.0, plan_speed=expert_speed)
    size = (0.6, 0.6) if kind == 1 else (4.5, 1.9)
    _agent(s, 0, agent_x, agent_y, kind, length=size[0], width=size[1])
    t = np.arange(1, K + 1) * 0.1
    ra = np.zeros((N, K, 5), np.float32)
    ra[0] = np.stack([np.full(K, agent_x), agent_y + agent_speed * t, np.zeros(K), np.full(K, size[0]),
                      np.full(K, size[1])], -1)
    rm = np.zeros((N, K), bool)
    rm[0] = True
    s.update(roll_agents=ra, roll_agents_mask=rm, agent_kind=np.r_[kind, -np.ones(N - 1)].astype(np.float32),
             roll_unseen=np.zeros((U, K, 5), np.float32), lanes=np.zeros((16, 10, 10), np.float32),
             lanes_mask=np.zeros(16, bool))
    return s


def test_dreaming_rollouts_score_against_the_expert_and_collisions():
    """2 s at 5 Hz: the expert's own plan scores L2 0; driving on at 8 m/s into a car standing 12 m ahead collides
    (the vehicle penalty); a perturbation keeps identity rows as recorded, moves what the policy sees with the
    agent, and a time shift moves the replay."""
    from drivesim.learn.dream_rollout import DreamSettings, perturb, rollout

    s = DreamSettings()
    sc = _table([_scenario()])
    path = sc["path"]
    r = rollout(sc, np.concatenate([path, path]), np.array([0.0, 8.0]), s)
    assert r["expert"].shape == (1, 10, 3)
    assert r["l2"][0] == pytest.approx(0.0, abs=1e-9) and r["collided"][0] == 0
    assert r["collided"][1] == 1 and r["collision"][1] == s.collision_vehicle and r["l2"][1] > 3.0
    assert r["total"][0] > r["total"][1]
    # a pedestrian crossing at 3 m/s from 6 m left, 10 m ahead: the ego at 8 m/s passes first; 0.5 s earlier, it hits
    cross = _table([_scenario(agent_x=10.0, agent_y=-6.0, agent_speed=3.0, kind=1, expert_speed=8.0)])
    rng = np.random.default_rng(0)
    same = perturb(cross, rng, s, H, identity=np.array([True]))
    assert all(np.array_equal(same[k], cross[k]) for k in cross) and same["time_shift"][0] == 0
    moved = perturb(cross, rng, DreamSettings(time_shift=0.0, position=1.0, speed_scale=0.0), H)
    d = moved["roll_agents"][0, 0, 0, :2] - cross["roll_agents"][0, 0, 0, :2]
    assert np.abs(d).max() > 0 and np.allclose(moved["agents"][0, 0, :2] * POS_SCALE - cross["agents"][0, 0, :2] * POS_SCALE, d, atol=1e-5)
    # speed points: a constant profile is the held speed; braking 8 -> 0 within 1 s stops short of the car ahead
    sp = DreamSettings(speed_times=(0.0, 0.5, 1.0, 1.5))
    held = rollout(sc, np.concatenate([path, path]), np.array([8.0, 8.0]), sp)
    prof = rollout(sc, np.concatenate([path, path]), np.array([[8.0] * 4, [8.0, 4.0, 0.0, 0.0]]), sp)
    assert prof["l2"][0] == held["l2"][0] and prof["collided"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="3 speed points for 4 times"):
        rollout(sc, path, np.array([[8.0, 4.0, 0.0]]), sp)
    # which speed points the controller reads: 0.5 s ahead, the profile from 0.5 s on (never the point at 0 s);
    # changing an unread point leaves the rollout as it was, changing a read one does not
    from drivesim.learn.dream_rollout import read_speed_points

    ahead = DreamSettings(speed_times=(0.0, 0.5, 1.0, 1.5), speed_lookahead=0.5)
    assert read_speed_points(ahead).tolist() == [False, True, True, True]
    assert read_speed_points(sp).tolist() == [True] * 4 and read_speed_points(s).tolist() == [True]
    pts = np.array([[8.0, 6.0, 4.0, 2.0], [0.0, 6.0, 4.0, 2.0], [8.0, 0.0, 4.0, 2.0]])
    three = rollout(sc, np.concatenate([path] * 3), pts, ahead)
    assert three["l2"][1] == three["l2"][0] and three["l2"][2] != three["l2"][0]
    early = dict(cross, time_shift=np.array([5]))
    hits = [rollout(x, cross["path"], np.array([8.0]), s)["collided"][0] for x in (cross, early)]
    assert hits == [0.0, 1.0]  # the ego passes before the walker reaches its lane; 0.5 s earlier it is there
    # the TTC term (off by default): on at 8 m/s toward a car standing 25 m ahead, the 2 s rollout ends short of
    # it (no collision) but on course to hit it within 1.5 s; braking to a stop ends with no conflict
    far = _table([_scenario(agent_x=25.0)])
    two = np.concatenate([far["path"], far["path"]])
    off = rollout(far, two, np.array([8.0, 0.0]), s)
    on = rollout(far, two, np.array([8.0, 0.0]), DreamSettings(ttc=-5.0))
    assert off["collided"].tolist() == [0.0, 0.0] and off["ttc"].tolist() == [0.0, 0.0]
    assert on["ttc"].tolist() == [-5.0, 0.0] and on["total"] == pytest.approx(off["total"] + np.array([-5.0, 0.0]))
    assert rollout(sc, np.concatenate([path, path]), np.array([0.0, 8.0]), DreamSettings(ttc=-5.0))["ttc"].tolist() \
        == [0.0, 0.0]  # a rollout that collides gets the collision term, not both


def test_scenario_dreaming_runs_grpo_on_the_takeover_scenarios(tmp_path, learn_dataset, shadow_data):
    """train dreaming from a TakeVLA checkpoint on a shadow-mode collection: the scenarios are the takeovers and
    the seconds before them, GRPO moves the action heads (the KL to the start grows from 0), the held-out curve
    is logged, resume continues, and the result exports and loads as --policy takevla."""
    from drivesim.learn.dreaming import DreamConfig, Dreaming, run_dreaming
    from drivesim.learn.vla import VLAConfig, make_stage
    from drivesim.policies import check_policy

    shadow = shadow_data / "shadow"
    make_stage(VLAConfig(data=str(learn_dataset / "ds"), out=str(tmp_path / "vla"), workers=1, d_model=32, layers=1,
                         epochs=1, batch_size=64, supervision="none"), log=lambda *_: None).run()
    cfg = DreamConfig(init=str(tmp_path / "vla" / "ckpt.pt"), takeover_data=str(shadow),
                      out=str(tmp_path / "dream"), updates=6, states=16, group=4, eval_every=3, workers=1, lr=1e-3,
                      ttc=-2.0)
    d = Dreaming(cfg, log=lambda *_: None)
    assert len(d.tr) > 16 and d.heldout["time_shift"].shape == (len(d.heldout["speed"]),)
    assert d.s.speed_times == (0.0, 0.5, 1.0, 1.5) and d.s.speed_lookahead == 0.5  # the checkpoint's
    assert (d.s.ttc, d.s.ttc_horizon) == (-2.0, 1.5)
    assert d.sc["speed_points"].shape == (len(d.sc["speed"]), 4)
    # a group's actions: the speed point the controller never reads (0 s, lookahead 0.5 s) is the most likely bin,
    # the read ones are drawn
    with torch.no_grad():
        h = d._heads(d.model, d._inputs(d.heldout))
    _, bins, paths = d._sample(h, 8)
    greedy = h["logp_speed"].argmax(-1).repeat_interleave(8, 0)
    assert d.read.tolist() == [False, True, True, True] and paths.shape == (8 * len(greedy) // 8, *h["path"].shape[1:])
    assert torch.equal(bins[:, 0], greedy[:, 0]) and not torch.equal(bins[:, 1:], greedy[:, 1:])
    with pytest.raises(ValueError, match="adv_std_floor 0"):
        DreamConfig(adv_std_floor=0.0)
    init = {k: v.clone() for k, v in d.model.state_dict().items()}
    res = d.run()
    steps = [h for h in res["history"] if "train" in h]
    assert len(steps) == 6 and steps[0]["train"]["kl_speed"] == pytest.approx(0.0, abs=1e-6)
    assert all(0.0 <= h["train"]["ttc_rate"] <= 1.0 for h in steps)
    assert steps[-1]["train"]["kl_speed"] > 0 and all(np.isfinite(h["train"]["loss"]) for h in steps)
    assert [h["update"] for h in res["history"] if "heldout" in h] == [0, 3, 6]
    first = res["history"][0]["heldout"]  # the sampled policy's own score, not the greedy action's
    assert np.isfinite(first["reward_sampled"]) and first["reward_sampled"] != first["reward"]
    assert all(0 <= h["train"]["mixed_collision_groups"] <= 1 and h["train"]["group_std_median"] >= 0 for h in steps)
    moved = [k for k, v in d.model.state_dict().items() if not torch.equal(v, init[k])]
    assert any(k.startswith("speed_head") for k in moved) and any(k.startswith("path_head") for k in moved)
    assert not [k for k in moved if k.startswith(("dec.", "lm_head."))]  # w_text 0: the language decoder is frozen
    rep = run_dreaming(DreamConfig(**{**cfg.__dict__, "updates": 8, "resume": True, "speed_lookahead": 0.25}),
                       log=lambda *_: None)
    assert [h["update"] for h in rep["history"] if "train" in h][-2:] == [7, 8]
    assert json.loads(Path(rep["model"]).with_name("vla.manifest.json").read_text())["speed_lookahead_s"] == 0.25
    assert check_policy("takevla", rep["model"])["path"] == rep["model"]


def _tiny_vlm(folder):
    """A LLaVA-style vision-language model with random weights, a word-level tokenizer and a CLIP image processor,
    saved with save_pretrained (nothing downloaded): what the `hf` reasoner loads from a user's folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    words = ["<pad>", "<s>", "</s>", "<unk>", "<image>", *"instruction: say what you do next and why. i stop slow "
             "down keep my speed for the red light turn left right at junction. follow lane. go straight".split()]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    ftok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", additional_special_tokens=["<image>"])
    proc = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                             crop_size={"height": 32, "width": 32}),
                          tokenizer=ftok, patch_size=8, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                bos_token_id=1, eos_token_id=2, pad_token_id=0),
        image_token_index=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(cfg).save_pretrained(folder)
    proc.save_pretrained(folder)
    return set(vocab)


def test_hf_reasoner_runs_a_local_vision_language_model(tmp_path, proc_town):
    """The `hf` reasoner: a local transformers VLM (a tiny random LLaVA built here) sees the scene's BEV raster as
    an image and the route instruction in its prompt; it generates words of its own vocabulary, and the advisory
    follows the words. A folder that is no model is refused by name."""
    pytest.importorskip("transformers", reason="transformers not installed: make setup installs the vla extra")
    from drivesim.evaluation.runner import run_route
    from drivesim.routes.generate import random_routes
    from drivesim.routes.planner import plan_route
    from drivesim.sim.perception import ScenePerceiver
    from drivesim.stack.reasoners import ReasonerError, advisory_from_words, make_reasoner, raster_image

    assert advisory_from_words("I stop for the red light.", 8.0) == ("stop", 0.0)
    assert advisory_from_words("slow down, a walker", 8.0) == ("slow_down", 6.0)
    assert advisory_from_words("keep my speed", 8.0) == ("proceed", -1.0)
    img = raster_image(np.ones((7, 64, 64), np.float32))
    assert img.size == (256, 256) and img.mode == "RGB"
    words = _tiny_vlm(tmp_path / "vlm")
    r = make_reasoner("hf", proc_town, str(tmp_path / "vlm"))
    assert r.name == "hf vlm" and r.needs_map

    spec = random_routes(proc_town, 1, seed=3, min_length=100.0)[0]
    per = ScenePerceiver(proc_town, [plan_route(proc_town, spec)])
    got = []

    scenes = []

    def observe(st):
        if len(got) < 2 and int(round(float(st.state.t[0]) / 0.05)) % 20 == 0:
            scenes.append(per(st.state, st.lights))
            got.append(r.reason(scenes[-1]))

    run_route(proc_town, spec, "rule", observer=observe)
    assert len(got) == 2
    for adv in got:
        assert adv.text and set(adv.text.split()) <= words
        assert adv.advisory == advisory_from_words(adv.text, 0.0)[0]
    with pytest.raises(ReasonerError, match="no config.json"):
        make_reasoner("hf", proc_town, str(tmp_path))
    # a user's camera instead of the raster (vla_reasoning camera_topic): the bridge's bgra8 image, read to RGB, is
    # what the processor gets
    from drivesim.stack.wire import InvalidMessage, image_rgb

    h, w = 6, 8
    bgra = np.zeros((h, w, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 255  # B, G, R, A
    cam = image_rgb(h, w, "bgra8", w * 4, bgra.tobytes(), "/carla/hero/rgb_front/image")
    assert cam.shape == (h, w, 3) and cam[0, 0].tolist() == [30, 20, 10]
    padded = np.zeros((h, w * 3 + 4), np.uint8)  # rows padded beyond width x 3 (step > width x channels)
    padded[:, : w * 3] = np.tile([1, 2, 3], w)
    assert image_rgb(h, w, "rgb8", w * 3 + 4, padded.tobytes())[h - 1, w - 1].tolist() == [1, 2, 3]
    with pytest.raises(InvalidMessage, match="/cam: image 8x6 bgra8 with step 32 needs 192 bytes"):
        image_rgb(h, w, "bgra8", w * 4, bgra.tobytes()[:-1], "/cam")
    with pytest.raises(InvalidMessage, match="encoding 'yuv422'"):
        image_rgb(h, w, "yuv422", w * 2, bytes(h * w * 2), "/cam")
    seen = []
    proc = r.processor

    class Spy:  # the processor, recording the image it is given
        def __getattr__(self, k):
            return getattr(proc, k)

        def __call__(self, images=None, **kw):
            seen.append(np.asarray(images))
            return proc(images=images, **kw)

    r.processor = Spy()
    adv = r.reason(scenes[0], cam)
    assert adv.text and set(adv.text.split()) <= words
    assert seen[-1].shape == (h, w, 3) and (seen[-1] == cam).all()
