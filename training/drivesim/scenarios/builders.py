"""Scenario builders, written from the behaviour CARLA's scenario_runner classes describe for each type, at the
route's trigger point with the route's typed parameters (`distance` [m] ahead of the trigger, `direction`
left/right, speeds in km/h as in the route files). Geometry is the CARLA frame; "right" of a heading yaw is
(-sin yaw, cos yaw).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..maps.lanegraph import LaneGraph
from ..routes.planner import DenseRoute, plan_route
from ..routes.xml import RouteError, RouteSpec, ScenarioSpec
from ..sim.flows import FLOW_SLOTS, Flows
from ..sim.perturb import Perturbations
from ..sim.script import Script
from ..sim.state import EGO, AgentKind, Behavior, SimState

CAR = (4.6, 1.9)  # [m]
CONE = (0.4, 0.4)
SIGN = (0.6, 1.6)  # construction warning sign / barrier
BIKE = (1.8, 0.7)
WALKER = (0.5, 0.5)
CONTAINER = (6.0, 2.5)  # static.prop.container, the blocker of DynamicObjectCrossing
DOOR = (1.0, 0.25)  # an open car door, across the lane's edge


@dataclass
class ActorSpec:
    kind: AgentKind
    behavior: Behavior
    x: float
    y: float
    yaw: float
    size: tuple[float, float]
    lane: int = -1  # lane + s for obstacles standing in a lane (IDM traffic queues behind them)
    s: float = 0.0
    script: dict = field(default_factory=dict)  # Script fields for SCRIPTED actors; "path": (N, 2)


@dataclass
class FlowSpec:
    """An actor flow (sim/flows.py): vehicles from src (lane, s) along the lane path to the sink."""

    src_lane: int
    src_s: float
    src_xy: np.ndarray
    sink_xy: np.ndarray
    speed: float  # [m/s]
    gap: tuple[float, float]  # [m] between consecutive vehicles
    path_lanes: list[int]
    num_lanes: int  # of the map (the path is a lane mask)
    kind: AgentKind = AgentKind.VEHICLE
    size: tuple[float, float] = CAR


def right_of(yaw: float) -> np.ndarray:
    return np.array([-np.sin(yaw), np.cos(yaw)])


def side_sign(direction: object) -> float:
    return -1.0 if str(direction).lower() == "left" else 1.0


def trigger_index(route: DenseRoute, spec: ScenarioSpec) -> int:
    return int(np.argmin(np.hypot(route.xy[:, 0] - spec.trigger[0], route.xy[:, 1] - spec.trigger[1])))


def ahead(route: DenseRoute, i0: int, distance: float) -> int:
    """Route index `distance` metres (along the route) after index i0, clipped to the route's end."""
    return int(min(np.searchsorted(route.cum_s, route.cum_s[i0] + distance), len(route) - 1))


def _pose(route: DenseRoute, i: int) -> tuple[np.ndarray, float, int]:
    return route.xy[i].astype(np.float64), float(route.yaw[i]), int(route.lane[i])


def _km_h(v, default: float) -> float:
    try:
        return float(v) / 3.6
    except (TypeError, ValueError):
        return default


def _lane_s(g: LaneGraph, lane: int, xy: np.ndarray) -> float:
    pts = g.lane_points(lane)
    k = int(np.argmin(np.hypot(pts[:, 0] - xy[0], pts[:, 1] - xy[1])))
    return float(k * g.lane_ds[lane])


# ----------------------------------------------------------------------------------------- obstacles
def parked_obstacle(g, route, spec, rng) -> list[ActorSpec]:
    """ParkedObstacle(+TwoWays): a parked vehicle in the ego lane, towards `direction`, `distance` ahead."""
    i = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 40.0)))
    p, yaw, lane = _pose(route, i)
    p = p + right_of(yaw) * side_sign(spec.params.get("direction", "right")) * 0.5
    return [ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, *p, yaw, CAR, lane, _lane_s(g, lane, p))]


def construction(g, route, spec, rng) -> list[ActorSpec]:
    """ConstructionObstacle(+TwoWays): a warning sign across the lane and a taper of cones closing it."""
    i0 = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 40.0)))
    p, yaw, lane = _pose(route, i0)
    w = float(g.lane_width[lane])
    out = [ActorSpec(AgentKind.STATIC, Behavior.STATIC, *p, yaw + np.pi / 2, SIGN, lane, _lane_s(g, lane, p))]
    for k in range(6):  # cones: a diagonal across the lane, then a line along it
        j = ahead(route, i0, 2.0 + 2.0 * k)
        q, qyaw, _ = _pose(route, j)
        off = (0.5 - min(k, 3) / 3.0) * w * 0.8
        c = q + right_of(qyaw) * off
        out.append(ActorSpec(AgentKind.STATIC, Behavior.STATIC, *c, qyaw, CONE))
    return out


def accident(g, route, spec, rng) -> list[ActorSpec]:
    """Accident(+TwoWays): a police car and two crashed vehicles blocking the lane."""
    i0 = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 40.0)))
    out = []
    for k, (d, off, dyaw) in enumerate([(0.0, 0.3, 0.0), (7.0, -0.2, 0.5), (12.0, 0.4, -0.3)]):
        p, yaw, lane = _pose(route, ahead(route, i0, d))
        p = p + right_of(yaw) * off
        out.append(ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, *p, yaw + dyaw, CAR, lane if k == 0 else -1,
                             _lane_s(g, lane, p)))
    return out


def hazard_at_side_lane(g, route, spec, rng) -> list[ActorSpec]:
    """HazardAtSideLane(+TwoWays): two bicycles riding slowly along the right edge of the ego lane ahead, for
    `bicycle_drive_distance` metres at `bicycle_speed` km/h, then leaving the scene."""
    i0 = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 40.0)))
    v = _km_h(spec.params.get("bicycle_speed"), 3.0)
    drive = float(spec.params.get("bicycle_drive_distance", 60.0))
    out = []
    for d in (0.0, 6.0):
        a = ahead(route, i0, d)
        b = ahead(route, a, drive)
        idx = np.linspace(a, b, 12).astype(int)
        w = g.lane_width[route.lane[idx]]
        path = route.xy[idx] + np.stack([right_of(y) for y in route.yaw[idx]]) * (w / 2 - 0.6)[:, None]
        out.append(ActorSpec(AgentKind.CYCLIST, Behavior.SCRIPTED, *path[0], float(route.yaw[a]), BIKE,
                             script={"path": path, "trigger": (0.0, 0.0, -1.0), "wait_speed": v, "go_speed": v,
                                     "accel": 2.0, "end_vanish": True}))
    return out


