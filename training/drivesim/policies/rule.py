"""The rule-based policy (``--policy rule``): IDM speed along the route, pure-pursuit steering (PIDController).

It sees only the perceived scene: agents within range that lie in the route corridor become IDM leaders;
a red (or stoppable yellow) light ahead and an unserved stop sign become a standing obstacle at the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..sim.control import ControllerConfig, PIDController
from ..sim.dynamics import DEFAULT_VEHICLE
from ..sim.perception import PerceivedScene
from ..sim.state import LIGHT
from ..sim.traffic import IDMParams, idm_accel
from ..sim.world import Controls

CORRIDOR_MARGIN = 0.5  # [m] added to the half widths when testing whether an agent blocks the route
STOP_LINE_MARGIN = 1.0  # [m] the front bumper stops this far before a stop line
STOP_HOLD = 0.1  # [m/s] speed that counts as stopped at a stop sign
SPEED_HORIZON = 0.6  # [s] target speed = v + a * horizon
LIGHT_TAIL_SLACK = 0.5  # [m] the tail this close to the line counts as over it


PROFILE_HORIZON = 3.0  # [s] of the IDM roll-out behind the speed profile
PROFILE_DT = 0.1  # [s]


@dataclass
class Plan:
    """A plan in the ego frame: a path (E, P, 2), the target speed now (E,) and the speed profile along the
    path (E, P) [m/s]: the speed the policy intends to have at each path point (what the takeover monitor
    checks for collisions)."""

    path: np.ndarray
    target_speed: np.ndarray
    speed_profile: np.ndarray | None = None
    valid: np.ndarray | None = None  # (E, P) which path points are real (a route-shaped path is padded); None: all

    def points(self, e: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Env e's real path points (n, 2) and their speed profile (n,) or None."""
        keep = slice(None) if self.valid is None else np.asarray(self.valid[e], bool)
        prof = None if self.speed_profile is None else np.asarray(self.speed_profile[e])[keep]
        return np.asarray(self.path[e])[keep], prof


def capped(policy, target: np.ndarray) -> np.ndarray:
    """The target speed under the policy's advisory speed cap (`policy.speed_cap`, (E,) [m/s], inf or negative =
    none: what the planner node sets from the reasoning node's advisory when it honours it)."""
    cap = getattr(policy, "speed_cap", None)
    if cap is None:
        return target
    cap = np.asarray(cap, np.float64)
    return np.where(cap >= 0, np.minimum(target, cap), target)


def idm_speed_profile(path: np.ndarray, v: np.ndarray, v0: np.ndarray, gap: np.ndarray, dv_lead: np.ndarray,
                      p: IDMParams, horizon: float = PROFILE_HORIZON, dt: float = PROFILE_DT) -> np.ndarray:
    """Roll IDM forward in time (the obstacle keeps its speed: lead_v = v - dv at t=0) and read the speed off
    at each path point's arc length. path (E, P, 2), others (E,). Returns (E, P)."""
    E, P = path.shape[:2]
    lead_v = np.maximum(v - dv_lead, 0.0)
    s = np.zeros(E)
    vk = v.astype(np.float64).copy()
    gk = gap.astype(np.float64).copy()
    s_hist, v_hist = [s.copy()], [vk.copy()]
    for _ in range(int(round(horizon / dt))):
        a = idm_accel(vk, v0, gk, vk - lead_v, p)
        v_new = np.maximum(vk + a * dt, 0.0)
        ds = 0.5 * (vk + v_new) * dt
        s = s + ds
        gk = gk - ds + lead_v * dt
        vk = v_new
        s_hist.append(s.copy())
        v_hist.append(vk.copy())
    s_hist, v_hist = np.stack(s_hist, 1), np.stack(v_hist, 1)  # (E, K)
    seg = np.linalg.norm(np.diff(path, axis=1), axis=-1)
    start = np.linalg.norm(path[:, :1], axis=-1)
    cum = np.concatenate([start, start + np.cumsum(seg, axis=1)], axis=1)  # (E, P) arc length from the ego
    return np.stack([np.interp(cum[e], s_hist[e], v_hist[e]) for e in range(E)])


def stop_line_gaps(scene: PerceivedScene, served_stop: np.ndarray, comfort_brake: float):
    """Where the ego must stop for lights and stop signs: (stop_light, light_gap, stop_sign, sign_gap), (E,)
    each; gaps from the front bumper to the stop point [m]. Red lights, and yellow ones when a comfortable stop
    is possible; a stop sign once, until the ego has stood at its line (`served_stop` (E,) is updated)."""
    v = scene.ego_speed
    half = DEFAULT_VEHICLE.length / 2
    lgap = scene.light_dist - half - STOP_LINE_MARGIN
    comfortable = (lgap > v * v / (2 * comfort_brake)) | (v < 1.0)  # standing at the line: do not start on yellow
    stop_light = (scene.light_state == LIGHT.RED) | ((scene.light_state == LIGHT.YELLOW) & comfortable)
    # the Leaderboard counts a red light when the tail crosses the line: hold until it has (not only the front)
    stop_light &= lgap > -(2 * half + STOP_LINE_MARGIN) + LIGHT_TAIL_SLACK
    sgap = scene.stop_dist - half - STOP_LINE_MARGIN
    at_line = (scene.stop_id >= 0) & (sgap < 2.5) & (v < STOP_HOLD)
    served_stop[:] = np.where(at_line, scene.stop_id, served_stop)
    stop_sign = (scene.stop_id >= 0) & (served_stop != scene.stop_id) & (sgap > -half)
    return stop_light, lgap, stop_sign, sgap


