"""The takeover gate without DDS: every transition of `TakeoverGate` (deadline, invalid input, TTC, predicted
collision, steering disagreement, the expert's wait, hand-back, cold start), the safe stop's minimal-risk
manoeuvre (jerk-limited braking along the path, escalation to an emergency stop) against the vehicle model, and
the gate run offline in the closed loop."""

import dataclasses

import numpy as np
import pytest
from drivesim.sim.dynamics import DEFAULT_VEHICLE, bicycle_step, brake_for_decel
from drivesim.stack.takeover import (
    EXPERT,
    PLANNER,
    SAFE_STOP,
    Cause,
    MrmState,
    TakeoverConfig,
    TakeoverGate,
    mrm_stopping_distance,
)
from test_stack_lib import CAR, scene_with

PATH = np.stack([np.arange(1, 30, dtype=float), np.zeros(29)], 1)
CLEAR = scene_with([], ego_speed=8.0)
GO = (0.5, 0.0, 0.0)


def tick(g, t, wall=None, scene=CLEAR, speed=8.0, cmd=GO, expert=None, expert_speed=None):
    """One tick as the node feeds it: clock, expert (if any; its plan's speed profile at `expert_speed`, when given),
    scene + plan, planner command. Returns decisions."""
    wall = t if wall is None else wall
    out = [g.new_tick(t, wall)]
    if expert_speed is not None:
        g.offer_expert_plan(t, np.full(29, expert_speed))
    if expert is not None:
        out.append(g.offer_expert(t, *expert))
    g.offer_scene(t, scene)
    g.offer_plan(t, PATH, np.full(29, speed))
    if cmd is not None:
        out.append(g.offer_planner(t, *cmd))
    return [d for d in out if d is not None]


def test_a_clear_plan_passes_through_unchanged():
    g = TakeoverGate()
    g.set_ready()
    (d,) = tick(g, 0.05)
    assert d.command == GO and d.controller == PLANNER and d.event is None
    assert g.drove == {PLANNER: 1, EXPERT: 0, SAFE_STOP: 0} and g.history == []


def test_deadline_counts_only_once_ready():
    """Cold start: before the stack is ready a silent planner is not a takeover; after, it is, 0.3 s after the tick."""
    g = TakeoverGate(TakeoverConfig(deadline=0.3))
    assert tick(g, 0.0, wall=100.0, cmd=None) == []
    assert g.poll(100.0 + 5.0) is None  # not ready: nothing, however long
    g.set_ready()
    tick(g, 0.05, wall=200.0, cmd=None)
    assert g.poll(200.29) is None  # within the deadline
    d = g.poll(200.31)
    assert d.event.cause is Cause.MISSED_DEADLINE and d.controller == SAFE_STOP
    # the safe stop's first tick: along the (straight) plan, braking for one tick of the jerk-limited ramp
    assert d.mrm.state is MrmState.COMFORT and d.mrm.path == "plan" and d.mrm.decel == pytest.approx(5.0 * 0.05)
    assert d.command == pytest.approx((0.0, 0.0, brake_for_decel(5.0 * 0.05, 8.0)))
    assert g.poll(200.5) is None  # one command per tick
    # a planner command for the decided tick arrives late: alive, but nothing more is sent
    assert g.offer_planner(0.05, *GO) is None and g.last_ok_t == 0.05


def test_invalid_command_and_unreadable_plan_are_takeovers():
    g = TakeoverGate()
    g.set_ready()
    (d,) = tick(g, 1.0, cmd=(np.nan, 0.0, 0.0))
    assert d.event.cause is Cause.INVALID_MESSAGE and "throttle is nan" in d.event.detail and d.controller == SAFE_STOP
    g2 = TakeoverGate()
    g2.new_tick(1.0, 0.0)
    d = g2.offer_planner(1.0, *GO, invalid="/drive_stack/plan: path[3] is nan")
    assert d.event.cause is Cause.INVALID_MESSAGE and "path[3]" in d.event.detail
    g3 = TakeoverGate()
    g3.new_tick(1.0, 0.0)
    g3.offer_scene(1.0, CLEAR)
    g3.offer_plan(1.0, PATH, np.full(29, np.nan))
    d = g3.offer_planner(1.0, *GO)
    assert d.event.cause is Cause.INVALID_MESSAGE and "speed_profile" in d.event.detail