def vehicle_opens_door(g, route, spec, rng) -> list[ActorSpec]:
    """VehicleOpensDoorTwoWays: a vehicle parked at the right edge; its door opens into the lane when the ego
    comes within 15 m."""
    i = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 40.0)))
    p, yaw, lane = _pose(route, i)
    w = float(g.lane_width[lane])
    car = p + right_of(yaw) * (w / 2 + 0.3)
    door = car - right_of(yaw) * (CAR[1] / 2 + DOOR[1] / 2 + 0.3)
    door_box = ActorSpec(AgentKind.STATIC, Behavior.SCRIPTED, *door, yaw, (DOOR[0], 0.9),
                         script={"path": door[None], "trigger": (*door, 15.0), "appear": True})
    return [ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, *car, yaw, CAR), door_box]


# ------------------------------------------------------------------------------------- emergency brake
def hard_break_route(g, route, spec, rng) -> list[ActorSpec]:
    """HardBreakRoute: a lead vehicle enters 20 m ahead of the ego at the trigger, drives at 70 % of the
    speed limit, brakes hard to a stop 3 s later (7 m/s^2; the brake phase lasts 4 s, so it stands ~3 s), then
    drives on for the rest of its 250 m and leaves."""
    i0 = trigger_index(route, spec)
    a = ahead(route, i0, 20.0)
    idx = np.linspace(a, ahead(route, a, 250.0), 16).astype(int)
    v = 0.7 * float(g.lane_speed_limit[route.lane[a]])
    p, yaw, _ = _pose(route, a)
    return [ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *p, yaw, CAR,
                      script={"path": route.xy[idx], "trigger": (*route.xy[i0], 6.0), "appear": True,
                              "wait_speed": 0.0, "go_speed": v, "accel": 7.0, "brake_at": 3.0, "hold": 4.0,
                              "start_speed": v, "end_vanish": True})]


def _crossing(route, i: int, direction, angle_deg: float, width_each_side: float, start_offset: float):
    """A straight crossing path over the route at index i, from the `direction` side to the other side."""
    p, yaw, _ = _pose(route, i)
    sgn = side_sign(direction)
    r = right_of(yaw) * sgn
    fwd = np.array([np.cos(yaw), np.sin(yaw)])
    tilt = np.tan(np.deg2rad(angle_deg))
    start = p + r * start_offset
    end = p - r * width_each_side
    start = start + fwd * tilt * start_offset
    return start, end


def dynamic_object_crossing(g, route, spec, rng, blocker=CONTAINER, kind=AgentKind.STATIC) -> list[ActorSpec]:
    """DynamicObjectCrossing: a blocker at the `direction` roadside `distance` ahead hides a pedestrian who walks
    across the road (at `crossing_angle`) when the ego comes within ~22 m."""
    i = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 40.0)))
    p, yaw, lane = _pose(route, i)
    w = float(g.lane_width[lane])
    sgn = side_sign(spec.params.get("direction", "right"))
    r = right_of(yaw) * sgn
    block = p + r * (w / 2 + blocker[1] / 2 + 0.5)
    start, end = _crossing(route, ahead(route, i, blocker[0] / 2 + 1.0), spec.params.get("direction", "right"),
                           float(spec.params.get("crossing_angle", 0.0)), w * 1.5 + 2.0, w / 2 + blocker[1] + 1.0)
    walker = ActorSpec(AgentKind.PEDESTRIAN, Behavior.SCRIPTED, *start, yaw - np.pi / 2 * sgn, WALKER,
                       script={"path": np.stack([start, end]), "trigger": (*p, 22.0), "wait_speed": 0.0,
                               "go_speed": 2.0, "accel": 4.0})
    return [ActorSpec(kind, Behavior.STATIC, *block, yaw, blocker), walker]


def parking_crossing_pedestrian(g, route, spec, rng) -> list[ActorSpec]:
    """ParkingCrossingPedestrian: a pedestrian steps out from behind a car parked at the roadside."""
    return dynamic_object_crossing(g, route, spec, rng, blocker=CAR, kind=AgentKind.VEHICLE)


def static_cut_in(g, route, spec, rng) -> list[ActorSpec]:
    """StaticCutIn: a queue of stopped vehicles beside the ego lane (`direction` side) `distance` ahead; when the
    ego comes within 20 m, the one in front of it cuts into the ego lane and drives on slowly (60 m, then leaves)."""
    i0 = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 40.0)))
    sgn = side_sign(spec.params.get("direction", "right"))
    out = []
    for k, d in enumerate((0.0, 7.0, 14.0)):
        p, yaw, lane = _pose(route, ahead(route, i0, d))
        w = float(g.lane_width[lane])
        q = p + right_of(yaw) * sgn * w
        if k < 2:
            out.append(ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, *q, yaw, CAR))
            continue
        j = ahead(route, i0, d)
        idx = np.linspace(j, ahead(route, j, 60.0), 12).astype(int)
        path = route.xy[idx].astype(np.float64).copy()
        shift = np.clip(1.0 - (route.cum_s[idx] - route.cum_s[j]) / 12.0, 0.0, 1.0)  # merge over 12 m
        path += np.stack([right_of(y) for y in route.yaw[idx]]) * (sgn * w * shift)[:, None]
        out.append(ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *q, yaw, CAR,
                             script={"path": path, "trigger": (*q, 20.0), "wait_speed": 0.0, "go_speed": 5.0,
                                     "accel": 3.0, "end_vanish": True}))
    return out


