"""Scenario route suites: for a map and a list of scenario types, N routes per type in the Leaderboard / Bench2Drive
XML schema (our own files), seeded. Each route is a random route on which the type has a suitable place: a
junction 25-90 m after the trigger for junction types, a same-direction neighbour lane for flows that merge
beside the ego, a highway (>= 80 km/h) for highway types. Parameters are drawn around Bench2Drive's values.
A type that finds no suitable place in `tries` routes is reported, not silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import LaneGraph
from ..routes.generate import random_route
from ..routes.planner import DenseRoute, plan_route
from ..routes.xml import RouteError, ScenarioSpec
from .builders import SCENARIO_BUILDERS, build_actors, parking_spot

JUNCTION_TYPES = {
    "BlockedIntersection", "OppositeVehicleRunningRedLight", "OppositeVehicleTakingPriority", "PedestrianCrossing",
    "VehicleTurningRoute", "VehicleTurningRoutePedestrian", "NonSignalizedJunctionLeftTurn",
    "NonSignalizedJunctionRightTurn", "NonSignalizedJunctionLeftTurnEnterFlow", "SignalizedJunctionLeftTurn",
    "SignalizedJunctionRightTurn", "SignalizedJunctionLeftTurnEnterFlow", "T_Junction", "VanillaNonSignalizedTurn",
    "VanillaNonSignalizedTurnEncounterStopsign", "VanillaSignalizedTurnEncounterGreenLight",
    "VanillaSignalizedTurnEncounterRedLight", "CrossingBicycleFlow", "DOSOccludedLeftTurn"}
BESIDE_FLOW_TYPES = {"EnterActorFlow", "InterurbanActorFlow", "InterurbanAdvancedActorFlow", "MergerIntoSlowTraffic",
                     "MergerIntoSlowTrafficV2", "HighwayExit"}
HIGHWAY_TYPES = {"HighwayCutIn", "HighwayExit", "InterurbanActorFlow", "InterurbanAdvancedActorFlow"}
HIGHWAY_SPEED = 80 / 3.6  # [m/s]
TRIGGER_AT = 30.0  # [m] from the route start


@dataclass
class SuiteReport:
    routes: list
    missing: dict  # type -> why no (or too few) routes


def _params(type_: str, rng: np.random.Generator) -> dict:
    d = {"distance": float(rng.integers(35, 50)), "direction": str(rng.choice(["right", "left"]))}
    if type_ == "ParkingExit":  # Bench2Drive's routes: 9 m front and behind, the kerb on the right
        return {"direction": "right", "front_vehicle_distance": float(rng.integers(8, 11)),
                "behind_vehicle_distance": float(rng.integers(8, 11))}
    if "TwoWays" in type_:
        d["frequency"] = (float(rng.integers(30, 50)), float(rng.integers(90, 190)))
    if type_.startswith("HazardAtSideLane"):
        d.update(bicycle_speed=float(rng.integers(7, 13)), bicycle_drive_distance=float(rng.integers(60, 120)))
    if type_ in ("DynamicObjectCrossing", "ParkingCrossingPedestrian"):
        d["crossing_angle"] = float(rng.integers(0, 13))
        d["direction"] = "right"
    if "Flow" in type_ or "Turn" in type_ or type_ in BESIDE_FLOW_TYPES:
        lo = float(rng.integers(14, 30))
        d.update(flow_speed=float(rng.integers(8, 14)), source_dist_interval=(lo, lo + float(rng.integers(5, 20))))
    if type_ == "InvadingTurn":
        d.update(distance=float(rng.integers(50, 80)), offset=float(rng.uniform(0.2, 0.35)))
    if type_ == "YieldToEmergencyVehicle":
        d["distance"] = float(rng.integers(20, 35))
    return d


def _suitable(g: LaneGraph, d: DenseRoute, type_: str, i0: int) -> tuple[bool, dict]:
    """Whether route d suits the type with the trigger at index i0, and any geometry-dependent parameters."""
    extra: dict = {}
    if type_ in HIGHWAY_TYPES and g.lane_speed_limit[d.lane[i0]] < HIGHWAY_SPEED - 0.1:
        return False, extra
    if type_ in JUNCTION_TYPES:
        inj = np.flatnonzero(g.lane_junction[d.lane][i0:] >= 0)
        if not len(inj) or not 25 <= d.cum_s[i0 + inj[0]] - d.cum_s[i0] <= 90:
            return False, extra
    if type_ in BESIDE_FLOW_TYPES:
        a = int(np.searchsorted(d.cum_s, d.cum_s[i0] - 25.0))
        b = int(min(np.searchsorted(d.cum_s, d.cum_s[i0] + 90.0), len(d) - 1))
        nb = g.lane_left[d.lane[a]]
        if nb < 0 or g.lane_left[d.lane[b]] < 0:
            return False, extra
        shift = lambda k: d.xy[k] - g.lane_width[d.lane[k]] * np.array([np.sin(d.yaw[k]), -np.cos(d.yaw[k])])  # noqa: E731
        sa, sb = shift(a), shift(b)  # the same-direction lane on the left
        extra = {"start_actor_flow": (float(sa[0]), float(sa[1]), 0.0), "end_actor_flow": (float(sb[0]), float(sb[1]), 0.0)}
    if type_ == "CrossingBicycleFlow":  # bicycles cross the ego's next junction on the crossing road
        j0 = i0 + int(np.flatnonzero(g.lane_junction[d.lane][i0:] >= 0)[0])
        J, h_in = g.lane_junction[d.lane[j0]], float(d.yaw[j0 - 1])
        for c in np.flatnonzero(g.lane_junction == J):
            preds, succs = g.predecessors(int(c)), g.successors(int(c))
            if not preds or not succs:
                continue
            ha = float(g.pt_yaw[g.lane_start[preds[0]] + g.lane_npts[preds[0]] - 1])
            hx = float(g.pt_yaw[g.lane_start[succs[0]]])
            if abs(np.cos(ha - h_in)) < 0.3 and np.cos(hx - ha) > 0.9:  # crossing, straight through
                a, b = g.lane_points(preds[0])[0], g.lane_points(succs[0])[-1]
                extra = {"start_actor_flow": (float(a[0]), float(a[1]), 0.0),
                         "end_actor_flow": (float(b[0]), float(b[1]), 0.0)}
                break
        else:
            return False, extra
    if type_ == "YieldToEmergencyVehicle":  # room to make: a same-direction lane beside the ego's for 100 m, as
        # Bench2Drive places it (on a one-lane street the only way out would be the opposite lane)
        b = int(min(np.searchsorted(d.cum_s, d.cum_s[i0] + 100.0), len(d) - 1))
        lanes = d.lane[i0:b + 1]
        if not ((g.lane_left[lanes] >= 0) | (g.lane_right[lanes] >= 0)).all():
            return False, extra
    if type_ == "HighwayCutIn":  # an on-ramp joins at the ego's next junction, into its lane or beside it
        return _on_ramp(g, d, i0)
    if type_ == "ParkingExit":  # the route starts beside a parking space (the trigger is the route's first point)

        return i0 == 0 and parking_spot(g, d, 0, "right") >= 0, extra
    return True, extra


def _on_ramp(g: LaneGraph, d: DenseRoute, i0: int) -> tuple[bool, dict]:
    """HighwayCutIn's place: a junction 40-120 m after the trigger where a lane the route does not take (the
    ramp) leads into the route's lane after the junction or into the lane on its right (an acceleration lane).
    The cut-in vehicle starts 30 m up the ramp and ends 80 m past the junction in the ego's lane."""
    inj = np.flatnonzero(g.lane_junction[d.lane][i0:] >= 0)
    if not len(inj) or not 40 <= d.cum_s[i0 + inj[0]] - d.cum_s[i0] <= 120:
        return False, {}
    j0 = i0 + int(inj[0])
    j1 = j0
    while j1 + 1 < len(d) and g.lane_junction[d.lane[j1 + 1]] >= 0:
        j1 += 1
    if j1 + 1 >= len(d) or d.cum_s[-1] - d.cum_s[j1] < 90.0:
        return False, {}
    after = int(d.lane[j1 + 1])
    taken = set(d.lane[j0:j1 + 1].tolist())
    for c in np.flatnonzero(g.lane_junction == g.lane_junction[d.lane[j0]]):
        if int(c) in taken or not g.predecessors(int(c)):
            continue
        if any(m == after or g.lane_right[after] == m for m in g.successors(int(c))):
            p = g.predecessors(int(c))[0]
            a = g.lane_position(p, max(float(g.lane_length[p]) - 30.0, 0.0))
            b = d.xy[int(np.searchsorted(d.cum_s, d.cum_s[j1] + 80.0))]
            return True, {"other_actor_location": (float(a[0]), float(a[1]), 0.0),
                          "end_location": (float(b[0]), float(b[1]), 0.0)}
    return False, {}