def leader_gap(route: np.ndarray, route_valid: np.ndarray, agents: np.ndarray, agents_valid: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Gap [m] along the route (E, P, 2) from the ego's front bumper to the rear of the nearest agent (E, N, 7)
    inside the route corridor (its nearest valid route point within half its width + half the ego's +
    CORRIDOR_MARGIN, and ahead: x > 0.5 m), and that agent's speed along the ego's heading; inf / 0 if none."""
    f = lambda a: np.ascontiguousarray(a, np.float64)  # noqa: E731
    return _leader_gap(f(route), np.ascontiguousarray(route_valid, np.bool_), f(agents),
                       np.ascontiguousarray(agents_valid, np.bool_), DEFAULT_VEHICLE.length / 2,
                       DEFAULT_VEHICLE.width / 2 + CORRIDOR_MARGIN)


@njit(cache=True)
def _leader_gap(route, route_valid, agents, agents_valid, half_ego, corridor):  # pragma: no cover (compiled)
    E, P = route_valid.shape
    N = agents.shape[1]
    gap, lead_v = np.full(E, np.inf), np.zeros(E)
    along = np.zeros(P)
    for e in range(E):
        # arc length of each route point from the ego (signed at the first point: it may be just behind)
        along[0] = math.hypot(route[e, 0, 0], route[e, 0, 1]) * np.sign(route[e, 0, 0])
        for p in range(1, P):
            along[p] = along[p - 1] + math.hypot(route[e, p, 0] - route[e, p - 1, 0], route[e, p, 1] - route[e, p - 1, 1])
        for n in range(N):
            if not agents_valid[e, n] or agents[e, n, 0] <= 0.5:
                continue
            ax, ay = agents[e, n, 0], agents[e, n, 1]
            lat, k = np.inf, 0
            for p in range(P):
                if route_valid[e, p]:
                    d = math.hypot(ax - route[e, p, 0], ay - route[e, p, 1])
                    if d < lat:
                        lat, k = d, p
            if lat < agents[e, n, 5] / 2 + corridor:
                g = along[k] - half_ego - agents[e, n, 4] / 2
                if g < gap[e]:
                    gap[e], lead_v[e] = g, agents[e, n, 3] * math.cos(agents[e, n, 2])
    return gap, lead_v


class RulePolicy:
    """Sees only the perceived scene (``privileged = False``: `act` is given no truth)."""

    name = "rule"
    privileged = False
    model_id = None  # no model file (learned policies record theirs)

    def __init__(self, num_envs: int, max_speed: float = 12.0, idm: IDMParams | None = None,
                 controller: ControllerConfig | None = None, dt: float = 0.05, speed_profile: bool = False):
        """speed_profile: also roll IDM forward for the plan's speed profile (what the ROS planner publishes
        for the takeover monitor; closed-loop evaluation does not need it)."""
        self.E, self.max_speed = num_envs, max_speed
        self.with_profile = speed_profile
        self.idm = idm or IDMParams(max_accel=2.0, comfort_brake=3.0, min_gap=3.0, headway=1.0)
        self.controller = PIDController(num_envs, controller or ControllerConfig(), DEFAULT_VEHICLE, dt)
        self.served_stop = np.full(num_envs, -1, np.int64)

    def reset(self) -> None:
        self.controller.reset()
        self.served_stop[:] = -1

    def leader_gap(self, scene: PerceivedScene) -> tuple[np.ndarray, np.ndarray]:
        """Gap along the route [m] and speed of the nearest agent inside the route corridor; inf/0 if none."""
        return leader_gap(scene.route, scene.route_valid, scene.agents, scene.agents_valid)

    def plan(self, scene: PerceivedScene) -> Plan:
        v = scene.ego_speed
        v0 = np.minimum(scene.speed_limit, self.max_speed)
        gap, lead_v = self.leader_gap(scene)
        dv = v - lead_v
        stop_light, lgap, stop_sign, sgap = stop_line_gaps(scene, self.served_stop, self.idm.comfort_brake)
        for cond, g_stop in ((stop_light, lgap), (stop_sign, sgap)):
            # IDM halts min_gap short of an obstacle: place the virtual one min_gap beyond the stop point
            g_virtual = np.maximum(g_stop, 0.0) + self.idm.min_gap
            use = cond & (g_virtual < gap)
            gap = np.where(use, g_virtual, gap)
            dv = np.where(use, v, dv)
        acc = idm_accel(v, v0, gap, dv, self.idm)
        target = np.clip(v + acc * SPEED_HORIZON, 0.0, v0)
        target = np.where(gap < self.idm.min_gap * 0.5, 0.0, target)
        if not self.with_profile:
            return Plan(scene.route, target, valid=scene.route_valid)
        profile = idm_speed_profile(scene.route, v, v0, gap, dv, self.idm)
        profile[:, 0] = np.minimum(profile[:, 0], target)
        return Plan(scene.route, target, np.where(gap[:, None] < self.idm.min_gap * 0.5, 0.0, profile),
                    valid=scene.route_valid)

    def act(self, scene: PerceivedScene, truth=None) -> tuple[Controls, Plan]:
        plan = self.plan(scene)
        plan.target_speed = capped(self, plan.target_speed)
        throttle, steer, brake = self.controller(plan.path, plan.target_speed, scene.ego_speed)
        return Controls(throttle, steer, brake), plan