def _junction_after(g: LaneGraph, route: DenseRoute, i0: int) -> tuple[int, int] | None:
    """(first, last) route index of the first junction at or after i0."""
    inj = g.lane_junction[route.lane] >= 0
    idx = np.flatnonzero(inj[i0:])
    if not len(idx):
        return None
    a = i0 + int(idx[0])
    b = a
    while b + 1 < len(route) and inj[b + 1]:
        b += 1
    return a, b


def _past_junction(g, route, spec, metres: float):
    """The next junction after the trigger (first, last route index) and the route point `metres` past its exit:
    (junction, index, position, yaw, lane width), or None when the route has no junction after the trigger."""
    j = _junction_after(g, route, trigger_index(route, spec))
    if j is None:
        return None
    i = ahead(route, j[1], metres)
    p, yaw, lane = _pose(route, i)
    return j, i, p, yaw, float(g.lane_width[lane])


def pedestrian_crossing(g, route, spec, rng) -> list[ActorSpec]:
    """PedestrianCrossing: a group of three pedestrians crosses the road just after the next junction when the
    ego approaches it."""
    at = _past_junction(g, route, spec, 4.0)
    if at is None:
        return []
    j, i, p, yaw, w = at
    out = []
    for k in range(3):
        start, end = _crossing(route, i, "left", 0.0, w * 1.5 + 2.0, w * 1.5 + 1.5 + 0.8 * k)
        out.append(ActorSpec(AgentKind.PEDESTRIAN, Behavior.SCRIPTED, *start, yaw + np.pi / 2, WALKER,
                             script={"path": np.stack([start, end]), "trigger": (*route.xy[j[0]], 25.0),
                                     "wait_speed": 0.0, "go_speed": 1.3 + 0.1 * k, "accel": 2.0}))
    return out


def blocked_intersection(g, route, spec, rng) -> list[ActorSpec]:
    """BlockedIntersection: a vehicle stands in the route's exit lane just after the next junction; it clears
    8 s after the ego comes within 15 m of it."""
    j = _junction_after(g, route, trigger_index(route, spec))
    if j is None:
        return []
    i = ahead(route, j[1], 6.0)
    p, yaw, lane = _pose(route, i)
    return [ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *p, yaw, CAR,
                      script={"path": p[None], "trigger": (*p, 15.0), "vanish_after": 8.0})]


def opposite_vehicle_running_red_light(g, route, spec, rng) -> list[ActorSpec]:
    """OppositeVehicleRunningRedLight / OppositeVehicleTakingPriority: a vehicle from the `direction` side crosses
    the next junction at 10 m/s, timed to meet the ego (it starts when the ego is ~30 m from the junction)."""
    j = _junction_after(g, route, trigger_index(route, spec))
    if j is None:
        return []
    mid = (j[0] + j[1]) // 2
    start, end = _crossing(route, mid, spec.params.get("direction", "right"), 0.0, 40.0, 40.0)
    yaw = float(np.arctan2(*(end - start)[::-1]))
    return [ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *start, yaw, CAR,
                      script={"path": np.stack([start, end]), "trigger": (*route.xy[j[0]], 30.0),
                              "wait_speed": 0.0, "go_speed": 10.0, "accel": 6.0, "end_vanish": True,
                              "start_speed": 0.0})]


def vehicle_turning_route(g, route, spec, rng, pedestrian=False) -> list[ActorSpec]:
    """VehicleTurningRoute(Pedestrian): as the ego turns at the next junction, a bicycle (a pedestrian) crosses
    the lane the ego turns into, just after the junction."""
    at = _past_junction(g, route, spec, 3.0)
    if at is None:
        return []
    j, i, p, yaw, w = at
    start, end = _crossing(route, i, "right", 0.0, w * 1.5 + 3.0, w * 1.5 + 3.0)
    kind, size, v = (AgentKind.PEDESTRIAN, WALKER, 1.8) if pedestrian else (AgentKind.CYCLIST, BIKE, 4.5)
    hdg = float(np.arctan2(*(end - start)[::-1]))
    return [ActorSpec(kind, Behavior.SCRIPTED, *start, hdg, size,
                      script={"path": np.stack([start, end]), "trigger": (*route.xy[j[0]], 12.0), "wait_speed": 0.0,
                              "go_speed": v, "accel": 3.0, "end_vanish": True})]


def vehicle_turning_route_pedestrian(g, route, spec, rng) -> list[ActorSpec]:
    return vehicle_turning_route(g, route, spec, rng, pedestrian=True)


def parking_cut_in(g, route, spec, rng) -> list[ActorSpec]:
    """ParkingCutIn: a vehicle parked at the `direction` roadside 25 m after the trigger pulls out into the ego
    lane when the ego comes within 20 m, then drives on (60 m, then leaves)."""
    i0 = ahead(route, trigger_index(route, spec), 25.0)
    p, yaw, lane = _pose(route, i0)
    w = float(g.lane_width[lane])
    sgn = side_sign(spec.params.get("direction", "right"))
    q = p + right_of(yaw) * sgn * (w / 2 + CAR[1] / 2 + 0.3)
    idx = np.linspace(i0, ahead(route, i0, 60.0), 12).astype(int)
    path = route.xy[idx].astype(np.float64).copy()
    shift = np.clip(1.0 - (route.cum_s[idx] - route.cum_s[i0]) / 10.0, 0.0, 1.0)
    path += np.stack([right_of(y) for y in route.yaw[idx]]) * (sgn * (w / 2 + CAR[1] / 2 + 0.3) * shift)[:, None]
    return [ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *q, yaw, CAR,
                      script={"path": path, "trigger": (*q, 20.0), "wait_speed": 0.0, "go_speed": 5.0, "accel": 3.0,
                              "end_vanish": True})]


