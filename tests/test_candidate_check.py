"""The learned planner's candidate check (policies/learned.py CandidateCheck, policies/check.py collision_times):
hand-built scenes and network outputs with known answers."""

from types import MethodType, SimpleNamespace

import numpy as np
import pytest
from drivesim.policies.check import collision_times
from drivesim.policies.learned import CandidateCheck, LearnedPolicy, ramp_profiles
from drivesim.sim.dynamics import DEFAULT_VEHICLE
from drivesim.sim.state import AgentKind
from drivesim.stack.takeover import TakeoverConfig, predicted_collision
from test_stack_lib import CAR, scene_with

SPEEDS = np.arange(13.0)  # the committed planners' target speeds [m/s]
STRAIGHT = np.stack([np.arange(2.0, 13.0, 2.0), np.zeros(6)], 1)  # 6 points, 2 m apart
LEFT = STRAIGHT.copy()
LEFT[:, 1] = [-1.0, -2.5, -3.5, -3.5, -3.5, -3.5]  # y to the right: negative is the lane on the left


def outputs(anchor_p, speed_idx, paths=(STRAIGHT, LEFT)):
    """Network outputs of a 2-anchor planner: anchor probabilities, and per anchor a speed distribution peaked
    (p 0.9) at speed_idx[a] with the rest spread evenly."""
    ls = np.full((1, len(paths), len(SPEEDS)), np.log(0.1 / 12))
    for a, k in enumerate(speed_idx):
        ls[0, a, k] = np.log(0.9)
    return {"anchor_logits": np.log(np.asarray(anchor_p, np.float64))[None], "paths": np.asarray(paths)[None],
            "speed_logits": ls}


def checker(horizon=2.0, **kw):
    """LearnedPolicy's decoding state without a network: what `checked` and `stalled` use."""
    pol = SimpleNamespace(check=CandidateCheck(horizon=horizon, **kw), speeds=SPEEDS, stood_since=np.full(1, np.nan))
    pol.stalled = MethodType(LearnedPolicy.stalled, pol)
    return pol


def checked(scene, out, horizon=2.0, t=0.0, pol=None):
    pol = pol or checker(horizon)
    a = int(np.argmax(out["anchor_logits"][0]))
    return LearnedPolicy.checked(pol, scene, 0, out, a, int(np.argmax(out["speed_logits"][0, a])), t)


def test_collision_times_of_many_candidates_match_the_single_plan_check():
    parked = scene_with([(15.0, 0.0, 0.0, 0.0, *CAR)], ego_speed=8.0)
    path = np.stack([np.arange(1, 40, dtype=float), np.zeros(39)], 1)
    swerve = np.stack([np.arange(1, 40, dtype=float), np.full(39, 4.0)], 1)
    swerve[:3, 1] = [1.0, 2.0, 3.0]
    paths = np.stack([path, path, swerve])
    profiles = np.stack([np.full(39, 8.0), np.zeros(39), np.full(39, 8.0)])
    when = collision_times(parked, paths, profiles, horizon=2.0)
    cfg = TakeoverConfig(horizon=2.0)
    single = [predicted_collision(parked, p, v, cfg)[1] for p, v in zip(paths, profiles, strict=True)]
    assert when.tolist() == single
    # the front bumper reaches the parked car's rear (15 - 2.3 - 2.45 = 10.25 m) at 8 m/s: 1.3 s; the others never
    assert when[0] == pytest.approx(1.3) and np.isinf(when[1:]).all()


def test_collision_times_start_from_standstill_at_the_profiles_acceleration():
    """A standing ego (0 m/s) whose candidate ramps at 2 m/s^2 towards 6 m/s: after t seconds it has driven t^2 m,
    so the front bumper (2.3 m ahead of the centre) reaches a stopped car's rear 4 m ahead at t = 2.0 s (stepping
    ds = v(s) dt from v = 0 never leaves the start: a check blind to every start from standstill). Braking from
    8 m/s at 4 m/s^2 stops after 8 m: a car whose rear is 9 m ahead is never reached, one 7 m ahead at 1.3 s."""
    path = np.stack([np.arange(1.0, 31.0), np.zeros(30)], 1)[None]
    for gap, v0, target, want in ((4.0, 0.0, 6.0, 2.0), (9.0, 8.0, 0.0, np.inf), (7.0, 8.0, 0.0, 1.3)):
        scene = scene_with([(2.3 + gap + 2.3, 0.0, 0.0, 0.0, *CAR)], ego_speed=v0)
        prof = ramp_profiles(path, v0, np.array([target]), accel=2.0, decel=4.0)
        when = collision_times(scene, path, prof, horizon=4.0)[0]
        assert when == pytest.approx(want, abs=0.051), (gap, v0, target, when)


