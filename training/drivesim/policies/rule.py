"""The rule-based policy (``--policy rule``): IDM speed along the route, pure-pursuit steering (PIDController).

It sees only the perceived scene: agents within range that lie in the route corridor become IDM leaders;
a red (or stoppable yellow) light ahead and an unserved stop sign become a standing obstacle at the line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


class RulePolicy:
    """Sees only the perceived scene (``privileged = False``: `act` is given no truth)."""

    name = "rule"
    privileged = False

    def __init__(self, num_envs: int, max_speed: float = 12.0, idm: IDMParams | None = None,
                 controller: ControllerConfig | None = None, dt: float = 0.05, speed_profile: bool = False):
        """speed_profile: also roll IDM forward for the plan's speed profile (what the ROS planner publishes
        for the takeover monitor; closed-loop evaluation does not need it)."""
        self.max_speed = max_speed
        self.with_profile = speed_profile
        self.idm = idm or IDMParams(max_accel=2.0, comfort_brake=3.0, min_gap=3.0, headway=1.0)
        self.controller = PIDController(num_envs, controller or ControllerConfig(), DEFAULT_VEHICLE, dt)
        self.served_stop = np.full(num_envs, -1, np.int64)

    def reset(self) -> None:
        self.controller.reset()
        self.served_stop[:] = -1

    def leader_gap(self, scene: PerceivedScene) -> tuple[np.ndarray, np.ndarray]:
        """Gap along the route [m] and speed of the nearest agent inside the route corridor; inf/0 if none."""
        r = scene.route  # (E, P, 2)
        a = scene.agents  # (E, N, 7)
        d = np.hypot(a[:, :, None, 0] - r[:, None, :, 0], a[:, :, None, 1] - r[:, None, :, 1])  # (E, N, P)
        d = np.where(scene.route_valid[:, None, :], d, np.inf)
        k = np.argmin(d, axis=2)
        lat = np.take_along_axis(d, k[..., None], axis=2)[..., 0]
        seg = np.hypot(*np.moveaxis(np.diff(r, axis=1), -1, 0))  # (E, P-1)
        along_route = np.concatenate([np.zeros((len(r), 1)), np.cumsum(seg, axis=1)], axis=1)
        start = np.hypot(r[:, 0, 0], r[:, 0, 1]) * np.sign(r[:, 0, 0])
        along = np.take_along_axis(along_route, k, axis=1) + start[:, None]
        half_ego = DEFAULT_VEHICLE.length / 2
        in_corridor = scene.agents_valid & (lat < a[..., 5] / 2 + DEFAULT_VEHICLE.width / 2 + CORRIDOR_MARGIN) & (
            a[..., 0] > 0.5)
        gap = np.where(in_corridor, along - half_ego - a[..., 4] / 2, np.inf)
        j = np.argmin(gap, axis=1)
        g = gap[np.arange(len(j)), j]
        # the leader's speed along our heading
        v = a[np.arange(len(j)), j, 3] * np.cos(a[np.arange(len(j)), j, 2])
        return g, np.where(np.isfinite(g), v, 0.0)

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
        throttle, steer, brake = self.controller(plan.path, plan.target_speed, scene.ego_speed)
        return Controls(throttle, steer, brake), plan