def invading_turn(g, route, spec, rng) -> list[ActorSpec]:
    """InvadingTurn: oncoming vehicles `distance` ahead cut the corner: they drive towards the ego shifted
    `offset` of a lane width into the ego lane (the ego must keep to the right)."""
    i0 = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 60.0)))
    off = float(spec.params.get("offset", 0.25))
    out = []
    for k, d in enumerate((0.0, 18.0, 36.0)):
        a = ahead(route, i0, d)
        idx = np.linspace(a, max(a - 120, 0), 14).astype(int)
        w = g.lane_width[route.lane[idx]]
        # the opposite lane's centre is one lane width to the left; shifted `offset` lane widths back towards us
        path = route.xy[idx] - np.stack([right_of(y) for y in route.yaw[idx]]) * (w * (1.0 - off))[:, None]
        hdg = float(route.yaw[a] + np.pi)
        out.append(ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *path[0], hdg, CAR,
                             script={"path": path, "trigger": (*route.xy[trigger_index(route, spec)], 8.0 + 0.0 * k),
                                     "wait_speed": 0.0, "go_speed": 8.0, "accel": 4.0, "end_vanish": True}))
    return out


def highway_cut_in(g, route, spec, rng) -> list[ActorSpec]:
    """HighwayCutIn: a vehicle from the on-ramp (`other_actor_location`) merges into the ego's lane towards
    `end_location` at 15 m/s, starting when the ego passes the scenario's trigger point."""
    a, b = spec.params.get("other_actor_location"), spec.params.get("end_location")
    if not isinstance(a, tuple) or not isinstance(b, tuple):
        return []
    try:
        d = plan_route(g, RouteSpec("cutin", g.name, np.array([[a[0], a[1], 0.0], [b[0], b[1], 0.0]])))
    except RouteError:
        return []
    idx = np.linspace(0, len(d) - 1, 16).astype(int)
    return [ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *d.xy[0], float(d.yaw[0]), CAR,
                      script={"path": d.xy[idx], "trigger": (*spec.trigger[:2], 10.0), "wait_speed": 0.0, "go_speed": 15.0,
                              "accel": 4.0, "end_vanish": True})]


def yield_to_emergency_vehicle(g, route, spec, rng) -> list[ActorSpec]:
    """YieldToEmergencyVehicle: when the ego passes the trigger point, an emergency vehicle appears `distance`
    metres behind it in its lane at 1.5x the speed limit (sirens on: it wants to pass); it keeps a gap behind
    the ego rather than ramming it; the ego has to move out of its way (the yield criterion in
    metrics/monitor.py counts being held up right behind the ego for 5 s)."""
    i0 = trigger_index(route, spec)
    back = int(max(np.searchsorted(route.cum_s, route.cum_s[i0] - float(spec.params.get("distance", 30.0))), 0))
    idx = np.linspace(back, ahead(route, i0, 300.0), 16).astype(int)
    v = 1.5 * float(g.lane_speed_limit[route.lane[i0]])
    p, yaw, _ = _pose(route, back)
    return [ActorSpec(AgentKind.EMERGENCY, Behavior.SCRIPTED, *p, yaw, (5.2, 2.1),
                      script={"path": route.xy[idx], "trigger": (*route.xy[i0], 3.0), "appear": True, "go_speed": v,
                              "start_speed": v, "accel": 6.0, "end_vanish": True, "follow": True})]


@dataclass
class ControlLossSpec:
    """Control-loss events on the ego (sim/perturb.py): (x, y, radius, duration, steer, throttle) each."""

    events: list[tuple[float, float, float, float, float, float]]


def control_loss(g, route, spec, rng) -> list:
    """ControlLoss: at three points 15, 30 and 45 m after the trigger the ego loses control for 1 s: a random
    steering jolt of 0.1-0.25 either way and throttle cut to 30-80 %."""
    i0 = trigger_index(route, spec)
    ev = []
    for d in (15.0, 30.0, 45.0):
        p = route.xy[ahead(route, i0, d)]
        ev.append((float(p[0]), float(p[1]), 2.0, 1.0, float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.25)),
                   float(rng.uniform(0.3, 0.8))))
    return [ControlLossSpec(ev)]


@dataclass
class EgoStartSpec:
    """Where the ego starts instead of the route's first point (ParkingExit: in the parking lane)."""

    x: float
    y: float
    yaw: float


PARKING_EXIT_SIDE_RUN = 50.0  # [m] the vehicle beside the parked ego drives this far, then leaves
PARKING_EXIT_END = 15.0  # [m] beyond the front vehicle: the lane tests are back on (scenario_runner's end_distance)


def parking_spot(g: LaneGraph, route: DenseRoute, i: int, direction: object, tol: float = 1.0) -> int:
    """Index of the parking-lane point beside route point i on the `direction` side, or -1 if there is none."""
    if not len(g.park_xy):
        return -1
    p, yaw, lane = _pose(route, i)
    sgn = side_sign(direction)
    d = np.hypot(*(g.park_xy - p).T)
    near = np.flatnonzero((d < g.lane_width[lane] / 2 + 3.0) & (g.park_lane == lane))
    if not len(near):
        return -1
    rel = g.park_xy[near] - p
    lat = rel @ right_of(yaw) * sgn
    lon = rel @ np.array([np.cos(yaw), np.sin(yaw)])
    want = g.lane_width[lane] / 2 + g.park_width[near] / 2
    err = np.abs(lat - want) + np.abs(lon)
    k = int(np.argmin(err))
    return int(near[k]) if err[k] < tol else -1


def _along_parking(g: LaneGraph, k0: int, distance: float, tol: float = 1.5) -> int:
    """The parking point about `distance` metres ahead (negative: behind) of parking point k0 along its lane, or -1."""
    yaw = float(g.park_yaw[k0])
    fwd = np.array([np.cos(yaw), np.sin(yaw)])
    rel = g.park_xy - g.park_xy[k0]
    lon, lat = rel @ fwd, rel @ right_of(yaw)
    cand = np.flatnonzero((np.abs(lat) < 1.0) & (np.abs(lon - distance) < tol))
    return int(cand[np.argmin(np.abs(lon[cand] - distance))]) if len(cand) else -1