def test_the_margin_widens_the_forecast_ego_on_each_side():
    """A car parked beside the straight path with 0.2 m between the boxes: driven past at 8 m/s it is cleared; with
    a 0.25 m margin the forecast hits it where the fronts meet (rear 10.25 m ahead of the front bumper: 1.3 s), with
    0.15 m it still clears. A car already within the margin now is nothing to avoid (as one overlapping now)."""
    gap = 0.2
    y = DEFAULT_VEHICLE.width / 2 + 1.9 / 2 + gap
    path = np.stack([np.arange(1.0, 40.0), np.zeros(39)], 1)[None]
    prof = np.full((1, 39), 8.0)
    beside = scene_with([(15.0, y, 0.0, 0.0, *CAR)], ego_speed=8.0)
    assert np.isinf(collision_times(beside, path, prof, horizon=2.0)[0])
    assert np.isinf(collision_times(beside, path, prof, horizon=2.0, margin=0.15)[0])
    assert collision_times(beside, path, prof, horizon=2.0, margin=0.25)[0] == pytest.approx(1.3)
    alongside = scene_with([(0.0, y, 0.0, 0.0, *CAR)], ego_speed=8.0)
    assert np.isinf(collision_times(alongside, path, prof, horizon=2.0, margin=0.25)[0])
    with pytest.raises(ValueError, match="margin"):
        CandidateCheck(horizon=3.0, margin=-0.1)
    with pytest.raises(ValueError, match="margin = 0.3: .* set a horizon"):
        CandidateCheck(horizon=0.0, margin=0.3)


def test_ramp_profiles_brake_and_accelerate_at_the_given_rates():
    path = np.stack([np.arange(1.0, 21.0), np.zeros(20)], 1)[None].repeat(2, 0)
    prof = ramp_profiles(path, 8.0, np.array([0.0, 12.0]), accel=2.0, decel=4.0)
    assert prof[0, 3] == pytest.approx(np.sqrt(64 - 2 * 4 * 4))  # 4 m on: v^2 = v0^2 - 2 b d
    assert prof[0, 7] == 0.0 and prof[0, 19] == 0.0  # stopped after 8 m
    assert prof[1, 9] == pytest.approx(np.sqrt(64 + 2 * 2 * 10)) and prof[1, 19] == 12.0


def test_a_clear_road_keeps_the_networks_choice():
    assert checked(scene_with([], ego_speed=8.0), outputs([0.8, 0.2], [8, 8]))[:2] == (0, 8)
    oncoming = scene_with([(40.0, -3.5, np.pi, 8.0, *CAR)], ego_speed=8.0)  # next lane, passes us
    assert checked(oncoming, outputs([0.8, 0.2], [8, 8]))[:2] == (0, 8)


def test_a_parked_car_on_the_best_path_makes_it_drive_around_or_stop():
    parked = scene_with([(14.0, 0.0, 0.0, 0.0, *CAR)], ego_speed=8.0)
    a, k, note = checked(parked, outputs([0.8, 0.2], [8, 8]))
    assert (a, k) == (1, 8) and "anchor 0 at 8.0 m/s collides" in note  # the left path at its own best speed
    # the left lane is taken too (a car standing there): no path is free at speed; the best-scored candidate
    # that stops in time is the straight anchor slowed down (from 8 m/s at 4 m/s^2 the ego stops in 8 m, its
    # front 10.3 m short of the parked car at speeds up to the ones that keep it out of reach in 2 s)
    both = scene_with([(14.0, 0.0, 0.0, 0.0, *CAR), (14.0, -3.5, 0.0, 0.0, *CAR)], ego_speed=8.0)
    a, k, note = checked(both, outputs([0.8, 0.2], [8, 8]))
    assert a == 0 and k < 8 and "every candidate" not in note
    when = collision_times(both, STRAIGHT[None], ramp_profiles(STRAIGHT[None], 8.0, SPEEDS[[k]], 2.0, 4.0), 2.0)
    assert np.isinf(when[0])