def test_low_ttc_and_predicted_collision():
    x = 8.0 + 4.6 / 2 + 4.9 / 2  # a stopped car 8 m ahead at 10 m/s: TTC 0.8 s, stopping needs 6.25 m/s^2
    g = TakeoverGate()
    (d,) = tick(g, 2.0, scene=scene_with([(x, 0.0, 0.0, 0.0, *CAR)], ego_speed=10.0), speed=10.0)
    assert d.event.cause is Cause.LOW_TTC and d.controller == SAFE_STOP
    assert d.mrm.state is MrmState.EMERGENCY and d.command[2] == 1.0  # more than a comfortable stop: full brake
    # farther (15 m): TTC 1.5 s is fine, but a plan that keeps 8 m/s into it within the 2 s horizon is not
    g = TakeoverGate(TakeoverConfig(horizon=2.0))
    (d,) = tick(g, 2.0, scene=scene_with([(15.0, 0.0, 0.0, 0.0, *CAR)], ego_speed=8.0), speed=8.0)
    assert d.event.cause is Cause.PREDICTED_COLLISION
    g = TakeoverGate(TakeoverConfig(horizon=2.0))  # the same scene with a stopping plan passes
    (d,) = tick(g, 2.0, scene=scene_with([(15.0, 0.0, 0.0, 0.0, *CAR)], ego_speed=8.0), speed=0.0)
    assert d.event is None and d.controller == PLANNER


def test_a_command_that_comes_before_its_plan_and_scene_is_checked_when_they_arrive():
    """Three topics: under load the planner's command can arrive before the tick's scene and plan. The gate holds
    it and runs the plan check when both are in (CI once saw the ROS stack's LOW_TTC a tick late: that tick had gone
    unchecked); when they never come it is decided without the check after `plan_wait`, before the deadline."""
    x = 8.0 + 4.6 / 2 + 4.9 / 2  # the stopped car of the test above: TTC 0.8 s
    g = TakeoverGate()
    g.new_tick(2.0, 100.0)
    assert g.offer_planner(2.0, *GO) is None  # held: no scene, no plan yet
    assert g.offer_scene(2.0, scene_with([(x, 0.0, 0.0, 0.0, *CAR)], ego_speed=10.0)) is None  # still no plan
    d = g.offer_plan(2.0, PATH, np.full(29, 10.0))
    assert d.event.cause is Cause.LOW_TTC and d.controller == SAFE_STOP and d.t == 2.0
    g = TakeoverGate(TakeoverConfig(plan_wait=0.1, deadline=0.3))
    g.set_ready()
    g.new_tick(2.0, 100.0)
    assert g.offer_planner(2.0, *GO) is None
    assert g.poll(100.05) is None  # within plan_wait
    d = g.poll(100.15)  # nothing came: the command drives, unchecked (the deadline would have been a takeover)
    assert d.controller == PLANNER and d.command == GO and d.event is None
    assert g.poll(100.5) is None and g.history == []
    with pytest.raises(ValueError, match="plan_wait"):
        TakeoverConfig(plan_wait=0.0)


def test_a_command_that_comes_before_its_tick_is_decided_when_the_tick_comes():
    """The clock and the planner's command are different writers' topics: a /clock reader matched late (or a loaded
    executor) can see the command of tick t before tick t itself. Dropped as stale, that tick missed its command
    (the stack's intermittent 'missed 2' at t=0 and 0.05 and a LOW_TTC a tick late); kept, it is decided at the
    tick, checked against the plan and scene like any other, and a command for a tick that never comes is dropped."""
    x = 8.0 + 4.6 / 2 + 4.9 / 2  # a stopped car 8 m ahead at 10 m/s: TTC 0.8 s
    g = TakeoverGate()
    assert g.offer_planner(0.0, *GO) is None  # no tick yet
    assert g.offer_scene(0.0, scene_with([], ego_speed=0.0)) is None
    assert g.offer_plan(0.0, PATH, np.full(29, 5.0)) is None
    d = g.new_tick(0.0, 10.0)
    assert d.controller == PLANNER and d.command == GO and d.t == 0.0 and g.drove[PLANNER] == 1
    assert g.offer_planner(0.05, *GO) is None  # early again: the plan check still runs when its tick comes
    g.offer_scene(0.05, scene_with([(x, 0.0, 0.0, 0.0, *CAR)], ego_speed=10.0))
    g.offer_plan(0.05, PATH, np.full(29, 10.0))
    d = g.new_tick(0.05, 10.05)
    assert d.event.cause is Cause.LOW_TTC and d.controller == SAFE_STOP and d.t == 0.05
    g = TakeoverGate()
    g.new_tick(1.0, 10.0)
    assert g.offer_planner(1.1, *GO) is None  # two ticks ahead: kept through 1.05, dropped when 1.1 never comes
    g.offer_scene(1.05, scene_with([], ego_speed=5.0))
    g.offer_plan(1.05, PATH, np.full(29, 5.0))
    assert g.new_tick(1.05, 10.05) is None
    assert g.new_tick(1.15, 10.15) is None and g._early is None and g.drove[PLANNER] == 0