# lane-blocking types: the obstacle and the room to pass it and swing back lie on road, not in a junction
OBSTACLE_TYPES = {"ParkedObstacle", "ParkedObstacleTwoWays", "ConstructionObstacle", "ConstructionObstacleTwoWays",
                  "Accident", "AccidentTwoWays", "VehicleOpensDoorTwoWays", "HazardAtSideLane",
                  "HazardAtSideLaneTwoWays", "DOSPedestrianBetweenParked", "DOSLeadBrakesForHiddenPedestrian"}
OBSTACLE_ROOM = (20.0, 40.0)  # [m] before and beyond the obstacle: the swing out, the obstacle, the swing back


# passed through a same-direction lane (Bench2Drive places them on multi-lane roads); the TwoWays variants
# and the side-lane hazards are passed through the opposite lane or within the lane
SAME_DIRECTION_PASS = {"Accident", "ParkedObstacle", "ConstructionObstacle"}


def _clear_road(g: LaneGraph, d: DenseRoute, i0: int, distance: float, same_direction: bool = False) -> bool:
    """No junction lane on the route from OBSTACLE_ROOM[0] before to OBSTACLE_ROOM[1] beyond the obstacle (and,
    with same_direction, a lane of the same direction on the left all along, to pass through)."""
    s = d.cum_s[i0] + distance
    a = int(np.searchsorted(d.cum_s, s - OBSTACLE_ROOM[0]))
    b = int(np.searchsorted(d.cum_s, s + OBSTACLE_ROOM[1]))
    if b >= len(d) or (g.lane_junction[d.lane[a:b + 1]] >= 0).any():
        return False
    return not same_direction or bool((g.lane_left[d.lane[a:b + 1]] >= 0).all())