def test_when_every_candidate_collides_the_latest_collision_drives():
    # a car 4 m ahead of our bumper closing at 10 m/s head-on in our lane and one in the left lane: nothing avoids
    # them; braking hardest on the best anchor postpones the contact longest
    scene = scene_with([(9.0, 0.0, np.pi, 10.0, *CAR), (9.0, -3.5, np.pi, 10.0, *CAR)], ego_speed=8.0)
    a, k, note = checked(scene, outputs([0.8, 0.2], [8, 8]))
    assert k == 0 and "every candidate does" in note


def test_unstall_drives_a_cleared_candidate_after_standing_and_never_at_a_red_light():
    """The network asks to stand (speed index 0 on both anchors) on a clear road: with unstall 2 s the plain
    choice stands until the ego has stood 2 s, then the best-scored candidate of >= 2 m/s that the check clears
    drives (the likelier straight anchor; its speeds beyond the peak tie, the slowest first: 2 m/s). A walker
    standing 6 m ahead on the straight path (reached in the 3 s horizon: 1 s to 2 m/s, then 2 m/s) leaves the
    left anchor; walkers on both paths, or a red light 10 m
    ahead, keep it standing; moving restarts the count."""
    stand = outputs([0.8, 0.2], [0, 0])
    walker = (6.0, 0.0, 0.0, 0.0, 0.6, 0.6, AgentKind.PEDESTRIAN)
    left_walker = (5.5, -3.0, 0.0, 0.0, 0.6, 0.6, AgentKind.PEDESTRIAN)
    for agents, light, want in (([], (-1, np.inf), (0, 2)), ([walker], (-1, np.inf), (1, 2)),
                                ([walker, left_walker], (-1, np.inf), (0, 0)), ([], (0, 10.0), (0, 0))):
        pol = checker(3.0, unstall=2.0)
        scene = scene_with(agents, ego_speed=0.0, light=light)
        assert checked(scene, stand, t=0.0, pol=pol)[:2] == (0, 0)  # stood 0 s
        assert checked(scene, stand, t=1.9, pol=pol)[:2] == (0, 0)  # 1.9 s
        a, k, note = checked(scene, stand, t=2.0, pol=pol)
        assert (a, k) == want, (agents, light)
        assert note.startswith(" (unstalled: stood 2.0 s") == (want != (0, 0))
    pol = checker(3.0, unstall=2.0)
    checked(scene_with([], ego_speed=0.0), stand, t=0.0, pol=pol)
    checked(scene_with([], ego_speed=3.0), stand, t=1.0, pol=pol)  # it moved: the count restarts
    assert checked(scene_with([], ego_speed=0.0), stand, t=2.5, pol=pol)[:2] == (0, 0)  # stood 0 s
    assert checked(scene_with([], ego_speed=0.0), stand, t=4.5, pol=pol)[:2] == (0, 2)  # stood 2.0 s
    with pytest.raises(ValueError, match="unstall"):
        CandidateCheck(horizon=0.0, unstall=2.0)


def test_unstall_also_drives_where_the_check_replaced_a_vetoed_plan_by_standing():
    """The network asks to drive straight at 4 m/s into a car standing 7 m ahead; the check's replacement stands
    (the best-scored safe candidate: the left anchor at 0 m/s). After 2 s of standing the unstall drives the left
    anchor at 2 m/s, and keeps driving it while the ego creeps below moving speed (0.3 m/s). Before session 23 the
    unstall judged the network's own 4 m/s, never saw a stand, and the ego stood for good (or, on the road, went
    back and forth between the standing replacement and the unstall tick by tick)."""
    out = outputs([0.99, 0.01], [4, 0])
    pol = checker(3.0, unstall=2.0)
    car = [(7.0, 0.0, 0.0, 0.0, *CAR)]
    a, k, note = checked(scene_with(car, ego_speed=0.0), out, t=0.0, pol=pol)
    assert (a, k) == (1, 0) and note.startswith(" (checked: anchor 0 at 4.0 m/s collides in 1.6 s")
    assert checked(scene_with(car, ego_speed=0.0), out, t=1.9, pol=pol)[:2] == (1, 0)
    a, k, note = checked(scene_with(car, ego_speed=0.0), out, t=2.0, pol=pol)
    assert (a, k) == (1, 2) and note.startswith(" (unstalled: stood 2.0 s, anchor 1 at 2.0 m/s")
    assert checked(scene_with(car, ego_speed=0.3), out, t=2.05, pol=pol)[:2] == (1, 2)


