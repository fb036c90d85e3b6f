"""Ego dynamics: a kinematic bicycle driven by CARLA-style controls (throttle, steer, brake).

Vehicle model (documented constants; defaults approximate the Leaderboard 2.0 ego, a Lincoln MKZ 2020):
- box 4.89 m x 2.12 m, wheelbase 2.875 m, centre of mass at mid-wheelbase
- front-wheel angle = steer x MAX_STEER (70 deg, CARLA's wheel max_steer_angle), slewed at STEER_RATE
- acceleration = throttle x MAX_ACCEL x (1 - v / V_MAX) - DRAG x v^2 - ROLLING (when v > 0)
- deceleration from brake = brake x MAX_BRAKE; hand_brake brakes fully; speed never changes sign by braking
- reverse: throttle accelerates backwards, capped at REVERSE_MAX_SPEED
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VehicleParams:
    length: float = 4.89  # [m]
    width: float = 2.12  # [m]
    wheelbase: float = 2.875  # [m]
    max_steer: float = np.deg2rad(70.0)  # [rad] front wheel at steer = +-1
    steer_rate: float = np.deg2rad(360.0)  # [rad/s] wheel angle slew limit
    max_accel: float = 4.0  # [m/s^2] full throttle at standstill
    v_max: float = 60.0  # [m/s] throttle authority vanishes here
    max_brake: float = 8.0  # [m/s^2] full brake
    drag: float = 0.0012  # [1/m] aerodynamic, times v^2
    rolling: float = 0.15  # [m/s^2]
    reverse_max_speed: float = 3.0  # [m/s]


DEFAULT_VEHICLE = VehicleParams()


def bicycle_step(x, y, yaw, speed, steer_angle, throttle, steer_cmd, brake, dt, params=DEFAULT_VEHICLE,
                 reverse=None, hand_brake=None):
    """One step of the kinematic bicycle. All inputs broadcast (batched). Returns (x, y, yaw, speed, steer, accel)."""
    throttle = np.clip(throttle, 0.0, 1.0)
    brake = np.clip(brake, 0.0, 1.0)
    steer_cmd = np.clip(steer_cmd, -1.0, 1.0)
    if hand_brake is not None:
        brake = np.where(hand_brake, 1.0, brake)
    direction = np.where(reverse, -1.0, 1.0) if reverse is not None else 1.0
    # steering actuator
    target = steer_cmd * params.max_steer
    d = np.clip(target - steer_angle, -params.steer_rate * dt, params.steer_rate * dt)
    steer_angle = steer_angle + d
    # longitudinal: propulsion along `direction`, resistances and brake oppose the motion
    v = speed
    prop = direction * throttle * params.max_accel * np.clip(1.0 - np.abs(v) / params.v_max, 0.0, 1.0)
    resist = params.drag * v * v + params.rolling * (np.abs(v) > 0.01)
    decel = brake * params.max_brake + resist
    v_new = v + prop * dt
    # resistances/brake reduce |v| towards 0 but never flip its sign
    mag = np.maximum(np.abs(v_new) - decel * dt, 0.0)
    v_new = np.sign(v_new) * mag
    if reverse is not None:
        v_new = np.where(reverse, np.maximum(v_new, -params.reverse_max_speed), np.maximum(v_new, np.minimum(v, 0)))
    else:
        v_new = np.maximum(v_new, 0.0)
    accel = (v_new - v) / dt
    # kinematics about the centre of mass (half wheelbase behind the front axle)
    beta = np.arctan(0.5 * np.tan(steer_angle))
    v_mid = 0.5 * (v + v_new)
    x = x + v_mid * np.cos(yaw + beta) * dt
    y = y + v_mid * np.sin(yaw + beta) * dt
    yaw = yaw + v_mid / (0.5 * params.wheelbase) * np.sin(beta) * dt
    yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
    return x, y, yaw, v_new, steer_angle, accel
