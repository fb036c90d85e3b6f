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

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

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
_OCC_VEHICLE, _OCC_STATIC, _OCC_EMERGENCY = KIND.VEHICLE, KIND.STATIC, KIND.EMERGENCY  # the occluder kinds
_GREEN = LIGHT.GREEN


def visibility(x, y, yaw, length, width, kind, valid, sensor_x, sensor_y,
               perception_range: float = PERCEPTION_RANGE, occlusion: bool = True) -> np.ndarray:
    """(E, A) bool: which agents the sensor at (sensor_x, sensor_y) (E,) sees (see the module doc). Inputs (E, A);
    the sensor's own agent must be masked out by the caller (it is usually invalid here or slot EGO)."""
    f = lambda a: np.ascontiguousarray(a, np.float64)  # noqa: E731
    return _visibility(f(x), f(y), f(yaw), f(length), f(width), np.ascontiguousarray(kind, np.int64),
                       np.ascontiguousarray(valid, np.bool_), f(np.reshape(sensor_x, -1)),
                       f(np.reshape(sensor_y, -1)), float(perception_range), bool(occlusion))


@njit(cache=True)
def _wrap(a):
    return (a + math.pi) % (2 * math.pi) - math.pi


@njit(cache=True)
def _visibility(x, y, yaw, length, width, kind, valid, sx, sy, rng, occlusion):  # pragma: no cover (compiled)
    """The visibility model, compiled (numba): per env, the M agents in range; each occluder's angular span
    around the bearing of its centre; each agent's five rays (corners, centre) tested against every occluder
    nearer than the probed point by OCCLUDER_MARGIN. tests/test_visibility.py keeps a vectorised numpy
    reference it must agree with."""
    E, A = x.shape
    out = np.zeros((E, A), np.bool_)
    idx = np.empty(A, np.int64)
    dist, bearing, lo, hi = np.empty(A), np.empty(A), np.empty(A), np.empty(A)
    occ = np.empty(A, np.bool_)
    pts = np.empty((A, 5, 2))
    for e in range(E):
        m = 0
        for a in range(A):
            if valid[e, a]:
                d = math.hypot(x[e, a] - sx[e], y[e, a] - sy[e])
                if d <= rng:
                    idx[m], dist[m] = a, d
                    m += 1
        if not occlusion:
            for j in range(m):
                out[e, idx[j]] = True
            continue
        for j in range(m):
            a = idx[j]
            cx, cy = x[e, a], y[e, a]
            c, s = math.cos(yaw[e, a]), math.sin(yaw[e, a])
            hl, hw = 0.5 * length[e, a], 0.5 * width[e, a]
            b = math.atan2(cy - sy[e], cx - sx[e])
            lo_j, hi_j = np.inf, -np.inf
            for r in range(4):  # corners, in box_corners' order
                ul = hl if r < 2 else -hl
                uw = hw if (r == 0 or r == 3) else -hw
                px, py = cx + ul * c - uw * s, cy + ul * s + uw * c
                pts[j, r, 0], pts[j, r, 1] = px, py
                ca = _wrap(math.atan2(py - sy[e], px - sx[e]) - b)
                lo_j, hi_j = min(lo_j, ca), max(hi_j, ca)
            pts[j, 4, 0], pts[j, 4, 1] = cx, cy
            bearing[j], lo[j], hi[j] = b, lo_j, hi_j
            k = kind[e, a]
            # a sensor inside (or touching) a footprint sees nothing useful from its span: no occluder
            occ[j] = ((k == _OCC_VEHICLE or k == _OCC_STATIC or k == _OCC_EMERGENCY) and width[e, a] >= OCCLUDER_MIN_WIDTH
                      and dist[j] > 1e-3 and (hi_j - lo_j) < math.pi * 0.9)
        for j in range(m):
            seen = False
            for r in range(5):
                rx, ry = pts[j, r, 0] - sx[e], pts[j, r, 1] - sy[e]
                ang, rd = math.atan2(ry, rx), math.hypot(rx, ry)
                blocked = False
                for k in range(m):
                    if k != j and occ[k] and dist[k] + OCCLUDER_MARGIN < rd and lo[k] < _wrap(ang - bearing[k]) < hi[k]:
                        blocked = True
                        break
                if not blocked:
                    seen = True
                    break
            out[e, idx[j]] = seen
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

    def env(self, e: int) -> PerceivedScene:
        """Env e as a scene of one env (agent_ids, shared by all envs, stays as it is)."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[e:e + 1] for f in dataclasses.fields(self)
                                            if f.name != "agent_ids" and getattr(self, f.name) is not None})


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
    """Builds PerceivedScene for E envs, each following its own dense route (tracks the route index). The
    per-env work (route window in the ego frame, next light and stop sign, agents in the ego frame) is compiled
    (`_route_view`, `_agents_view`) over routes padded to one length."""

    def __init__(self, g: LaneGraph, routes: list[DenseRoute], perception_range: float = PERCEPTION_RANGE,
                 route_points: int = ROUTE_POINTS, occlusion: bool = True):
        self.map, self.routes, self.range, self.P = g, routes, perception_range, route_points
        self.occlusion = occlusion
        E = len(routes)
        self.idx = np.zeros(E, np.int64)
        self.cp = [route_control_points(g, r) for r in routes]
        N = max(len(r) for r in routes)
        self._n = np.array([len(r) for r in routes], np.int64)
        self._xy, self._cum = np.zeros((E, N, 2)), np.zeros((E, N))
        self._cmd, self._limit = np.zeros((E, N), np.int8), np.zeros((E, N))
        K = max(max(len(c[0]), len(c[2])) for c in self.cp) if E else 0
        self._cp = np.full((E, 4, max(K, 1)), -1, np.int64)  # light idx, light id, stop idx, stop id; -1 padded
        for e, r in enumerate(routes):
            n = len(r)
            self._xy[e, :n], self._cum[e, :n] = r.xy, r.cum_s
            self._cmd[e, :n], self._limit[e, :n] = r.command, g.lane_speed_limit[r.lane]
            for k, a in enumerate(self.cp[e]):
                self._cp[e, k, : len(a)] = a

    def warmup(self) -> None:
        """Run every per-step kernel once on a synthetic state (the ego at the route's start, one car ahead) and
        restore the route tracking: a node calls this before it reports ready, so the first real tick does not
        wait for compiled kernels to load (or, on a fresh checkout, to compile)."""
        from .state import empty_state

        E = len(self.routes)
        st = empty_state(E, 2, self.map.num_lights)
        for e, r in enumerate(self.routes):
            st.x[e, EGO], st.y[e, EGO], st.yaw[e, EGO] = r.xy[0, 0], r.xy[0, 1], r.yaw[0]
            st.x[e, 1], st.y[e, 1], st.yaw[e, 1] = r.xy[min(10, len(r) - 1), 0], r.xy[min(10, len(r) - 1), 1], r.yaw[0]
        st.valid[:] = True
        idx = self.idx.copy()
        self(st, np.zeros((E, self.map.num_lights), np.int8))
        self.idx[:] = idx

    def track(self, state: SimState) -> np.ndarray:
        """Nearest route point of each ego within a window ahead of the previous match."""
        _track(self.idx, self._xy, self._n, state.x, state.y)
        return self.idx

    def truth(self, state: SimState, lights: np.ndarray) -> Truth:
        """The privileged view at the route index of the last `__call__`."""
        return Truth(state, lights, self.map, self.routes, self.idx.copy())

    def __call__(self, state: SimState, lights: np.ndarray) -> PerceivedScene:
        E, A = state.x.shape
        P = self.P
        self.track(state)
        route, rvalid = np.zeros((E, P, 2)), np.zeros((E, P), bool)
        cmd, limit = np.zeros((E, P), np.int8), np.zeros(E)
        light_dist, light_state = np.full(E, np.inf), np.full(E, -1, np.int64)
        stop_dist, stop_id = np.full(E, np.inf), np.full(E, -1, np.int64)
        _route_view(self.idx, self._xy, self._n, self._cum, self._cmd, self._limit, self._cp,
                    lights if lights.size else np.full((E, 1), LIGHT.GREEN, np.int8), lights.size > 0, state.x,
                    state.y, state.yaw, route, rvalid, cmd, limit, light_dist, light_state, stop_dist, stop_id)
        # agents in the ego frame: in range and not occluded
        others = state.valid.copy()
        others[:, EGO] = False
        ex, ey, eyaw = state.x[:, EGO], state.y[:, EGO], state.yaw[:, EGO]
        vis = visibility(state.x, state.y, state.yaw, state.length, state.width, state.kind, others, ex, ey,
                         self.range, self.occlusion)
        agents = _agents_view(state.x, state.y, state.yaw, state.speed, state.length, state.width, state.kind, vis)
        return PerceivedScene(
            ego_speed=state.speed[:, EGO].astype(np.float64), route=route, route_valid=rvalid, command=cmd,
            speed_limit=limit, agents=agents[:, 1:], agents_valid=vis[:, 1:], light_dist=light_dist,
            light_state=light_state, stop_dist=stop_dist, stop_id=stop_id,
            ego_pose=np.stack([ex, ey, eyaw], -1).astype(np.float64),
            ego_accel=state.accel[:, EGO].astype(np.float64), lights=lights, agent_ids=np.arange(1, A),
            t=np.asarray(state.t, np.float64).copy(),
        )


@njit(cache=True)
def _track(idx, xy, n, x, y):  # pragma: no cover (compiled)
    for e in range(len(idx)):
        a = idx[e]
        best, bd = a, np.inf
        for i in range(a, min(a + TRACK_WINDOW, n[e])):
            d = math.hypot(xy[e, i, 0] - x[e, 0], xy[e, i, 1] - y[e, 0])
            if d < bd:
                best, bd = i, d
        idx[e] = best


@njit(cache=True)
def _route_view(idx, xy, n, cum, command, limit_pt, cp, lights, have_lights, x, y, yaw,
                route, rvalid, cmd, limit, light_dist, light_state, stop_dist, stop_id):  # pragma: no cover
    """The route's next P points in the ego frame (padded by repeating the last), their commands, the speed
    limit at the ego, and the next light (until the ego's tail is LIGHT_BEHIND points over its line) and stop
    sign along the route."""
    E, P = rvalid.shape
    for e in range(E):
        i0 = idx[e]
        c, s = math.cos(yaw[e, 0]), math.sin(yaw[e, 0])
        m = min(P, n[e] - i0)
        for p in range(P):
            i = i0 + min(p, m - 1)
            dx, dy = xy[e, i, 0] - x[e, 0], xy[e, i, 1] - y[e, 0]
            route[e, p, 0], route[e, p, 1] = dx * c + dy * s, -dx * s + dy * c
            if p < m:
                rvalid[e, p], cmd[e, p] = True, command[e, i]
        limit[e] = limit_pt[e, i0]
        for k in range(cp.shape[2]):
            if cp[e, 0, k] >= 0 and cp[e, 0, k] + LIGHT_BEHIND > i0:
                light_dist[e] = cum[e, cp[e, 0, k]] - cum[e, i0]
                light_state[e] = lights[e, cp[e, 1, k]] if have_lights else _GREEN
                break
        for k in range(cp.shape[2]):
            if cp[e, 2, k] >= 0 and cp[e, 2, k] >= i0:
                stop_dist[e], stop_id[e] = cum[e, cp[e, 2, k]] - cum[e, i0], cp[e, 3, k]
                break


@njit(cache=True)
def _agents_view(x, y, yaw, speed, length, width, kind, vis):  # pragma: no cover (compiled)
    """(E, A, 7) x, y (ego frame), yaw relative to the ego, speed, length, width, kind of the seen agents; 0 else."""
    E, A = x.shape
    out = np.zeros((E, A, 7), np.float32)
    for e in range(E):
        c, s = math.cos(yaw[e, 0]), math.sin(yaw[e, 0])
        for a in range(A):
            if vis[e, a]:
                dx, dy = x[e, a] - x[e, 0], y[e, a] - y[e, 0]
                out[e, a, 0], out[e, a, 1], out[e, a, 2] = dx * c + dy * s, -dx * s + dy * c, yaw[e, a] - yaw[e, 0]
                out[e, a, 3], out[e, a, 4], out[e, a, 5], out[e, a, 6] = speed[e, a], length[e, a], width[e, a], kind[e, a]
    return out