def test_the_check_validates_its_settings():
    with pytest.raises(ValueError, match="horizon"):
        CandidateCheck(horizon=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        CandidateCheck(horizon=1.0, top_k=0)


def test_the_check_takes_the_committed_planner_around_a_parked_car_it_hits_without(tmp_path):
    """Closed loop, the committed il on a validation route (results/takead/suite_p3.xml, ParkedObstacle_0 on
    Proc3, eval seed 0): plain decoding hits the parked car (measured: 1 vehicle collision, DS 60); with the
    3 s check the same network drives around it (DS 100, no collision)."""
    from pathlib import Path

    from drivesim.evaluation.runner import run_route
    from drivesim.maps import TownLoader
    from drivesim.policies import make_policy
    from drivesim.routes.xml import parse_routes

    suite = Path(__file__).resolve().parents[1] / "results/takead/suite_p3.xml"
    spec = next(r for r in parse_routes(suite).routes if r.route_id == "ParkedObstacle_0")
    g = TownLoader(None).load(spec.town)

    def run(check):
        pol = make_policy("il", 1, g=g, **({"check": check} if check else {}))
        return run_route(g, spec, pol, seed=0), pol

    plain, _ = run(0.0)
    assert len(plain.record["infractions"]["collisions_vehicle"]) >= 1
    checked_ep, pol = run(3.0)
    assert not checked_ep.record["infractions"]["collisions_vehicle"]
    assert checked_ep.record["scores"]["score_composed"] > plain.record["scores"]["score_composed"] + 20
    assert pol.vetoed[0] > 0  # the check did replace the network's choice on some ticks


def test_shadow_mode_collects_the_checked_planner_and_takes_over_only_where_the_check_fails(tmp_path):
    """`collect --takeover --driver il --driver-check 3.0` (what `train takead --check` drives): on the same
    validation route the plain il is taken over 2 times for a predicted collision (measured), the checked il never
    for one (its own check vetoes those plans first: `driver_vetoed` > 0), so there are fewer takeovers; a check on
    a driver that is not a learned planner is refused by name, and so is an unstall without the check (collect and
    `train takead` alike)."""
    from pathlib import Path

    from drivesim.dataset import CollectConfig, collect

    suite = str(Path(__file__).resolve().parents[1] / "results/takead/suite_p3.xml")

    def shadow(check):
        idx = collect(CollectConfig(routes=suite, out=str(tmp_path / f"c{check}"), driver="il", driver_check=check,
                                    takeover=True, takeover_steer=0.0, route_ids=["ParkedObstacle_0"], branches=0,
                                    b2d=False), log=lambda *_: None)
        return idx["episodes"][0]

    plain, checked = shadow(0.0), shadow(3.0)
    assert plain["takeovers"]["causes"].get("PREDICTED_COLLISION", 0) >= 2 and "driver_vetoed" not in plain
    assert checked["takeovers"]["causes"].get("PREDICTED_COLLISION", 0) == 0
    assert checked["takeovers"]["count"] < plain["takeovers"]["count"]
    assert checked["driver_vetoed"] > 0
    with pytest.raises(ValueError, match="--driver-check"):
        collect(CollectConfig(routes=suite, out=str(tmp_path / "r"), driver="rule", driver_check=3.0, takeover=True))
    with pytest.raises(ValueError, match="--driver-unstall 5.0: .* needs --driver-check"):
        collect(CollectConfig(routes=suite, out=str(tmp_path / "u"), driver="il", driver_unstall=5.0, takeover=True))
    from drivesim.learn.takead import TakeADConfig

    with pytest.raises(ValueError, match="--unstall 5.0: .* give --check too"):
        TakeADConfig(init="models/il/planner.onnx", unstall=5.0)
