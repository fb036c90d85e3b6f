"""The perceived vector scene: what a (non-privileged) policy may see, in the ego frame.

Ego frame: x forward, y to the right (CARLA handedness), origin at the ego's centre. The route comes from the
global plan; traffic-light states come from the light status topic, as the CARLA ROS bridge publishes them.

Visibility model (`visibility`): an agent is seen when it is within PERCEPTION_RANGE of the ego's sensor (the
ego's centre, SENSOR_HEIGHT is not modelled: everything is a 2-D footprint) and not occluded. Occluders are
vehicles, emergency vehicles and static props wider than OCCLUDER_MIN_WIDTH (cars, trucks, containers; not
pedestrians, cyclists or cones). Each agent is probed by OCCLUSION_RAYS rays from the sensor to points across
its footprint (its four corners and its centre); a ray is blocked when it passes through the angular span of an
occluder whose centre is nearer than the probed point by more than OCCLUDER_MARGIN. The agent is hidden when every
ray is blocked, by one occluder or by several together (a pedestrian between two parked cars). Privileged
policies skip the model (`occlusion=False`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import LaneGraph
from ..routes.planner import DenseRoute
from .state import EGO, KIND, LIGHT, SimState

PERCEPTION_RANGE = 50.0  # [m]
PRIVILEGED_RANGE = 1e6  # [m] what the privileged expert's scene covers (everything)
ROUTE_POINTS = 60  # route points ahead (1 m apart)
TRACK_WINDOW = 30  # route points searched ahead of the last match
LIGHT_BEHIND = 3  # route points (1 m) past a light's line that it is still reported (negative light_dist)
OCCLUDER_MIN_WIDTH = 1.2  # [m] footprints at least this wide (and not walkers/cyclists) block the view
OCCLUDER_MARGIN = 0.5  # [m] an occluder must be this much nearer than the probed point
OCCLUSION_RAYS = 5  # four corners and the centre
_OCCLUDER_KINDS = (KIND.VEHICLE, KIND.STATIC, KIND.EMERGENCY)


def box_corners(x, y, yaw, length, width) -> np.ndarray:
    """(..., 4, 2) corners of oriented boxes."""
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    hl = 0.5 * np.asarray(length)[..., None] * np.array([1, 1, -1, -1])
    hw = 0.5 * np.asarray(width)[..., None] * np.array([1, -1, -1, 1])
    return np.stack([x[..., None] + hl * c - hw * s, y[..., None] + hl * s + hw * c], -1)


def visibility(x, y, yaw, length, width, kind, valid, sensor_x, sensor_y,
               perception_range: float = PERCEPTION_RANGE, occlusion: bool = True) -> np.ndarray:
    """(E, A) bool: which agents the sensor at (sensor_x, sensor_y) (E,) sees (see the module doc). Inputs (E, A);
    the sensor's own agent must be masked out by the caller (it is usually invalid here or slot EGO)."""
    sx, sy = np.asarray(sensor_x, float)[:, None], np.asarray(sensor_y, float)[:, None]
    dist = np.hypot(x - sx, y - sy)
    vis = valid & (dist <= perception_range)
    if not occlusion or not vis.any():
        return vis
    # only what is in range can hide or be hidden: work on the M in-range agents of each env (M = the most any
    # env has), gathered to the front
    M = int(vis.sum(axis=1).max())
    order = np.argsort(~vis, axis=1, kind="stable")[:, :M]  # (E, M) in-range slots first
    take = lambda a: np.take_along_axis(np.asarray(a), order, axis=1)  # noqa: E731
    x, y, yaw, length, width, kind = (take(a) for a in (x, y, yaw, length, width, kind))
    dist, inr = take(dist), take(vis)
    corners = box_corners(x, y, yaw, length, width)  # (E, M, 4, 2)
    pts = np.concatenate([corners, np.stack([x, y], -1)[:, :, None]], 2)  # (E, M, R, 2)
    rx, ry = pts[..., 0] - sx[..., None], pts[..., 1] - sy[..., None]
    ray_ang, ray_d = np.arctan2(ry, rx), np.hypot(rx, ry)  # (E, M, R)
    # occluders' angular spans, relative to the bearing of their centre
    occ = inr & np.isin(kind, _OCCLUDER_KINDS) & (width >= OCCLUDER_MIN_WIDTH) & (dist > 1e-3)
    bearing = np.arctan2(y - sy, x - sx)  # (E, M)
    cang = np.arctan2(corners[..., 1] - sy[..., None], corners[..., 0] - sx[..., None]) - bearing[..., None]
    cang = (cang + np.pi) % (2 * np.pi) - np.pi
    lo, hi = cang.min(-1), cang.max(-1)  # (E, M)
    # a sensor inside (or touching) a footprint sees nothing useful from its span: treat it as no occluder
    occ &= (hi - lo) < np.pi * 0.9
    # ray r of agent j vs occluder k: (E, Mj, R, Mk)
    rel = ray_ang[..., None] - bearing[:, None, None, :]
    rel = (rel + np.pi) % (2 * np.pi) - np.pi
    inside = (rel > lo[:, None, None, :]) & (rel < hi[:, None, None, :])
    nearer = dist[:, None, None, :] + OCCLUDER_MARGIN < ray_d[..., None]
    notself = ~np.eye(M, dtype=bool)[None, :, None, :]
    blocked = (inside & nearer & occ[:, None, None, :] & notself).any(-1).all(-1)  # (E, M)
    out = vis.copy()
    np.put_along_axis(out, order, inr & ~blocked, axis=1)
    return out


