"""Sight lines at junctions: which lanes cross the ego's way through a junction, which of them the ego must give
way to, and whether the ego can see far enough up them. The expert creeps into a junction while it cannot
(ExpertPolicy, "creep"): it has privileged knowledge of what is hidden, but a driver without it must slow
down, and the imitation data should show that.

A conflict lane is a lane of the same junction whose centreline passes within CONFLICT_DIST of the ego's junction
lane and that does not leave from the ego's approach lane. Whether the ego gives way to it depends on how the ego
enters (`gives_way`):

- at a traffic light: only when the ego turns left, to lanes whose light is not red (the oncoming traffic);
- at a stop sign: to every lane not held by a red light (at an all-way stop too: whoever stopped first goes
  first, and someone may not stop);
- uncontrolled: when the ego turns left, to uncontrolled lanes.

Sight is tested with the perception model (`visibility`): car-sized probes every PROBE_STEP metres up each
lane the ego gives way to, from the conflict point back SIGHT_TIME at that lane's speed limit (within the
perception range: what is out of range is not occluded, only far). The view is occluded when a probe is
hidden behind a vehicle or a prop, nearer than the first vehicle the ego sees on that lane (what comes behind a
vehicle must follow it, and the vehicle itself is the speed planner's business).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import LaneGraph
from ..sim.perception import PERCEPTION_RANGE, visibility
from ..sim.state import EGO, KIND, LIGHT, SimState

CONFLICT_DIST = 2.5  # [m] centrelines this close cross or merge
SIGHT_TIME = 4.0  # [s] the ego must see this far up a lane it gives way to, at that lane's speed limit
PROBE_STEP = 4.0  # [m]
PROBE_SIZE = (4.5, 1.8)  # [m] a car's footprint
LEFT_TURN = -0.6  # [rad] heading change through the junction below which the ego turns left (CARLA's frame: yaw
# grows clockwise)


@dataclass(frozen=True)
class Conflict:
    lane: int  # the other junction lane
    u: float  # [m] along the ego's junction lane, where the two first come within CONFLICT_DIST
    s: float  # [m] along the other lane, the same place


_CONFLICTS: dict[tuple[str, int], tuple[Conflict, ...]] = {}


def junction_conflicts(g: LaneGraph, lane: int) -> tuple[Conflict, ...]:
    """The lanes of `lane`'s junction that cross or merge into it (cached per map and lane)."""
    key = (g.source_hash, int(lane))
    if key not in _CONFLICTS:
        J = int(g.lane_junction[lane])
        out = []
        if J >= 0:
            mine = g.lane_points(lane)
            my_pred = set(g.predecessors(lane))
            for c in np.flatnonzero(g.lane_junction == J):
                c = int(c)
                if c == lane or my_pred & set(g.predecessors(c)):
                    continue
                pts = g.lane_points(c)
                d = np.hypot(mine[:, None, 0] - pts[None, :, 0], mine[:, None, 1] - pts[None, :, 1])
                close = np.argwhere(d < CONFLICT_DIST)
                if len(close):
                    i, k = close[np.argmin(close[:, 0])]
                    out.append(Conflict(c, float(i * g.lane_ds[lane]), float(k * g.lane_ds[c])))
        _CONFLICTS[key] = tuple(out)
    return _CONFLICTS[key]


def turn_angle(g: LaneGraph, lane: int) -> float:
    """Heading change along a lane [rad], wrapped to (-pi, pi]; negative turns left (CARLA's frame)."""
    a, n = g.lane_start[lane], g.lane_npts[lane]
    return float(np.angle(np.exp(1j * (g.pt_yaw[a + n - 1] - g.pt_yaw[a]))))


def gives_way(g: LaneGraph, lane: int, lights: np.ndarray) -> list[Conflict]:
    """The conflict lanes the ego, entering junction lane `lane`, must give way to (see the module doc).
    lights: (T,) LightState of the map's lights."""

    def held(c: int) -> bool:  # a red light holds the other lane's traffic
        lt = int(g.lane_light[c])
        return lt >= 0 and lights.size > 0 and int(lights[lt]) == LIGHT.RED

    left = turn_angle(g, lane) < LEFT_TURN
    out = []
    for cf in junction_conflicts(g, lane):
        c = cf.lane
        controlled = g.lane_light[c] >= 0 or g.lane_stop[c] >= 0
        if g.lane_light[lane] >= 0:
            ok = left and not held(c)
        elif g.lane_stop[lane] >= 0:
            ok = not held(c)
        else:
            ok = left and not controlled
        if ok:
            out.append(cf)
    return out