def test_expert_drives_the_takeover_and_a_late_expert_means_a_safe_stop():
    g = TakeoverGate(TakeoverConfig(duration=1.0, expert_wait=0.1), expert_offered=True)
    ex = (0.1, 0.2, 0.0)
    d = tick(g, 1.0, wall=10.0, cmd=(np.nan, 0.0, 0.0), expert=ex)
    assert d[-1].event.cause is Cause.INVALID_MESSAGE and d[-1].command == ex and d[-1].controller == EXPERT
    # next tick: the takeover holds control, the expert's command arrives after the clock: it is applied then
    assert g.new_tick(1.05, 11.0) is None
    d = g.offer_expert(1.05, *ex)
    assert d.command == ex and d.controller == EXPERT
    # the expert is late: after expert_wait the tick gets a safe stop
    g.new_tick(1.1, 12.0)
    assert g.poll(12.05) is None
    d = g.poll(12.11)
    assert d.controller == SAFE_STOP and d.event is None
    assert d.mrm.state is MrmState.COMFORT and d.command[0] == 0.0 and 0.0 < d.command[2] < 1.0  # the ramp's start
    assert g.offer_expert(1.1, *ex) is None  # too late for this tick


def test_hand_back_needs_the_duration_and_a_healthy_planner():
    g = TakeoverGate(TakeoverConfig(duration=0.2, planner_ok_window=0.151))
    g.set_ready()
    tick(g, 1.0, cmd=(np.nan, 0.0, 0.0))  # takeover at t=1.0, safe stop
    for t in (1.05, 1.1, 1.15):  # within the duration: the gate drives whatever the planner says
        d = tick(g, t)
        assert [x.controller for x in d] == [SAFE_STOP], t
    d = tick(g, 1.2)  # the duration has passed and the planner answered the last ticks: it drives again
    assert [x.controller for x in d] == [PLANNER]
    # a takeover whose planner went silent: no hand-back until it answers again
    g = TakeoverGate(TakeoverConfig(duration=0.1, deadline=0.3))
    g.set_ready()
    tick(g, 0.0, wall=0.0, cmd=None)
    assert g.poll(0.4).event.cause is Cause.MISSED_DEADLINE
    for k, t in enumerate((0.05, 0.1, 0.15, 0.2)):
        d = g.new_tick(t, 1.0 + k)
        assert d.controller == SAFE_STOP, t  # decided at the clock: the planner has not answered for 3 ticks
    d = tick(g, 0.25, wall=5.0)  # it answers (decided already at the clock): a sign of life ...
    assert [x.controller for x in d] == [SAFE_STOP] and g.last_ok_t == 0.25
    d = tick(g, 0.3, wall=6.0)  # ... so at the next tick, the duration long passed, control returns
    assert [x.controller for x in d] == [PLANNER]
    assert [h.cause for h in g.history] == [Cause.MISSED_DEADLINE]


def test_steering_disagreement_is_a_shadow_trigger_when_set():
    ex = (0.5, 0.4, 0.0)
    off = TakeoverGate(expert_offered=True)
    assert tick(off, 1.0, cmd=(0.5, 0.0, 0.0), expert=ex)[-1].controller == PLANNER
    on = TakeoverGate(TakeoverConfig(steer_threshold=0.2), expert_offered=True)
    d = tick(on, 1.0, cmd=(0.5, 0.0, 0.0), expert=ex)[-1]
    assert d.event.cause is Cause.STEER_DISAGREEMENT and d.controller == EXPERT and d.command == ex
    close = TakeoverGate(TakeoverConfig(steer_threshold=0.2), expert_offered=True)
    assert tick(close, 1.0, cmd=(0.5, 0.3, 0.0), expert=ex)[-1].controller == PLANNER
    # at a standstill (0.3 m/s, under steer_min_speed 0.5) a wheel angle moves nothing: no takeover; with
    # steer_min_speed 0 (before session 27) it fires there too
    slow = scene_with([], ego_speed=0.3)
    still = TakeoverGate(TakeoverConfig(steer_threshold=0.2), expert_offered=True)
    assert tick(still, 1.0, scene=slow, cmd=(0.5, 0.0, 0.0), expert=ex)[-1].controller == PLANNER
    anyway = TakeoverGate(TakeoverConfig(steer_threshold=0.2, steer_min_speed=0.0), expert_offered=True)
    d = tick(anyway, 1.0, scene=slow, cmd=(0.5, 0.0, 0.0), expert=ex)[-1]
    assert d.event.cause is Cause.STEER_DISAGREEMENT
    with pytest.raises(ValueError, match="steer_threshold"):
        TakeoverConfig(steer_threshold=-1.0)
    with pytest.raises(ValueError, match="steer_min_speed"):
        TakeoverConfig(steer_min_speed=float("nan"))
    with pytest.raises(ValueError, match="deadline"):
        TakeoverConfig(deadline=float("nan"))


