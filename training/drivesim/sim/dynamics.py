"""Ego dynamics: a kinematic bicycle driven by CARLA-style controls (throttle, steer, brake).

Vehicle model (documented constants; defaults approximate the Leaderboard 2.0 ego, a Lincoln MKZ 2020):
- box 4.89 m x 2.12 m, wheelbase 2.875 m, centre of mass at mid-wheelbase
- front-wheel angle = steer x MAX_STEER (70 deg, CARLA's wheel max_steer_angle), slewed at STEER_RATE
- acceleration = throttle x MAX_ACCEL x (1 - v / V_MAX) - DRAG x v^2 - ROLLING (when v > 0)
- deceleration from brake = brake x MAX_BRAKE; hand_brake brakes fully; speed never changes sign by braking
- reverse: throttle accelerates backwards, capped at REVERSE_MAX_SPEED
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit


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


def brake_for_decel(decel, speed, params: VehicleParams = DEFAULT_VEHICLE):
    """The brake command (throttle 0, forward) under which the model decelerates at `decel` [m/s^2] at `speed`
    [m/s]: the inverse of `decel = brake x MAX_BRAKE + DRAG x v^2 + ROLLING` (`_bicycle`), clipped to [0, 1] (a
    wanted deceleration below the resistances needs no brake; above full brake's, full brake). Broadcasts."""
    v = np.abs(np.asarray(speed, np.float64))
    resist = params.drag * v * v + np.where(v > 0.01, params.rolling, 0.0)
    out = np.clip((np.asarray(decel, np.float64) - resist) / params.max_brake, 0.0, 1.0)
    return float(out) if out.ndim == 0 else out


def bicycle_step(x, y, yaw, speed, steer_angle, throttle, steer_cmd, brake, dt, params=DEFAULT_VEHICLE,
                 reverse=None, hand_brake=None):
    """One step of the kinematic bicycle. All inputs broadcast (batched). Returns (x, y, yaw, speed, steer, accel).
    The arithmetic is `_bicycle` (compiled, per vehicle)."""
    arrays = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (x, y, yaw, speed, steer_angle, throttle,
                                                                         steer_cmd, brake)),
                                 np.asarray(False if reverse is None else reverse, np.bool_),
                                 np.asarray(False if hand_brake is None else hand_brake, np.bool_))
    shape = arrays[0].shape
    flat = [a.reshape(-1).copy() for a in arrays]  # broadcast views are read-only: own copies
    p = params
    out = _bicycle(*flat, reverse is not None, float(dt), np.array([p.max_steer, p.steer_rate, p.max_accel, p.v_max, p.max_brake, p.drag,
                                               p.rolling, p.reverse_max_speed, p.wheelbase]))
    return tuple(o.reshape(shape) for o in out)


@njit(cache=True)
def _bicycle(x, y, yaw, speed, steer_angle, throttle, steer_cmd, brake, reverse, hand_brake, reverse_given, dt,
             prm):  # pragma: no cover (compiled)
    max_steer, steer_rate, max_accel, v_max, max_brake, drag, rolling, rev_max, wheelbase = prm
    n = len(x)
    ox, oy, oyaw, ov, osteer, oacc = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        thr = min(max(throttle[i], 0.0), 1.0)
        br = 1.0 if hand_brake[i] else min(max(brake[i], 0.0), 1.0)
        direction = -1.0 if reverse[i] else 1.0
        # steering actuator, slew-limited
        d = min(max(min(max(steer_cmd[i], -1.0), 1.0) * max_steer - steer_angle[i], -steer_rate * dt), steer_rate * dt)
        sa = steer_angle[i] + d
        # longitudinal: propulsion along `direction`, resistances and brake oppose the motion
        v = speed[i]
        prop = direction * thr * max_accel * min(max(1.0 - abs(v) / v_max, 0.0), 1.0)
        decel = br * max_brake + drag * v * v + (rolling if abs(v) > 0.01 else 0.0)
        vn = v + prop * dt
        # resistances/brake reduce |v| towards 0 but never flip its sign
        vn = np.sign(vn) * max(abs(vn) - decel * dt, 0.0)
        if not reverse_given:
            vn = max(vn, 0.0)
        else:
            vn = max(vn, -rev_max) if reverse[i] else max(vn, min(v, 0.0))
        # kinematics about the centre of mass (half wheelbase behind the front axle)
        beta = math.atan(0.5 * math.tan(sa))
        vm = 0.5 * (v + vn)
        ox[i] = x[i] + vm * math.cos(yaw[i] + beta) * dt
        oy[i] = y[i] + vm * math.sin(yaw[i] + beta) * dt
        oyaw[i] = (yaw[i] + vm / (0.5 * wheelbase) * math.sin(beta) * dt + math.pi) % (2 * math.pi) - math.pi
        ov[i], osteer[i], oacc[i] = vn, sa, (vn - v) / dt
    return ox, oy, oyaw, ov, osteer, oacc
