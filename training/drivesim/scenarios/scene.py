"""Initial scenes for closed-loop routes: the ego at the route start and background IDM traffic around it.

Background density (documented, the same rule in every town): one vehicle per BACKGROUND_SPACING metres of
every non-junction driving lane within BACKGROUND_RADIUS of the route, at most max_agents - 1 agents, none
within EGO_CLEARANCE of the ego's start. Vehicles want SPEED_FACTOR x the lane's speed limit (CARLA's Traffic
Manager defaults to 30 % below the limit), each with its own random route through the lane graph. A
CYCLIST_FRACTION of them are cyclists (lane followers too, at most CYCLIST_SPEED). Each crosswalk within
BACKGROUND_RADIUS gets a pedestrian with probability PEDESTRIAN_PROB, who walks across it once from a random
point on the kerb (up to 8 m back) and then stands on the far side.
"""

from __future__ import annotations

import numpy as np

from ..maps.lanegraph import LaneGraph
from ..routes.planner import DenseRoute
from ..sim.dynamics import DEFAULT_VEHICLE
from ..sim.state import EGO, AgentKind, Behavior, SimState, empty_state
from ..sim.traffic import GREEN_TIME, YELLOW_TIME, pick_successor
from .builders import ActorSpec, build_actors, place_scenario

BACKGROUND_SPACING = 35.0  # [m] of lane per background vehicle
BACKGROUND_RADIUS = 100.0  # [m] around the route
EGO_CLEARANCE = 12.0  # [m]
SCENARIO_CLEARANCE = 10.0  # [m] no background vehicle spawns this close to a scenario actor
SPEED_FACTOR = (0.65, 0.85)  # fraction of the speed limit wanted by background vehicles
VEHICLE_SIZE = (4.6, 1.9)  # [m] background cars
CYCLIST_SIZE = (1.8, 0.7)  # [m]
CYCLIST_FRACTION = 0.1
CYCLIST_SPEED = 5.0  # [m/s]
PEDESTRIAN_SIZE = (0.5, 0.5)  # [m]
PEDESTRIAN_PROB = 0.5
PEDESTRIAN_SPEED = (1.0, 1.6)  # [m/s]


def place_ego(state: SimState, e: int, route: DenseRoute) -> None:
    state.x[e, EGO], state.y[e, EGO] = route.xy[0]
    state.yaw[e, EGO] = route.yaw[0]
    state.speed[e, EGO] = 0.0
    state.length[e, EGO], state.width[e, EGO] = DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width
    state.kind[e, EGO], state.behavior[e, EGO], state.valid[e, EGO] = AgentKind.VEHICLE, Behavior.CONTROLLED, True
    state.lane[e, EGO], state.s[e, EGO] = route.lane[0], 0.0