def test_a_planner_that_stands_where_the_expert_drives_is_taken_over_when_stall_time_is_set():
    """STALLED: the ego stands (0 m/s) and holds the brake while the expert would drive off (throttle 0.4); with
    stall_time 1.0 the expert takes over on the tick 1.0 s after the first such tick (ticks of 0.05 s), not before.
    A tick on which the expert brakes too (a red light) starts the count again; off (0) it never fires; a moving
    ego never stalls."""
    hold, ex_go, ex_wait = (0.0, 0.0, 1.0), (0.4, 0.0, 0.0), (0.0, 0.0, 1.0)
    stood = scene_with([], ego_speed=0.0)
    g = TakeoverGate(TakeoverConfig(stall_time=1.0, stall_speed=0.0), expert_offered=True)
    ts = [round(0.05 * k, 2) for k in range(1, 40)]
    fired = None
    for t in ts:
        d = tick(g, t, scene=stood, speed=0.0, cmd=hold, expert=ex_go)[-1]
        if d.event is not None:
            fired = d
            break
        assert d.controller == PLANNER, t
    assert fired is not None and fired.t == pytest.approx(1.05)  # the count starts at 0.05: 1.0 s of standing
    assert fired.event.cause is Cause.STALLED and fired.controller == EXPERT and fired.command == ex_go
    assert "stood 1.00 s" in fired.event.detail
    # the expert waits too at t = 0.5 (e.g. a red light): the count starts again at 0.55 and fires at 1.55
    g = TakeoverGate(TakeoverConfig(stall_time=1.0, stall_speed=0.0), expert_offered=True)
    causes = {}
    for t in ts:
        d = tick(g, t, scene=stood, speed=0.0, cmd=hold, expert=ex_wait if t == 0.5 else ex_go)[-1]
        if d.event is not None:
            causes[t] = d.event.cause
            break
    assert causes == {1.55: Cause.STALLED}
    # another takeover (an invalid command at 0.5 s; the expert drives 2 s) starts the count again: the planner's
    # first tick back is 2.5 s, so the stall fires at 3.5 s, not at once (before the fix: at 2.5 s)
    g = TakeoverGate(TakeoverConfig(stall_time=1.0, stall_speed=0.0), expert_offered=True)
    events = {}
    for t in [round(0.05 * k, 2) for k in range(1, 80)]:
        for d in tick(g, t, scene=stood, speed=0.0, cmd=(float("nan"), 0.0, 0.0) if t == 0.5 else hold, expert=ex_go):
            if d.event is not None:
                events[t] = d.event.cause
        if Cause.STALLED in events.values():
            break
    assert events == {0.5: Cause.INVALID_MESSAGE, 3.5: Cause.STALLED}
    for cfg, scene in ((TakeoverConfig(), stood), (TakeoverConfig(stall_time=1.0), CLEAR)):
        g = TakeoverGate(cfg, expert_offered=True)
        assert all(tick(g, t, scene=scene, cmd=hold, expert=ex_go)[-1].controller == PLANNER for t in ts)
        assert g.history == []
    with pytest.raises(ValueError, match="stall_time"):
        TakeoverConfig(stall_time=-1.0)


def test_a_stall_counts_only_where_the_expert_plans_to_drive_off_not_to_creep():
    """STALLED with stall_speed 2.0 (the default): the ego stands, the expert presses the throttle (0.3) on every
    tick. Where its plan tops out at 0.9 m/s (creeping up a queue to a stop point a few metres ahead; 9 in 10 of
    session 26's STALLED takeovers) nothing fires over 3 s; where it plans to reach 6 m/s the takeover comes 1.0 s
    after the first tick, naming the plan's speed; one creeping tick in between starts the count again; a tick
    whose expert plan was never offered does not count either."""
    hold, ex_creep = (0.0, 0.0, 1.0), (0.3, 0.0, 0.0)
    stood = scene_with([], ego_speed=0.0)
    ts = [round(0.05 * k, 2) for k in range(1, 61)]

    def first_event(speed_at):
        g = TakeoverGate(TakeoverConfig(stall_time=1.0), expert_offered=True)
        for t in ts:
            ds = tick(g, t, scene=stood, speed=0.0, cmd=hold, expert=ex_creep, expert_speed=speed_at(t))
            # (a tick without the expert's plan holds the planner's command for it until plan_wait, then decides)
            d = ds[-1] if ds else g.poll(t + 1.0)
            if d.event is not None:
                return d
        return None

    assert TakeoverConfig().stall_speed == 2.0
    assert first_event(lambda t: 0.9) is None
    d = first_event(lambda t: 6.0)
    assert d.t == pytest.approx(1.05) and d.event.cause is Cause.STALLED and "its plan to 6.0 m/s" in d.event.detail
    assert first_event(lambda t: 0.9 if t == 0.5 else 6.0).t == pytest.approx(1.55)
    assert first_event(lambda t: None if t == 0.5 else 6.0).t == pytest.approx(1.55)
    with pytest.raises(ValueError, match="stall_speed"):
        TakeoverConfig(stall_speed=-1.0)