def parking_exit(g, route, spec, rng) -> list:
    """ParkingExit: the ego starts parked in the parking lane beside the route's first point (at the kerb side of
    it), between a car `front_vehicle_distance` ahead and one `behind_vehicle_distance` behind (centre to centre,
    as scenario_runner measures). A car beside it in the driving lane pulls away and drives 50 m; the ego must
    pull out into the lane behind it. The lane tests are off until the ego is 15 m beyond the front car
    (`lanes_test_window`)."""
    direction = spec.params.get("direction", "right")
    i0 = trigger_index(route, spec)
    k0 = parking_spot(g, route, i0, direction)
    if k0 < 0:
        return []
    front = _along_parking(g, k0, float(spec.params.get("front_vehicle_distance", 20.0)))
    behind = _along_parking(g, k0, -float(spec.params.get("behind_vehicle_distance", 5.0)))
    if front < 0 or behind < 0:
        return []
    sgn = side_sign(direction)

    def kerb(k: int) -> tuple[float, float, float]:  # scenario_runner: (lane width - half the car's width) / 4
        yaw = float(g.park_yaw[k])
        q = g.park_xy[k] + right_of(yaw) * sgn * (float(g.park_width[k]) - CAR[1] / 2) / 4
        return float(q[0]), float(q[1]), yaw

    p, yaw, _ = _pose(route, i0)
    side_path = route.xy[np.linspace(i0, ahead(route, i0, PARKING_EXIT_SIDE_RUN), 12).astype(int)]
    return [EgoStartSpec(*kerb(k0)),
            *(ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, *kerb(k), CAR) for k in (front, behind)),
            ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *p, yaw, CAR,
                      script={"path": side_path, "trigger": (*p, 1e6), "wait_speed": 0.0, "go_speed": 8.0,
                              "accel": 2.5, "end_vanish": True})]


# ------------------------------------------------------------------------------------------- flows
# ------------------------------------------------------------------------ occlusion-critical (DOS-style)
TRUCK = (8.0, 2.6)  # [m] a box truck: the occluder of the DOS variants


def dos_pedestrian_between_parked(g, route, spec, rng) -> list[ActorSpec]:
    """DOSPedestrianBetweenParked: three cars parked nose to tail at the `direction` roadside `distance` ahead,
    1.9 m apart; a pedestrian standing in the gap between the second and the third (hidden by the second from
    an approaching ego) walks across the road when the ego comes within 20 m."""
    i = ahead(route, trigger_index(route, spec), float(spec.params.get("distance", 40.0)))
    p, yaw, lane = _pose(route, i)
    w = float(g.lane_width[lane])
    sgn = side_sign(spec.params.get("direction", "right"))
    out = []
    for d in (0.0, 6.5, 13.0):
        q, qyaw, _ = _pose(route, ahead(route, i, d))
        c = q + right_of(qyaw) * sgn * (w / 2 + CAR[1] / 2 + 0.3)
        out.append(ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, *c, qyaw, CAR))
    k = ahead(route, i, 9.75)
    start, end = _crossing(route, k, spec.params.get("direction", "right"), 0.0, w * 1.5 + 2.0, w / 2 + CAR[1] / 2 + 0.3)
    q, qyaw, _ = _pose(route, k)
    out.append(ActorSpec(AgentKind.PEDESTRIAN, Behavior.SCRIPTED, *start, qyaw - np.pi / 2 * sgn, WALKER,
                         script={"path": np.stack([start, end]), "trigger": (*q, 20.0), "wait_speed": 0.0,
                                 "go_speed": 1.8, "accel": 4.0}))
    return out


def dos_lead_brakes_for_hidden_pedestrian(g, route, spec, rng) -> list[ActorSpec]:
    """DOSLeadBrakesForHiddenPedestrian: when the ego passes the trigger, a lead vehicle appears 18 m ahead of it
    driving at 60 % of the speed limit; a pedestrian walks out from behind a truck parked at the `direction`
    roadside into the lead's lane, and the lead brakes hard (7 m/s^2) 2.5 s after the trigger, stands 4 s, then
    drives on. The ego sees the lead brake; the pedestrian stays hidden behind the truck and the lead."""
    i0 = trigger_index(route, spec)
    a = ahead(route, i0, 18.0)
    v = 0.6 * float(g.lane_speed_limit[route.lane[a]])
    idx = np.linspace(a, ahead(route, a, 200.0), 16).astype(int)
    p, yaw, lane = _pose(route, a)
    w = float(g.lane_width[lane])
    lead = ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *p, yaw, CAR,
                     script={"path": route.xy[idx], "trigger": (*route.xy[i0], 6.0), "appear": True, "wait_speed": 0.0,
                             "go_speed": v, "accel": 7.0, "brake_at": 2.5, "hold": 4.0, "start_speed": v,
                             "end_vanish": True})
    # where the lead stops: 2.5 s at v, then v^2 / (2 * 7) of braking; the pedestrian crosses 6 m beyond
    k = ahead(route, a, 2.5 * v + v * v / 14.0 + 2.3 + 6.0)
    q, qyaw, _ = _pose(route, k)
    sgn = side_sign(spec.params.get("direction", "right"))
    truck = q + right_of(qyaw) * sgn * (w / 2 + TRUCK[1] / 2 + 0.3) - np.array([np.cos(qyaw), np.sin(qyaw)]) * 3.0
    start, end = _crossing(route, k, spec.params.get("direction", "right"), 0.0, w * 1.5 + 2.0, w / 2 + TRUCK[1] + 0.8)
    ped = ActorSpec(AgentKind.PEDESTRIAN, Behavior.SCRIPTED, *start, qyaw - np.pi / 2 * sgn, WALKER,
                    script={"path": np.stack([start, end]), "trigger": (*route.xy[i0], 6.0), "wait_speed": 0.0,
                            "go_speed": 1.3, "accel": 3.0})
    return [lead, ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, *truck, qyaw, TRUCK), ped]


def dos_hidden_red_light_runner(g, route, spec, rng) -> list[ActorSpec]:
    """DOSHiddenRedLightRunner: OppositeVehicleRunningRedLight with two trucks parked at the `direction` corner
    before the junction, hiding the crossing vehicle from the ego until it is nearly in the junction."""
    runner = opposite_vehicle_running_red_light(g, route, spec, rng)
    j = _junction_after(g, route, trigger_index(route, spec))
    if not runner or j is None:
        return []
    sgn = side_sign(spec.params.get("direction", "right"))
    out = []
    for back in (6.0, 16.0):
        k = int(np.searchsorted(route.cum_s, route.cum_s[j[0]] - back))
        q, qyaw, lane = _pose(route, max(k, 0))
        c = q + right_of(qyaw) * sgn * (float(g.lane_width[lane]) / 2 + TRUCK[1] / 2 + 0.3)
        out.append(ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, *c, qyaw, TRUCK))
    return out + runner