def sight_probes(g: LaneGraph, conflicts: list[Conflict], sight_time: float = SIGHT_TIME,
                 step: float = PROBE_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Probe points up each conflict lane (into its approach lane), from the conflict point back sight_time at
    the lane's speed limit: ((N, 3) x, y, yaw; (N,) index of the conflict each belongs to)."""
    out, owner = [], []
    for i, cf in enumerate(conflicts):
        reach = float(g.lane_speed_limit[cf.lane]) * sight_time
        s = cf.s - np.arange(0.0, reach + 1e-6, step)
        preds = g.predecessors(cf.lane)
        for lane, ss in ((cf.lane, s[s >= 0]), (preds[0] if preds else -1, s[s < 0])):
            if lane < 0 or not len(ss):
                continue
            x, y, yaw = g.lane_position(np.full(len(ss), lane), ss if lane == cf.lane else g.lane_length[lane] + ss)
            out.append(np.stack([x, y, yaw], 1))
            owner.append(np.full(len(ss), i))
    if not out:
        return np.zeros((0, 3)), np.zeros(0, np.int64)
    return np.concatenate(out), np.concatenate(owner)


def _seen(state: SimState, e: int, probes: np.ndarray, perception_range: float) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """What env e's ego sees: (agent slots in range (K,), which of them it sees (K,), which probes it sees (N,)).
    Probes do not occlude each other or the agents (they are given a walker's kind); all probes are tested
    whatever their range."""
    ex, ey = float(state.x[e, EGO]), float(state.y[e, EGO])
    near = state.valid[e] & (np.hypot(state.x[e] - ex, state.y[e] - ey) <= perception_range)
    near[EGO] = False
    a = np.flatnonzero(near)
    n = len(probes)
    cat = lambda agents, p: np.concatenate([agents, p])[None]  # noqa: E731
    vis = visibility(
        cat(state.x[e, a], probes[:, 0]), cat(state.y[e, a], probes[:, 1]), cat(state.yaw[e, a], probes[:, 2]),
        cat(state.length[e, a], np.full(n, PROBE_SIZE[0])), cat(state.width[e, a], np.full(n, PROBE_SIZE[1])),
        cat(state.kind[e, a], np.full(n, KIND.PEDESTRIAN)), np.ones((1, len(a) + n), bool), [ex], [ey],
        perception_range=np.inf)[0]
    return a, vis[: len(a)], vis[len(a):]


def occluded_conflicts(g: LaneGraph, state: SimState, e: int, conflicts: list[Conflict],
                       perception_range: float = PERCEPTION_RANGE) -> list[int]:
    """Indices of the conflicts whose approach env e's ego cannot see (see the module doc)."""
    if not conflicts:
        return []
    probes, owner = sight_probes(g, conflicts)
    ex, ey = float(state.x[e, EGO]), float(state.y[e, EGO])
    slots, seen, probe_seen = _seen(state, e, probes, perception_range)
    hidden = ~probe_seen & (np.hypot(probes[:, 0] - ex, probes[:, 1] - ey) <= perception_range)
    if not hidden.any():
        return []
    # a vehicle the ego sees on the lane cuts the sight line there
    veh = seen & np.isin(state.kind[e, slots], (KIND.VEHICLE, KIND.EMERGENCY))
    vx, vy = state.x[e, slots[veh]], state.y[e, slots[veh]]
    on = (np.hypot(probes[:, None, 0] - vx[None], probes[:, None, 1] - vy[None]) < PROBE_STEP / 2 + 0.5).any(1)
    out = []
    for i in range(len(conflicts)):
        k = np.flatnonzero(owner == i)  # from the conflict point back
        first = np.flatnonzero(on[k])
        k = k[: first[0]] if len(first) else k
        if hidden[k].any():
            out.append(i)
    return out