def test_the_planners_command_waits_for_the_shadow_experts_messages_of_its_tick():
    """In ROS the expert's command and plan race the planner's command. With shadow triggers on, a planner command
    that comes first is held until they arrive (the steering trigger then fires on the tick it belongs to, and
    a stall is counted) or until plan_wait has passed (then decided without them); without shadow triggers, or
    before any expert plan has come, nothing waits for them."""
    ex = (0.5, 0.4, 0.0)
    g = TakeoverGate(TakeoverConfig(steer_threshold=0.2), expert_offered=True)
    assert tick(g, 1.0, cmd=(0.5, 0.0, 0.0)) == []  # held: the expert's command of t=1.0 has not come
    d = g.offer_expert(1.0, *ex)
    assert d.t == 1.0 and d.event.cause is Cause.STEER_DISAGREEMENT and d.command == ex
    late = TakeoverGate(TakeoverConfig(steer_threshold=0.2), expert_offered=True)
    assert tick(late, 1.0, wall=1.0, cmd=(0.5, 0.0, 0.0)) == []
    assert late.poll(1.05) is None  # within plan_wait (0.1 s)
    d = late.poll(1.2)
    assert d.controller == PLANNER and d.command == (0.5, 0.0, 0.0) and d.event is None
    off = TakeoverGate(expert_offered=True)  # no shadow trigger: the expert is not waited for
    assert tick(off, 1.0, cmd=(0.5, 0.0, 0.0))[-1].controller == PLANNER
    # STALLED by the plan's speed waits for the expert's plan once plans come at all
    st = TakeoverGate(TakeoverConfig(stall_time=1.0), expert_offered=True)
    assert tick(st, 1.0, cmd=GO, expert=ex)[-1].controller == PLANNER  # no plan ever offered: decided
    assert tick(st, 1.05, cmd=GO, expert=ex, expert_speed=6.0)[-1].controller == PLANNER
    assert tick(st, 1.1, cmd=GO, expert=ex) == []  # held for this tick's plan
    assert st.offer_expert_plan(1.1, np.full(29, 6.0)).controller == PLANNER
    # steer_min_speed 0: the steering trigger also on a tick decided without its scene (poll after plan_wait)
    blind = TakeoverGate(TakeoverConfig(steer_threshold=0.2, steer_min_speed=0.0), expert_offered=True)
    blind.new_tick(1.0, 1.0)
    blind.offer_expert(1.0, *ex)
    blind.offer_plan(1.0, PATH, np.full(29, 8.0))
    assert blind.offer_planner(1.0, 0.5, 0.0, 0.0) is None
    assert blind.poll(1.2).event.cause is Cause.STEER_DISAGREEMENT


def test_a_shadow_trigger_that_cannot_fire_is_named():
    """The steering and stall triggers need the shadow expert's command; STALLED by the plan's speed needs its plans.
    After 40 ticks without them the gate names what is missing (the monitor logs it once); with them, nothing."""
    def run(cfg, expert=None, expert_speed=None, n=40):
        g = TakeoverGate(cfg)
        for k in range(n):
            tick(g, round(0.05 * (k + 1), 2), wall=0.0, expert=expert, expert_speed=expert_speed)
        return g.inert_triggers()

    assert run(TakeoverConfig(steer_threshold=0.2), n=39) == []
    (msg,) = run(TakeoverConfig(steer_threshold=0.2, stall_time=2.0))
    assert "steer_threshold 0.2, stall_time 2.0 set, but no expert command in 40 ticks" in msg
    (msg,) = run(TakeoverConfig(stall_time=2.0), expert=GO)
    assert "no expert plan in 40 ticks: STALLED never fires" in msg
    assert run(TakeoverConfig(stall_time=2.0, stall_speed=0.0), expert=GO) == []
    assert run(TakeoverConfig(stall_time=2.0), expert=GO, expert_speed=5.0) == []
    assert run(TakeoverConfig()) == []  # no shadow trigger configured (the stack's default): nothing to say


R = 25.0  # [m] radius of the curve (turning towards +y, the ego's right)


def arc(length=40.0):
    """The curve ahead of an ego at (0, 0) heading +x, every metre: (P, 2)."""
    th = np.arange(1.0, length + 1.0) / R
    return np.stack([R * np.sin(th), R * (1.0 - np.cos(th))], 1)