@dataclass
class PerceivedScene:
    """Batched (E, ...) ego-frame scene."""

    ego_speed: np.ndarray  # (E,) [m/s]
    route: np.ndarray  # (E, P, 2) [m] route points ahead
    route_valid: np.ndarray  # (E, P) bool
    command: np.ndarray  # (E, P) int8 Command
    speed_limit: np.ndarray  # (E,) [m/s] of the lane under the route at the ego
    agents: np.ndarray  # (E, N, 7) x, y, yaw, speed, length, width, kind
    agents_valid: np.ndarray  # (E, N) bool
    light_dist: np.ndarray  # (E,) [m] along the route to the next traffic-light stop line (negative: just passed), inf if none
    light_state: np.ndarray  # (E,) LightState of that light, -1 if none
    stop_dist: np.ndarray  # (E,) [m] along the route to the next stop-sign junction entry, inf if none
    stop_id: np.ndarray  # (E,) index of that stop sign, -1 if none
    ego_pose: np.ndarray | None = None  # (E, 3) x, y, yaw in the map frame (odometry), to carry tracks over time
    ego_accel: np.ndarray | None = None  # (E,) [m/s^2]
    lights: np.ndarray | None = None  # (E, T) LightState of every light of the map (the light status topic)
    agent_ids: np.ndarray | None = None  # (N,) track id of each agent column (the simulator slot)
    t: np.ndarray | None = None  # (E,) [s] simulation time (the message stamp)


@dataclass
class Truth:
    """What a privileged policy (the expert) gets besides the scene: the full simulator state, the light
    states, the map, and each env's dense route with the ego's current index on it."""

    state: SimState
    lights: np.ndarray  # (E, T) LightState
    map: LaneGraph
    routes: list[DenseRoute]
    route_idx: np.ndarray  # (E,) nearest route point of each ego