DOS_LEFT_TURN_TRIGGER = 12.0  # [m] from the ego's junction entry: the hidden car sets off
DOS_LEFT_TURN_LEAD = 60.0  # [m] before its own junction entry the hidden car starts
DOS_LEFT_TURN_TRUCK_IN = 5.0  # [m] the waiting truck's front is this far into the junction


def dos_occluded_left_turn(g, route, spec, rng) -> list[ActorSpec]:
    """DOSOccludedLeftTurn: the ego turns left at the next junction across a two-lane opposite approach. A truck
    waits to turn left from the opposite inner lane, its front 5 m into the junction, and hides the outer lane
    from the ego; when the ego is 12 m from the junction a car in that outer lane, 60 m before the junction at
    `flow_speed` (default 10 m/s), drives straight through it: across the ego's turn, unseen until late."""
    j = _junction_after(g, route, trigger_index(route, spec))
    if j is None or j[0] == 0 or j[1] + 1 >= len(route):
        return []
    turn = float(np.angle(np.exp(1j * (route.yaw[j[1] + 1] - route.yaw[j[0] - 1]))))
    if turn > -0.6:  # not a left turn (CARLA's frame: yaw grows clockwise, a left turn lowers it)
        return []
    ego_j = int(route.lane[j[0]])
    h_in = float(route.yaw[j[0] - 1])
    J = g.lane_junction[ego_j]

    def heading(lane: int, end: bool) -> float:
        return float(g.pt_yaw[g.lane_start[lane] + (g.lane_npts[lane] - 1 if end else 0)])

    for c in np.flatnonzero(g.lane_junction == J):
        c = int(c)
        preds, succs = g.predecessors(c), g.successors(c)
        if not preds or not succs:
            continue
        pa, sx = preds[0], succs[0]
        inner = int(g.lane_left[pa])
        ha = heading(pa, True)
        if inner < 0 or np.cos(ha - h_in) > -0.9 or np.cos(heading(sx, False) - ha) < 0.9:
            continue  # wanted: an opposite approach, with a lane on its left, going straight through
        into = [k for k in g.successors(inner) if g.lane_junction[k] == J]
        if not into:
            continue
        # the truck on the inner lane's way into the junction (straight on if it can), front 5 m in
        k = max(into, key=lambda k: np.cos(heading(k, True) - ha))
        tx, ty, tyaw = (float(v) for v in g.lane_position(k, DOS_LEFT_TURN_TRUCK_IN - TRUCK[0] / 2))
        # the hidden car: the outer lane from 60 m before the junction (from its predecessor if short), through
        # the junction, 30 m beyond
        approach = g.lane_points(pa)
        if g.lane_length[pa] < DOS_LEFT_TURN_LEAD and g.predecessors(pa):
            approach = np.concatenate([g.lane_points(g.predecessors(pa)[0]), approach])
        cum = np.r_[0.0, np.cumsum(np.hypot(*np.diff(approach, axis=0).T))]
        approach = approach[cum >= cum[-1] - DOS_LEFT_TURN_LEAD]
        beyond = g.lane_points(sx)[: max(int(30.0 / max(float(g.lane_ds[sx]), 0.1)), 2)]
        path = np.concatenate([approach, g.lane_points(c), beyond]).astype(np.float64)
        v = float(spec.params.get("flow_speed", 10.0))
        hyaw = float(np.arctan2(path[1, 1] - path[0, 1], path[1, 0] - path[0, 0]))
        return [ActorSpec(AgentKind.VEHICLE, Behavior.STATIC, tx, ty, tyaw, TRUCK),
                ActorSpec(AgentKind.VEHICLE, Behavior.SCRIPTED, *path[0], hyaw, CAR,
                          script={"path": path, "trigger": (*route.xy[j[0]], DOS_LEFT_TURN_TRIGGER), "appear": True,
                                  "go_speed": v, "start_speed": v, "accel": 3.0, "end_vanish": True})]
    return []


def _gap(spec: ScenarioSpec) -> tuple[float, float]:
    v = spec.params.get("source_dist_interval", (20.0, 40.0))
    return (float(v[0]), float(v[1])) if isinstance(v, tuple) else (float(v), float(v))


def _flow_between(g: LaneGraph, start: np.ndarray, end: np.ndarray, speed: float, gap, kind=AgentKind.VEHICLE,
                  size=CAR) -> FlowSpec | None:
    """A flow from `start` to `end` along the lane graph (None if no lane path joins them)."""
    try:
        d = plan_route(g, RouteSpec("flow", g.name, np.array([[*start[:2], 0.0], [*end[:2], 0.0]])))
    except RouteError:
        return None
    lanes = list(dict.fromkeys(int(x) for x in d.lane))
    return FlowSpec(lanes[0], _lane_s(g, lanes[0], d.xy[0]), d.xy[0].astype(np.float64), d.xy[-1].astype(np.float64),
                    speed, gap, lanes, g.num_lanes, kind, size)


def actor_flow(g, route, spec, rng) -> list:
    """EnterActorFlow, InterurbanActorFlow, InterurbanAdvancedActorFlow, HighwayExit, MergerIntoSlowTraffic(V2),
    CrossingBicycleFlow: a stream of vehicles (bicycles) from `start_actor_flow` to `end_actor_flow` at
    `flow_speed` [m/s], `source_dist_interval` metres apart."""
    a, b = spec.params.get("start_actor_flow"), spec.params.get("end_actor_flow")
    if not isinstance(a, tuple) or not isinstance(b, tuple):
        return []
    bike = spec.type == "CrossingBicycleFlow"
    f = _flow_between(g, np.array(a, float), np.array(b, float), float(spec.params.get("flow_speed", 10.0)),
                      _gap(spec), AgentKind.CYCLIST if bike else AgentKind.VEHICLE, BIKE if bike else CAR)
    return [f] if f is not None else []