def test_a_silent_planner_mid_curve_means_a_jerk_limited_stop_along_the_curve():
    """No expert: the planner drives a 25 m curve at 10 m/s and falls silent. The safe stop keeps steering along
    the planner's last path (moved by the odometry into each tick's ego frame; the scenes' own route is straight,
    so the curve can only come from the plan), ramps the wanted deceleration at <= mrm_jerk to mrm_decel, and the
    vehicle model decelerates as asked; the car ends STOPPED on the curve, held by full brake."""
    from drivesim.sim.control import PIDController

    cfg = TakeoverConfig(mrm_decel=3.0, mrm_jerk=5.0)
    g = TakeoverGate(cfg)
    g.set_ready()
    pid = PIDController(1)
    sa = np.arctan(2.0 * np.tan(np.arcsin(DEFAULT_VEHICLE.wheelbase / (2 * R))))  # the curve's wheel angle
    x, y, yaw, v, steer_angle, acc = 0.0, 0.0, 0.0, 10.0, sa, 0.0
    world = arc(200.0)
    out, off = [], []  # per safe-stop tick; the distance off the curve [m] after each tick
    for k in range(200):
        t, wall = round(0.05 * k, 3), 100.0 + k
        pose = np.array([x, y, yaw])
        c, s = np.cos(yaw), np.sin(yaw)
        dx, dy = world[:, 0] - x, world[:, 1] - y
        local = np.stack([dx * c + dy * s, -dx * s + dy * c], 1)
        local = local[local[:, 0] > 0][:40]  # the plan: the next 40 m of the curve
        scene = dataclasses.replace(scene_with([], ego_speed=v), ego_pose=pose[None], ego_accel=np.array([acc]))
        ds = [g.new_tick(t, wall)]  # under a takeover the gate decides at the clock (the last scene it has)
        g.offer_scene(t, scene)
        if k < 20:  # the planner drives for 1 s
            g.offer_plan(t, local, np.full(len(local), 10.0))
            ds.append(g.offer_planner(t, *(float(u[0]) for u in pid(local[None], 10.0, v))))
        elif k == 20:
            ds.append(g.poll(wall + 0.31))  # ... then falls silent: MISSED_DEADLINE
        (d,) = [d for d in ds if d is not None and d.command is not None]
        if k >= 20:
            out.append((t, d.mrm.state, d.mrm.decel, d.mrm.path, *d.command, v))
            assert d.controller == SAFE_STOP and d.command[0] == 0.0
        x, y, yaw, v, steer_angle, acc = (float(a) for a in bicycle_step(x, y, yaw, v, steer_angle, *d.command, 0.05))
        off.append(abs(np.hypot(x, y - R) - R))
        if k >= 20:
            out[-1] += (acc,)
    assert g.history[0].cause is Cause.MISSED_DEADLINE and g.history[0].t == pytest.approx(1.0)
    states = [o[1] for o in out]
    comfort = [o for o in out if o[1] is MrmState.COMFORT]
    assert states[0] is MrmState.COMFORT and states[-1] is MrmState.STOPPED and MrmState.EMERGENCY not in states
    assert {o[3] for o in out} == {"plan"}
    # steering along the curve (its wheel angle is sa / max_steer = 0.094), not straight
    steers = np.array([o[5] for o in comfort])
    assert np.all(steers > 0.05) and np.all(np.abs(steers - sa / DEFAULT_VEHICLE.max_steer) < 0.03)
    # on the curve, well into it: no farther off it than the planner's own pure pursuit was (0.43 m inside)
    assert yaw > 0.5 and max(off[20:]) < off[19] + 0.1 < 0.6
    # the wanted deceleration: from the car's (cruising: ~0) to mrm_decel at <= mrm_jerk
    want = np.array([o[2] for o in comfort])
    assert 0.25 <= want[0] < 0.26 and np.all(np.diff(want) <= cfg.mrm_jerk * 0.05 + 1e-9)
    assert want.max() == pytest.approx(cfg.mrm_decel) and np.sum(want == cfg.mrm_decel) > 20
    # ... and the vehicle model's deceleration is the wanted one (brake through its inverse), so its jerk too
    got = np.array([-o[-1] for o in comfort])
    np.testing.assert_allclose(got, want, atol=0.02)  # (the speed the brake is computed for is a tick old)
    assert np.all(np.abs(np.diff(got)) <= cfg.mrm_jerk * 0.05 + 0.02)
    assert v == 0.0 and out[-1][6] == 1.0  # stands, held with full brake
    stop_t = next(o[0] for o in out if o[1] is MrmState.STOPPED)
    v0 = out[0][7]  # the speed at the takeover: a 0.6 s ramp takes 0.9 m/s, 3 m/s^2 the rest down to moving_speed
    assert stop_t == pytest.approx(1.0 + 0.6 + (v0 - 0.9 - cfg.moving_speed) / 3.0, abs=0.1)