def spawn_background(state: SimState, e: int, g: LaneGraph, route_xy: np.ndarray, rng: np.random.Generator,
                     spacing: float = BACKGROUND_SPACING, radius: float = BACKGROUND_RADIUS,
                     first_slot: int = 1, avoid: np.ndarray | None = None) -> int:
    """Fill agent slots first_slot.. of env e with IDM vehicles near the route, none within SCENARIO_CLEARANCE
    of the points `avoid` (scenario actors). Returns how many were placed."""
    A = state.max_agents
    near = np.unique(np.concatenate(g.tree.query_ball_point(route_xy[:: max(len(route_xy) // 50, 1)], r=radius)))
    lanes = np.unique(g.pt_lane[near.astype(np.int64)]) if len(near) else np.zeros(0, np.int64)
    lanes = lanes[g.lane_junction[lanes] < 0]
    spots = []
    for lane in lanes:
        n = int(g.lane_length[lane] // spacing)
        if n <= 0:
            continue
        s = (np.arange(n) + rng.uniform(0.2, 0.8, n)) * spacing
        spots += [(int(lane), float(si)) for si in s]
    if not spots:
        return 0
    spots = [spots[i] for i in rng.permutation(len(spots))]
    start = route_xy[0]
    slot = first_slot
    for lane, s in spots:
        if slot >= A:
            break
        x, y, yaw = g.lane_position(lane, s)
        if np.hypot(x - start[0], y - start[1]) < EGO_CLEARANCE:
            continue
        if avoid is not None and len(avoid) and np.min(np.hypot(avoid[:, 0] - x, avoid[:, 1] - y)) < SCENARIO_CLEARANCE:
            continue
        cyclist = rng.random() < CYCLIST_FRACTION
        state.x[e, slot], state.y[e, slot], state.yaw[e, slot] = x, y, yaw
        state.length[e, slot], state.width[e, slot] = CYCLIST_SIZE if cyclist else VEHICLE_SIZE
        state.kind[e, slot] = AgentKind.CYCLIST if cyclist else AgentKind.VEHICLE
        state.behavior[e, slot], state.valid[e, slot] = Behavior.IDM, True
        state.lane[e, slot], state.s[e, slot] = lane, s
        v0 = g.lane_speed_limit[lane] * rng.uniform(*SPEED_FACTOR)
        v0 = min(v0, CYCLIST_SPEED) if cyclist else v0
        state.desired_speed[e, slot] = v0
        state.speed[e, slot] = v0 * rng.uniform(0.3, 0.8)
        state.rng[e, slot] = rng.integers(0, 2**31)
        state.stop_wait[e, slot] = -1.0
        slot += 1
    nl, r2 = pick_successor(g, state.lane[e, first_slot:slot], state.rng[e, first_slot:slot])
    state.next_lane[e, first_slot:slot], state.rng[e, first_slot:slot] = nl, r2
    return slot - first_slot


def crosswalk_axes(g: LaneGraph) -> tuple[np.ndarray, np.ndarray]:
    """For each crosswalk: the midpoints of its two short edges (C, 2, 2) and its crossing length (C,) [m]."""
    ends, lengths = [], []
    for poly in g.crosswalks():
        p = poly[:-1] if len(poly) > 1 and np.allclose(poly[0], poly[-1]) else poly
        if len(p) < 4:
            continue
        edges = [(p[i], p[(i + 1) % len(p)]) for i in range(len(p))]
        short = sorted(edges, key=lambda ab: np.linalg.norm(ab[1] - ab[0]))[:2]
        a, b = (0.5 * (u + v) for u, v in short)
        ends.append((a, b))
        lengths.append(float(np.linalg.norm(b - a)))
    return np.array(ends).reshape(-1, 2, 2), np.array(lengths)


def spawn_pedestrians(state: SimState, e: int, g: LaneGraph, route_xy: np.ndarray, rng: np.random.Generator,
                      radius: float = BACKGROUND_RADIUS, first_slot: int = 1, max_count: int = 8) -> int:
    """Pedestrians crossing the crosswalks near the route (see the module doc). Returns how many were placed."""
    ends, lengths = crosswalk_axes(g)
    if not len(lengths):
        return 0
    mid = ends.mean(axis=1)
    d = np.min(np.hypot(mid[:, None, 0] - route_xy[None, ::10, 0], mid[:, None, 1] - route_xy[None, ::10, 1]), axis=1)
    slot = first_slot
    for c in np.flatnonzero(d < radius):
        if slot >= state.max_agents or slot - first_slot >= max_count or rng.random() >= PEDESTRIAN_PROB:
            continue
        a, b = ends[c] if rng.random() < 0.5 else ends[c][::-1]
        u = (b - a) / max(lengths[c], 1e-6)
        back = rng.uniform(0.0, 8.0)  # how far back on the kerb the walk starts
        start = a - u * (1.0 + back)
        if np.hypot(*(start - route_xy[0])) < EGO_CLEARANCE:
            continue
        state.x[e, slot], state.y[e, slot], state.yaw[e, slot] = start[0], start[1], np.arctan2(u[1], u[0])
        state.length[e, slot], state.width[e, slot] = PEDESTRIAN_SIZE
        state.kind[e, slot], state.behavior[e, slot], state.valid[e, slot] = (
            AgentKind.PEDESTRIAN, Behavior.WALKER, True)
        state.desired_speed[e, slot] = rng.uniform(*PEDESTRIAN_SPEED)
        state.s[e, slot] = lengths[c] + 2.0 + back  # kerb to kerb, a metre beyond each edge
        state.lane[e, slot] = -1
        slot += 1
    return slot - first_slot


def route_scene(g: LaneGraph, routes: list[DenseRoute], max_agents: int = 64, seed: int = 0,
                background: bool = True, scenarios: list | None = None) -> SimState:
    """One env per route: ego at the start, the route's scenario actors (scenarios[e]: a ScenarioSpec or None),
    background traffic, random traffic-light phases."""

    E = len(routes)
    state = empty_state(E, max_agents, g.num_lights)
    rng = np.random.default_rng(seed)
    for e, r in enumerate(routes):
        place_ego(state, e, r)
        actors = build_actors(g, r, scenarios[e], rng) if scenarios else []
        n = place_scenario(state, e, actors) if actors else 0
        if background:
            avoid = np.array([[a.x, a.y] for a in actors if isinstance(a, ActorSpec)]).reshape(-1, 2)
            n += spawn_pedestrians(state, e, g, r.xy, rng, first_slot=1 + n)
            spawn_background(state, e, g, r.xy, rng, first_slot=1 + n, avoid=avoid)
    cycle = (GREEN_TIME + YELLOW_TIME) * g.light_nslots
    # one random phase per junction (lights of a junction stay coordinated)
    jid = g.light_junction
    uj, inv = np.unique(jid, return_inverse=True) if len(jid) else (np.zeros(0), np.zeros(0, np.int64))
    phase = rng.uniform(0, 1, size=(E, len(uj)))
    state.light_offset = (phase[:, inv] * cycle[None, :]).astype(np.float32) if len(jid) else state.light_offset
    state.validate()
    return state
