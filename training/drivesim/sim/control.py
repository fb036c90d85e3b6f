"""The deployed controller: path + target speed -> CARLA controls (throttle, steer, brake). Batched over envs.

Lateral: pure pursuit to the path point at a speed-dependent lookahead, turned into a normalised steer and
passed through a PID (on the pure-pursuit command). Longitudinal: PID on the speed error; braking when
the target is (near) zero or the car is too fast by more than a margin. The ROS planner node runs this
same class, so the pseudo-simulator and the stack are driven identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
        la = np.clip(c.lookahead_gain * np.abs(speed) + c.lookahead_min, c.lookahead_min, c.lookahead_max)
        d = np.linalg.norm(path_ego, axis=-1)  # (E, P)
        ahead = (d >= la[:, None]) & (path_ego[..., 0] > 0)
        idx = np.where(ahead.any(axis=1), np.argmax(ahead, axis=1), path_ego.shape[1] - 1)
        return path_ego[np.arange(len(idx)), idx]

    def __call__(self, path_ego: np.ndarray, target_speed: np.ndarray, speed: np.ndarray):
        """Returns (throttle, steer, brake), each (E,)."""
        c = self.cfg
        path_ego = np.asarray(path_ego, dtype=np.float64)
        target_speed = np.asarray(target_speed, dtype=np.float64)
        speed = np.asarray(speed, dtype=np.float64)
        # lateral: pure pursuit  delta = atan(2 L sin(alpha) / ld)
        aim = self.aim_point(path_ego, speed)
        ld = np.maximum(np.linalg.norm(aim, axis=-1), 1e-3)
        alpha = np.arctan2(aim[:, 1], np.maximum(aim[:, 0], 1e-3))
        delta = np.arctan(2.0 * self.vehicle.wheelbase * np.sin(alpha) / ld)
        steer_pp = delta / self.vehicle.max_steer
        steer = c.lat_kp * steer_pp + c.lat_kd * (steer_pp - self.prev_steer) / self.dt
        self.prev_steer = steer_pp
        steer = np.clip(steer, -1.0, 1.0)
        # longitudinal: PID on the speed error
        e = target_speed - speed
        self.int_e = np.clip(self.int_e + e * self.dt, -c.integral_limit, c.integral_limit)
        de = (e - self.prev_e) / self.dt
        self.prev_e = e
        u = c.lon_kp * e + c.lon_ki * self.int_e + c.lon_kd * de
        throttle = np.clip(u, 0.0, c.max_throttle)
        brake = np.clip(c.brake_gain * (-e - c.brake_margin), 0.0, 1.0)
        hold = target_speed < c.stop_speed
        brake = np.where(hold, 1.0, brake)
        throttle = np.where((brake > 0) | hold, 0.0, throttle)
        self.int_e = np.where(hold | (brake > 0), 0.0, self.int_e)
        return throttle, steer, brake