def test_a_stopped_obstacle_close_ahead_means_an_emergency_stop_at_once():
    """At 10 m/s a stopped car 12 m ahead (TTC 1.2 s: no LOW_TTC takeover by itself) when the planner sends NaN:
    the comfortable stop needs ~19 m, so the safe stop brakes fully at once (EMERGENCY) and holds it until the car
    stands; 40 m ahead the same takeover is a comfortable stop."""
    gap = 12.0
    near = scene_with([(gap + 4.6 / 2 + 4.9 / 2, 0.0, 0.0, 0.0, *CAR)], ego_speed=10.0)
    assert mrm_stopping_distance(10.0, 0.0, 3.0, 5.0) > gap * 1.5
    g = TakeoverGate()
    (d,) = tick(g, 1.0, scene=near, speed=10.0, cmd=(np.nan, 0.0, 0.0))
    assert d.event.cause is Cause.INVALID_MESSAGE and d.controller == SAFE_STOP
    assert d.mrm.state is MrmState.EMERGENCY and d.command == pytest.approx((0.0, 0.0, 1.0))
    assert g.mrm_state is MrmState.EMERGENCY and d.mrm.decel == DEFAULT_VEHICLE.max_brake
    # the next ticks are decided at the clock, by the last scene (the previous tick's, as the node has it then)
    (d,) = tick(g, 1.05, scene=scene_with([], ego_speed=6.0), speed=6.0)
    assert d.mrm.state is MrmState.EMERGENCY and d.command[2] == 1.0
    (d,) = tick(g, 1.1, scene=scene_with([], ego_speed=0.2), speed=0.0)  # obstacle out of sight: still full brake
    assert d.mrm.state is MrmState.EMERGENCY and d.command[2] == 1.0
    (d,) = tick(g, 1.15, scene=scene_with([], ego_speed=0.0), speed=0.0)
    assert d.mrm.state is MrmState.STOPPED and d.command[2] == 1.0 and g.mrm_state is MrmState.STOPPED
    far = scene_with([(40.0 + 4.6 / 2 + 4.9 / 2, 0.0, 0.0, 0.0, *CAR)], ego_speed=10.0)
    g = TakeoverGate()
    (d,) = tick(g, 1.0, scene=far, speed=10.0, cmd=(np.nan, 0.0, 0.0))
    assert d.mrm.state is MrmState.COMFORT and d.command[2] < 0.1


def test_brake_for_a_deceleration_inverts_the_vehicle_model():
    """brake_for_decel(a, v) applied to the bicycle model (throttle 0) decelerates at a; below the resistances
    (rolling + drag) no brake, above full brake's deceleration full brake. The stopping distance of the ramp
    matches a fine integration."""
    for v in (0.5, 5.0, 13.9, 30.0):
        for a in (1.5, 3.0, 6.0, 8.0):
            b = brake_for_decel(a, v)
            assert 0.0 < b <= 1.0, (v, a)
            *_, vn, _, acc = bicycle_step(0.0, 0.0, 0.0, v, 0.0, 0.0, 0.0, b, 0.01)
            assert float(acc) == pytest.approx(-a, abs=1e-9), (v, a)
    assert brake_for_decel(0.1, 10.0) == 0.0 and brake_for_decel(20.0, 10.0) == 1.0
    np.testing.assert_allclose(brake_for_decel(np.array([3.0, 3.0]), np.array([0.0, 10.0])),
                               [3.0 / 8.0, (3.0 - 0.15 - 0.12) / 8.0])
    assert mrm_stopping_distance(10.0, 3.0, 3.0, 5.0) == pytest.approx(100.0 / 6.0)
    for v, a0 in ((10.0, 0.0), (0.5, 0.0), (10.0, 1.5)):
        dt, s, vk, ak = 1e-4, 0.0, v, a0
        while vk > 0:
            ak = min(ak + 5.0 * dt, 3.0)
            s, vk = s + max(vk - 0.5 * ak * dt, 0.0) * dt, vk - ak * dt
        assert mrm_stopping_distance(v, a0, 3.0, 5.0) == pytest.approx(s, abs=1e-2), (v, a0)


def test_stale_commands_keep_the_planner_alive():
    g = TakeoverGate()
    g.new_tick(1.0, 0.0)
    assert g.offer_planner(0.95, *GO) is None and g.last_ok_t == 0.95
    assert g.offer_planner(0.9, np.nan, 0, 0) is None and g.last_ok_t == 0.95  # invalid stale: not a sign of life
    assert g.offer_planner(1.05, *GO) is None  # from the future: ignored