def junction_flow(g, route, spec, rng) -> list:
    """(Non)SignalizedJunctionLeftTurn: a flow from the opposite approach goes straight through the ego's next
    junction; ...RightTurn and ...LeftTurnEnterFlow: a flow goes straight through it into the ego's exit lane
    (the traffic the ego turns into). `flow_speed` [m/s], `source_dist_interval` [m]."""
    j = _junction_after(g, route, trigger_index(route, spec))
    if j is None or j[0] == 0 or j[1] + 1 >= len(route):
        return []
    ego_in, ego_j, ego_out = int(route.lane[j[0] - 1]), int(route.lane[j[0]]), int(route.lane[j[1] + 1])
    J = g.lane_junction[ego_j]
    h_in = float(route.yaw[j[0] - 1])
    same_exit = spec.type.endswith("EnterFlow") or spec.type.endswith("RightTurn")
    best = None
    for c in np.flatnonzero(g.lane_junction == J):
        c = int(c)
        preds, succs = g.predecessors(c), g.successors(c)
        if c == ego_j or not preds or not succs or preds[0] == ego_in:
            continue
        pa, sx = preds[0], succs[0]
        ha = float(g.pt_yaw[g.lane_start[pa] + g.lane_npts[pa] - 1])
        hx = float(g.pt_yaw[g.lane_start[sx]])
        straight = np.cos(hx - ha) > 0.9
        if not straight:
            continue
        ok = (sx == ego_out) if same_exit else (np.cos(ha - h_in) < -0.9)
        if ok:
            best = (pa, c, sx)
            break
    if best is None:
        return []
    pa, c, sx = best
    lanes = [pa, c, sx]
    src_lane, src_s = pa, 0.0
    p_pred = g.predecessors(pa)
    if g.lane_length[pa] < 40.0 and p_pred:  # start further upstream so the flow is established in time
        lanes.insert(0, p_pred[0])
        src_lane = p_pred[0]
    src = g.lane_points(src_lane)[0].astype(np.float64)
    sink = g.lane_points(sx)[-1].astype(np.float64)
    return [FlowSpec(src_lane, src_s, src, sink, float(spec.params.get("flow_speed", 10.0)), _gap(spec), lanes,
                     g.num_lanes)]


Builder = Callable[[LaneGraph, DenseRoute, ScenarioSpec, np.random.Generator], list[ActorSpec]]
SCENARIO_BUILDERS: dict[str, Builder] = {
    "ParkedObstacle": parked_obstacle,
    "ParkedObstacleTwoWays": parked_obstacle,
    "ConstructionObstacle": construction,
    "ConstructionObstacleTwoWays": construction,
    "Accident": accident,
    "AccidentTwoWays": accident,
    "HazardAtSideLane": hazard_at_side_lane,
    "HazardAtSideLaneTwoWays": hazard_at_side_lane,
    "VehicleOpensDoorTwoWays": vehicle_opens_door,
    "HardBreakRoute": hard_break_route,
    "DynamicObjectCrossing": dynamic_object_crossing,
    "ParkingCrossingPedestrian": parking_crossing_pedestrian,
    "StaticCutIn": static_cut_in,
    "PedestrianCrossing": pedestrian_crossing,
    "BlockedIntersection": blocked_intersection,
    "OppositeVehicleRunningRedLight": opposite_vehicle_running_red_light,
    "OppositeVehicleTakingPriority": opposite_vehicle_running_red_light,
    "VehicleTurningRoute": vehicle_turning_route,
    "VehicleTurningRoutePedestrian": vehicle_turning_route_pedestrian,
    "ParkingCutIn": parking_cut_in,
    "ParkingExit": parking_exit,
    "InvadingTurn": invading_turn,
    "HighwayCutIn": highway_cut_in,
    "ControlLoss": control_loss,
    "YieldToEmergencyVehicle": yield_to_emergency_vehicle,
    "DOSPedestrianBetweenParked": dos_pedestrian_between_parked,
    "DOSLeadBrakesForHiddenPedestrian": dos_lead_brakes_for_hidden_pedestrian,
    "DOSHiddenRedLightRunner": dos_hidden_red_light_runner,
    "DOSOccludedLeftTurn": dos_occluded_left_turn,
    **{t: actor_flow for t in ("EnterActorFlow", "InterurbanActorFlow",
                               "InterurbanAdvancedActorFlow", "HighwayExit", "MergerIntoSlowTraffic",
                               "MergerIntoSlowTrafficV2", "CrossingBicycleFlow")},
    **{t: junction_flow for t in ("NonSignalizedJunctionLeftTurn", "NonSignalizedJunctionRightTurn",
                                  "NonSignalizedJunctionLeftTurnEnterFlow", "SignalizedJunctionLeftTurn",
                                  "SignalizedJunctionRightTurn", "SignalizedJunctionLeftTurnEnterFlow")},
}
# background-only by definition (the route's junction and its lights/signs are the scenario)
BACKGROUND_TYPES = {"SequentialLaneChange",  # the route itself asks for the lane changes
                    "T_Junction", "VanillaNonSignalizedTurn", "VanillaNonSignalizedTurnEncounterStopsign",
                    "VanillaSignalizedTurnEncounterGreenLight", "VanillaSignalizedTurnEncounterRedLight"}
SIMULATED_TYPES = frozenset(SCENARIO_BUILDERS) | BACKGROUND_TYPES


# Scenarios that switch the Leaderboard's wrong-direction test off (scenario_runner's SwitchWrongDirectionTest)
# while the ego passes their obstacle through the opposite lane.
WRONG_WAY_ALLOWED = frozenset({"ParkedObstacleTwoWays", "ConstructionObstacleTwoWays", "AccidentTwoWays",
                               "HazardAtSideLaneTwoWays", "VehicleOpensDoorTwoWays"})
WRONG_WAY_PAST = 25.0  # [m] beyond the obstacle's end before the test is on again


