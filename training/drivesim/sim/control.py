"""The deployed controller: path + target speed -> CARLA controls (throttle, steer, brake). Batched over envs.

Lateral: pure pursuit to the path point at a speed-dependent lookahead, turned into a normalised steer and
passed through a PID (on the pure-pursuit command). Longitudinal: PID on the speed error; braking when
the target is (near) zero or the car is too fast by more than a margin. The ROS planner node runs this
same class, so the pseudo-simulator and the stack are driven identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .dynamics import DEFAULT_VEHICLE, VehicleParams


@dataclass(frozen=True)
class ControllerConfig:
    lookahead_gain: float = 0.6  # [s] lookahead = gain * v + min, clipped
    lookahead_min: float = 3.5  # [m]
    lookahead_max: float = 15.0  # [m]
    lat_kp: float = 1.0
    lat_kd: float = 0.05
    lon_kp: float = 0.9
    lon_ki: float = 0.15
    lon_kd: float = 0.0
    integral_limit: float = 5.0  # [m/s * s]
    max_throttle: float = 0.75
    brake_gain: float = 0.4  # brake per m/s of overspeed
    brake_margin: float = 0.5  # [m/s] overspeed tolerated before braking
    stop_speed: float = 0.1  # [m/s] targets below this hold the car with the brake


def profile_target(values: np.ndarray, times: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """The speed profile's value at time(s) t [s], linear between speed points (the first / last point outside):
    values (..., K) [m/s] at times (K,); t a scalar -> (...), t (T,) -> (..., T). The deployed PID's target is the
    profile `lookahead` seconds ahead; in a held rollout (Scenario Dreaming) at each step's time + lookahead."""
    values, times = np.asarray(values, np.float64), np.asarray(times, np.float64)
    tq = np.atleast_1d(np.asarray(t, np.float64))
    if len(times) == 1:
        out = np.repeat(values[..., :1], len(tq), -1)
    else:
        tc = np.clip(tq, times[0], times[-1])
        i = np.clip(np.searchsorted(times, tc, side="right") - 1, 0, len(times) - 2)
        w = (tc - times[i]) / (times[i + 1] - times[i])
        out = values[..., i] * (1 - w) + values[..., i + 1] * w
    return out[..., 0] if np.ndim(t) == 0 else out


class PIDController:
    """Stateful (integrators) controller for E envs."""

    def __init__(self, num_envs: int, cfg: ControllerConfig = ControllerConfig(), vehicle: VehicleParams = DEFAULT_VEHICLE,
                 dt: float = 0.05):
        self.cfg, self.vehicle, self.dt = cfg, vehicle, dt
        self.int_e = np.zeros(num_envs)
        self.prev_e = np.zeros(num_envs)
        self.prev_steer = np.zeros(num_envs)

    def reset(self, mask=None) -> None:
        m = slice(None) if mask is None else mask
        self.int_e[m] = 0.0
        self.prev_e[m] = 0.0
        self.prev_steer[m] = 0.0

    def aim_point(self, path_ego: np.ndarray, speed: np.ndarray) -> np.ndarray:
        """Point on each path (E, P, 2; ego frame, x forward, y right) at the lookahead distance. (E, 2)"""
        c = self.cfg
        path_ego = np.ascontiguousarray(path_ego, np.float64)
        idx = _aim_index(path_ego, np.ascontiguousarray(speed, np.float64), c.lookahead_gain, c.lookahead_min,
                         c.lookahead_max)
        return path_ego[np.arange(len(idx)), idx]

    def __call__(self, path_ego: np.ndarray, target_speed: np.ndarray, speed: np.ndarray):
        """Returns (throttle, steer, brake), each (E,)."""
        c, veh = self.cfg, self.vehicle
        path_ego = np.ascontiguousarray(path_ego, np.float64)
        target_speed = np.ascontiguousarray(np.broadcast_to(target_speed, (len(path_ego),)), np.float64)
        speed = np.ascontiguousarray(np.broadcast_to(speed, (len(path_ego),)), np.float64)
        E = len(path_ego)
        throttle, steer, brake = np.empty(E), np.empty(E), np.empty(E)
        _pid(path_ego, target_speed, speed, self.int_e, self.prev_e, self.prev_steer, self.dt, veh.wheelbase,
             veh.max_steer, np.array([c.lookahead_gain, c.lookahead_min, c.lookahead_max, c.lat_kp, c.lat_kd, c.lon_kp,
                                      c.lon_ki, c.lon_kd, c.integral_limit, c.max_throttle, c.brake_gain,
                                      c.brake_margin, c.stop_speed]), throttle, steer, brake)
        return throttle, steer, brake

    def steer(self, path_ego: np.ndarray, speed: np.ndarray) -> np.ndarray:
        """The lateral part alone (pure pursuit to the aim point + PD on it, the arithmetic of `__call__`), for
        a caller that only steers (the takeover gate's minimal-risk manoeuvre brakes by itself). Updates the
        derivative's memory as `__call__` does. Returns steer (E,)."""
        c, veh = self.cfg, self.vehicle
        path_ego = np.ascontiguousarray(path_ego, np.float64)
        speed = np.ascontiguousarray(np.broadcast_to(speed, (len(path_ego),)), np.float64)
        idx = _aim_index(path_ego, speed, c.lookahead_gain, c.lookahead_min, c.lookahead_max)
        out = np.empty(len(path_ego))
        for e in range(len(path_ego)):
            out[e], self.prev_steer[e] = _lateral(path_ego[e, idx[e], 0], path_ego[e, idx[e], 1], self.prev_steer[e],
                                                  self.dt, veh.wheelbase, veh.max_steer, c.lat_kp, c.lat_kd)
        return out