def test_the_gate_runs_offline_in_the_closed_loop():
    """The same gate in the direct loop (no ROS): perlad on Bench2Drive 24211 (DynamicObjectCrossing) hits the
    pedestrian (DS 50); with the expert in shadow mode the gate sees the time to collision fall under 1 s, the expert drives for
    the 2 s duration and the route is Perfect. The record says who drove how long."""
    from conftest import B2D, MAPS, need_shared
    from drivesim.evaluation.runner import run_route
    from drivesim.maps import TownLoader
    from drivesim.policies import make_policy
    from drivesim.routes.xml import parse_routes

    need_shared()
    spec = next(r for r in parse_routes(B2D).routes if r.route_id == "24211")
    g = TownLoader(MAPS).load(spec.town)
    plain = run_route(g, spec, "perlad", seed=0)
    gated = run_route(g, spec, "perlad", seed=0, gate=TakeoverGate(expert_offered=True), expert=make_policy("expert", 1))
    assert plain.record["scores"]["score_composed"] == pytest.approx(50.0)
    assert gated.record["scores"]["score_composed"] == pytest.approx(100.0)
    tk = gated.record["meta"]["takeovers"]
    assert tk["count"] == len(gated.takeovers) == 1 and tk["causes"] == {"LOW_TTC": 1}  # 0.95 s at 10.9 m/s
    assert tk["seconds"]["expert"] == pytest.approx(2.0) and tk["seconds"]["safe_stop"] == 0.0
    assert tk["seconds"]["planner"] + tk["seconds"]["expert"] == pytest.approx(gated.steps * 0.05)
    assert 3.0 < tk["metres"]["expert"] < 20.0  # 2 s braking for the walker (7.2 m measured)
    assert tk["metres"]["planner"] + tk["metres"]["expert"] == pytest.approx(
        gated.record["meta"]["route_length"], rel=0.1)  # completed: about the route's length, split between them
    from drivesim.metrics.bench2drive import summarize

    s = summarize([gated.record, plain.record | {"meta": {**plain.record["meta"], "takeovers": {
        "count": 0, "causes": {}, "events": [], "seconds": dict.fromkeys(("planner", "expert", "safe_stop"), 0.0),
        "metres": {"planner": 200.0, "expert": 0.0, "safe_stop": 0.0}}}}])["takeovers"]
    assert s["takeovers"] == 1 and s["routes_with_takeovers"] == 1 and s["routes_without_takeover"] == 1
    assert s["driving_score_routes_without_takeover"] == pytest.approx(50.0)  # the policy alone: the expert's 100 is not counted
    assert 0.5 < s["policy_share_of_distance"] < 1.0


def test_a_gate_that_never_triggers_changes_nothing(proc_town):
    from drivesim.evaluation.runner import run_route
    from drivesim.routes.generate import random_routes

    spec = random_routes(proc_town, 1, seed=0, min_length=120.0)[0]
    plain = run_route(proc_town, spec, "rule", seed=0, background=False)  # empty roads: nothing to take over
    idle = run_route(proc_town, spec, "rule", seed=0, background=False, gate=TakeoverGate())
    assert idle.record["meta"]["takeovers"]["count"] == 0
    assert idle.record["scores"] == plain.record["scores"] and idle.steps == plain.steps


def test_a_driver_that_will_not_move_is_driven_by_stall_takeovers_in_the_closed_loop(proc_town):
    """STALLED in the direct loop: the rule planner with an advisory speed cap of 0 (it never drives off) on an
    empty procedural route, the expert in shadow mode. With stall_time 1.0 every takeover is STALLED, the first
    at t = 1.0 s (the ego stands from the first tick, t = 0), and the expert's 2 s turns finish the route;
    the collision triggers alone never hand over (nothing to hit) and the ego does not move."""
    from drivesim.evaluation.runner import run_route
    from drivesim.policies import make_policy
    from drivesim.routes.generate import random_routes

    spec = random_routes(proc_town, 1, seed=0, min_length=60.0)[0]

    def run(stall):
        driver = make_policy("rule", 1, g=proc_town)
        driver.speed_cap = np.zeros(1)
        return run_route(proc_town, spec, "expert", seed=0, background=False, driver=driver,
                         gate=TakeoverGate(TakeoverConfig(stall_time=stall), expert_offered=True),
                         expert=make_policy("expert", 1, g=proc_town))

    on = run(1.0)
    tk = on.record["meta"]["takeovers"]
    assert tk["count"] >= 2 and set(tk["causes"]) == {"STALLED"}
    assert tk["events"][0]["t"] == pytest.approx(1.0)  # measured: 18 takeovers at 1.0, 4.65, 8.3, ... s
    assert on.record["scores"]["score_route"] == pytest.approx(100.0)
    assert tk["metres"]["expert"] > 0.9 * tk["metres"]["planner"] + 50.0  # the expert drove it
    off = run(0.0)
    assert off.record["meta"]["takeovers"]["count"] == 0 and off.record["scores"]["score_route"] < 5.0