def route_control_points(g: LaneGraph, route: DenseRoute) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the route enters a lane governed by a light or a stop sign: (light idx, light ids, stop idx, stop ids)."""
    lane = route.lane
    entry = np.concatenate([[False], lane[1:] != lane[:-1]])
    li = np.flatnonzero(entry & (g.lane_light[lane] >= 0))
    si = np.flatnonzero(entry & (g.lane_stop[lane] >= 0))
    return li, g.lane_light[lane[li]], si, g.lane_stop[lane[si]]


class ScenePerceiver:
    """Builds PerceivedScene for E envs, each following its own dense route (tracks the route index)."""

    def __init__(self, g: LaneGraph, routes: list[DenseRoute], perception_range: float = PERCEPTION_RANGE,
                 route_points: int = ROUTE_POINTS, occlusion: bool = True):
        self.map, self.routes, self.range, self.P = g, routes, perception_range, route_points
        self.occlusion = occlusion
        self.idx = np.zeros(len(routes), np.int64)
        self.cp = [route_control_points(g, r) for r in routes]

    def track(self, state: SimState) -> np.ndarray:
        """Nearest route point of each ego within a window ahead of the previous match."""
        for e, r in enumerate(self.routes):
            a = self.idx[e]
            b = min(a + TRACK_WINDOW, len(r))
            d = np.hypot(r.xy[a:b, 0] - state.x[e, EGO], r.xy[a:b, 1] - state.y[e, EGO])
            self.idx[e] = a + int(np.argmin(d))
        return self.idx

    def truth(self, state: SimState, lights: np.ndarray) -> Truth:
        """The privileged view at the route index of the last `__call__`."""
        return Truth(state, lights, self.map, self.routes, self.idx.copy())

    def __call__(self, state: SimState, lights: np.ndarray) -> PerceivedScene:
        E, A = state.x.shape
        P = self.P
        self.track(state)
        ex, ey, eyaw = state.x[:, EGO:EGO + 1], state.y[:, EGO:EGO + 1], state.yaw[:, EGO:EGO + 1]
        c, s = np.cos(eyaw), np.sin(eyaw)
        route = np.zeros((E, P, 2))
        rvalid = np.zeros((E, P), bool)
        cmd = np.zeros((E, P), np.int8)
        limit = np.zeros(E)
        light_dist = np.full(E, np.inf)
        light_state = np.full(E, -1, np.int64)
        stop_dist = np.full(E, np.inf)
        stop_id = np.full(E, -1, np.int64)
        for e, r in enumerate(self.routes):
            i0 = self.idx[e]
            seg = r.xy[i0:i0 + P]
            n = len(seg)
            dx, dy = seg[:, 0] - ex[e, 0], seg[:, 1] - ey[e, 0]
            route[e, :n, 0] = dx * c[e, 0] + dy * s[e, 0]
            route[e, :n, 1] = -dx * s[e, 0] + dy * c[e, 0]
            if n < P:  # pad by repeating the last point
                route[e, n:] = route[e, n - 1]
            rvalid[e, :n] = True
            cmd[e, :n] = r.command[i0:i0 + P]
            limit[e] = self.map.lane_speed_limit[r.lane[i0]]
            li, lid, si, sid = self.cp[e]
            ahead = np.flatnonzero(li + LIGHT_BEHIND > i0)  # a light stays in view until the ego's tail is over its line
            if len(ahead):
                k = ahead[0]
                light_dist[e] = r.cum_s[li[k]] - r.cum_s[i0]
                light_state[e] = lights[e, lid[k]] if lights.size else LIGHT.GREEN
            ahead = np.flatnonzero(si >= i0)
            if len(ahead):
                k = ahead[0]
                stop_dist[e] = r.cum_s[si[k]] - r.cum_s[i0]
                stop_id[e] = sid[k]
        # agents in the ego frame: in range and not occluded
        dx, dy = state.x - ex, state.y - ey
        ax = dx * c + dy * s
        ay = -dx * s + dy * c
        others = state.valid.copy()
        others[:, EGO] = False
        vis = visibility(state.x, state.y, state.yaw, state.length, state.width, state.kind, others, ex[:, 0], ey[:, 0],
                         self.range, self.occlusion)
        agents = np.stack([ax, ay, state.yaw - eyaw, state.speed, state.length, state.width,
                           state.kind.astype(np.float32)], -1)
        agents = np.where(vis[..., None], agents, 0.0)
        return PerceivedScene(
            ego_speed=state.speed[:, EGO].astype(np.float64), route=route, route_valid=rvalid, command=cmd,
            speed_limit=limit, agents=agents[:, 1:], agents_valid=vis[:, 1:], light_dist=light_dist,
            light_state=light_state, stop_dist=stop_dist, stop_id=stop_id,
            ego_pose=np.stack([ex[:, 0], ey[:, 0], eyaw[:, 0]], -1).astype(np.float64),
            ego_accel=state.accel[:, EGO].astype(np.float64), lights=lights, agent_ids=np.arange(1, A),
            t=np.asarray(state.t, np.float64).copy(),
        )