@njit(cache=True)
def _aim_index(path, speed, gain, la_min, la_max):  # pragma: no cover (compiled)
    """Index of the first point of each path (E, P, 2) ahead (x > 0) at least the lookahead away; the last if none."""
    E, P = path.shape[:2]
    idx = np.full(E, P - 1, np.int64)
    for e in range(E):
        la = min(max(gain * abs(speed[e]) + la_min, la_min), la_max)
        for p in range(P):
            if path[e, p, 0] > 0 and math.hypot(path[e, p, 0], path[e, p, 1]) >= la:
                idx[e] = p
                break
    return idx


@njit(cache=True)
def _lateral(ax, ay, prev_pp, dt, wheelbase, max_steer, lat_kp, lat_kd):  # pragma: no cover (compiled)
    """Pure pursuit to the aim point (ax, ay), delta = atan(2 L sin(alpha) / ld), as a normalised steer, then
    PD on it. Returns (steer in [-1, 1], the pure-pursuit steer: the derivative's memory for the next tick)."""
    ld = max(math.hypot(ax, ay), 1e-3)
    alpha = math.atan2(ay, max(ax, 1e-3))
    steer_pp = math.atan(2.0 * wheelbase * math.sin(alpha) / ld) / max_steer
    return min(max(lat_kp * steer_pp + lat_kd * (steer_pp - prev_pp) / dt, -1.0), 1.0), steer_pp


@njit(cache=True)
def _pid(path, target, speed, int_e, prev_e, prev_steer, dt, wheelbase, max_steer, prm, throttle, steer, brake):  # pragma: no cover
    """Pure pursuit + PID (the class docstring) for every env; updates the integrators in place."""
    gain, la_min, la_max, lat_kp, lat_kd, lon_kp, lon_ki, lon_kd, i_lim, max_thr, brake_gain, margin, stop = prm
    idx = _aim_index(path, speed, gain, la_min, la_max)
    for e in range(len(target)):
        # lateral: pure pursuit + PD (`_lateral`)
        steer[e], prev_steer[e] = _lateral(path[e, idx[e], 0], path[e, idx[e], 1], prev_steer[e], dt, wheelbase,
                                           max_steer, lat_kp, lat_kd)
        # longitudinal: PID on the speed error; brake when too fast by more than the margin, hold below stop
        err = target[e] - speed[e]
        int_e[e] = min(max(int_e[e] + err * dt, -i_lim), i_lim)
        de = (err - prev_e[e]) / dt
        prev_e[e] = err
        u = lon_kp * err + lon_ki * int_e[e] + lon_kd * de
        thr = min(max(u, 0.0), max_thr)
        br = min(max(brake_gain * (-err - margin), 0.0), 1.0)
        hold = target[e] < stop
        if hold:
            br = 1.0
        if br > 0 or hold:
            thr = 0.0
            int_e[e] = 0.0
        throttle[e], brake[e] = thr, br