def generate_suite(g: LaneGraph, types: list[str], n_per_type: int, seed: int = 0, min_length: float = 250.0,
                   tries: int = 150) -> SuiteReport:

    rng = np.random.default_rng(seed)
    routes, missing = [], {}
    for type_ in types:
        got = 0
        for _ in range(tries):
            if got >= n_per_type:
                break
            spec = random_route(g, rng, f"{type_}_{got}", min_length)
            spec.keypoints = np.round(spec.keypoints, 1)  # as written to XML: the file must plan the same
            try:
                d = plan_route(g, spec)
            except RouteError:
                continue
            i0 = 0 if type_ == "ParkingExit" else int(np.searchsorted(d.cum_s, TRIGGER_AT))
            ok, extra = _suitable(g, d, type_, i0)
            if not ok:
                continue
            x, y = d.xy[i0]
            params = {**_params(type_, rng), **extra}
            if type_ in OBSTACLE_TYPES:  # move the trigger along the route until the obstacle lands on clear road
                dist = float(params.get("distance", 40.0))
                i0 = next((i for i in range(i0, len(d), 5) if d.cum_s[i] < d.length - 150.0
                           and _clear_road(g, d, i, dist, type_ in SAME_DIRECTION_PASS)), -1)
                if i0 < 0:
                    continue
                x, y = d.xy[i0]
            sc = ScenarioSpec(f"{type_}_1", type_, np.array([x, y, 0.0, np.rad2deg(d.yaw[i0])]), params)
            if type_ in SCENARIO_BUILDERS and not build_actors(g, d, sc, np.random.default_rng(0)):
                continue  # e.g. a turn-with-flow type on a route that goes straight at its junction
            spec.scenarios = [sc]
            routes.append(spec)
            got += 1
        if got < n_per_type:
            missing[type_] = f"{got} of {n_per_type} routes: no suitable place on {g.name} in {tries} tries"
    return SuiteReport(routes, missing)