def wrong_way_window(route: DenseRoute, spec: ScenarioSpec | None) -> tuple[float, float] | None:
    """Route arc lengths (from, to) [m] inside which driving against the traffic direction is allowed: from the
    trigger point to WRONG_WAY_PAST beyond the scenario's obstacles (for HazardAtSideLane, the bicycles' ride)."""
    if spec is None or spec.type not in WRONG_WAY_ALLOWED:
        return None
    s0 = float(route.cum_s[trigger_index(route, spec)])
    extent = float(spec.params.get("bicycle_drive_distance", 60.0)) if spec.type.startswith("HazardAtSideLane") else 15.0
    return s0, s0 + float(spec.params.get("distance", 40.0)) + extent + WRONG_WAY_PAST


def lanes_test_window(route: DenseRoute, spec: ScenarioSpec | None) -> tuple[float, float] | None:
    """Route arc lengths (from, to) [m] inside which the outside-route-lanes test is off altogether (scenario_runner
    deactivates OutsideRouteLanesTest while the ego leaves its parking space in ParkingExit)."""
    if spec is None or spec.type != "ParkingExit":
        return None
    s0 = float(route.cum_s[trigger_index(route, spec)])
    return -np.inf, s0 + float(spec.params.get("front_vehicle_distance", 20.0)) + PARKING_EXIT_END


def build_actors(g: LaneGraph, route: DenseRoute, spec: ScenarioSpec | None, rng: np.random.Generator) -> list[ActorSpec]:
    if spec is None or spec.type not in SCENARIO_BUILDERS:
        return []
    return SCENARIO_BUILDERS[spec.type](g, route, spec, rng)


def place_scenario(state: SimState, e: int, actors: list, first_slot: int = 1) -> int:
    """Write actors (ActorSpec) and flows (FlowSpec: FLOW_SLOTS reserved slots each) into env e from
    `first_slot`; returns how many slots were used (limited by max_agents)."""
    flows = [a for a in actors if isinstance(a, FlowSpec)]
    for st in (a for a in actors if isinstance(a, EgoStartSpec)):
        state.x[e, EGO], state.y[e, EGO], state.yaw[e, EGO] = st.x, st.y, st.yaw
        state.lane[e, EGO], state.s[e, EGO] = -1, 0.0  # the simulator matches the ego to a lane every step
    for c in (a for a in actors if isinstance(a, ControlLossSpec)):
        if state.perturb is None:
            state.perturb = Perturbations.empty(state.num_envs, 3)
        for k, (x, y, r, dur, st, th) in enumerate(c.events[:3]):
            state.perturb.where[e, k] = (x, y, r)
            state.perturb.duration[e, k], state.perturb.steer[e, k], state.perturb.throttle[e, k] = dur, st, th
    actors = [a for a in actors if isinstance(a, ActorSpec)]
    n = _place_actors(state, e, actors, first_slot)
    for f in flows:
        n += _place_flow(state, e, f, first_slot + n)
    return n


def _place_flow(state: SimState, e: int, f: FlowSpec, first_slot: int) -> int:
    A = state.max_agents
    k = min(FLOW_SLOTS, A - first_slot)
    if k <= 0:
        return 0
    if state.flows is None:
        state.flows = Flows.empty(state.num_envs, A, 2, f.num_lanes)
    fl = state.flows
    free = np.flatnonzero(fl.src_lane[e] < 0)
    if not len(free):
        return 0
    i = int(free[0])
    fl.src_lane[e, i], fl.src_s[e, i] = f.src_lane, f.src_s
    fl.src_xy[e, i], fl.sink_xy[e, i] = f.src_xy, f.sink_xy
    fl.speed[e, i], fl.gap_lo[e, i], fl.gap_hi[e, i] = f.speed, f.gap[0], f.gap[1]
    fl.next_gap[e, i] = f.gap[0]
    fl.kind[e, i], (fl.length[e, i], fl.width[e, i]) = f.kind, f.size
    fl.on_path[e, i, f.path_lanes] = True
    fl.rng[e, i] = 12345 + 7919 * e + 104729 * i
    fl.slot_flow[e, first_slot:first_slot + k] = i
    state.valid[e, first_slot:first_slot + k] = False
    state.behavior[e, first_slot:first_slot + k] = Behavior.IDM
    return k


def _place_actors(state: SimState, e: int, actors: list[ActorSpec], first_slot: int = 1) -> int:
    A = state.max_agents
    if any(a.behavior == Behavior.SCRIPTED for a in actors) and state.script is None:
        state.script = Script.empty(state.num_envs, A)
    n = 0
    for a in actors:
        k = first_slot + n
        if k >= A:
            break
        state.x[e, k], state.y[e, k], state.yaw[e, k] = a.x, a.y, a.yaw
        state.length[e, k], state.width[e, k] = a.size
        state.kind[e, k], state.behavior[e, k] = a.kind, a.behavior
        state.lane[e, k], state.s[e, k] = a.lane, a.s
        state.speed[e, k] = 0.0
        state.valid[e, k] = True
        if a.behavior == Behavior.SCRIPTED:
            sc = a.script
            state.script.set_path(e, k, np.asarray(sc["path"], np.float64))
            state.script.trigger[e, k] = sc.get("trigger", (0.0, 0.0, -1.0))
            for f in ("wait_speed", "go_speed", "accel", "brake_at", "hold", "vanish_after"):
                if f in sc:
                    getattr(state.script, f)[e, k] = sc[f]
            state.script.appear[e, k] = bool(sc.get("appear", False))
            # a scenario walker leaves at the end of its walk (scenario_runner destroys it there): standing on the
            # far lane it would hold up the traffic that now stops for it (sim/traffic.py) for good
            state.script.end_vanish[e, k] = bool(sc.get("end_vanish", a.kind == AgentKind.PEDESTRIAN))
            state.script.follow[e, k] = bool(sc.get("follow", False))
            state.desired_speed[e, k] = float(sc.get("go_speed", 0.0))
            state.script.t_act[e, k] = np.inf
            state.valid[e, k] = not state.script.appear[e, k]
            state.speed[e, k] = float(sc.get("start_speed", sc.get("wait_speed", 0.0)))
            state.s[e, k] = 0.0
            state.lane[e, k] = -1  # s is the script's progress, not a lane position
        n += 1
    return n
