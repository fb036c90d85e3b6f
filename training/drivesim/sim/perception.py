"""The perceived vector scene: what a (non-privileged) policy may see, in the ego frame.

Ego frame: x forward, y to the right (CARLA handedness), origin at the ego's centre. Agents are visible
within PERCEPTION_RANGE (occlusion arrives with the scenarios' visibility model). The route comes from the
global plan; traffic-light states come from the light status topic, as the CARLA ROS bridge publishes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import LaneGraph
from ..routes.planner import DenseRoute
from .state import EGO, LightState, SimState

PERCEPTION_RANGE = 50.0  # [m]
PRIVILEGED_RANGE = 1e6  # [m] what the privileged expert's scene covers (everything)
ROUTE_POINTS = 60  # route points ahead (1 m apart)
TRACK_WINDOW = 30  # route points searched ahead of the last match
LIGHT_BEHIND = 3  # route points (1 m) past a light's line that it is still reported (negative light_dist)


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
                 route_points: int = ROUTE_POINTS):
        self.map, self.routes, self.range, self.P = g, routes, perception_range, route_points
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
                light_state[e] = lights[e, lid[k]] if lights.size else LightState.GREEN
            ahead = np.flatnonzero(si >= i0)
            if len(ahead):
                k = ahead[0]
                stop_dist[e] = r.cum_s[si[k]] - r.cum_s[i0]
                stop_id[e] = sid[k]
        # agents in the ego frame, within range
        dx, dy = state.x - ex, state.y - ey
        ax = dx * c + dy * s
        ay = -dx * s + dy * c
        vis = state.valid & (np.hypot(dx, dy) <= self.range)
        vis[:, EGO] = False
        agents = np.stack([ax, ay, state.yaw - eyaw, state.speed, state.length, state.width,
                           state.kind.astype(np.float32)], -1)
        agents = np.where(vis[..., None], agents, 0.0)
        return PerceivedScene(
            ego_speed=state.speed[:, EGO].astype(np.float64), route=route, route_valid=rvalid, command=cmd,
            speed_limit=limit, agents=agents[:, 1:], agents_valid=vis[:, 1:], light_dist=light_dist,
            light_state=light_state, stop_dist=stop_dist, stop_id=stop_id,
        )
