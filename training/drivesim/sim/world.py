"""The batched simulator: ``Simulator(map).step(state, controls) -> state`` (pure: the input is not modified)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import LaneGraph
from .dynamics import DEFAULT_VEHICLE, VehicleParams, bicycle_step
from .flows import flow_step
from .perturb import perturb_controls
from .script import script_step
from .state import BEH, DT, EGO, SimState
from .traffic import DEFAULT_IDM, IDMParams, idm_step, light_states


@dataclass
class Controls:
    """CARLA-style controls for the ego of each env, (E,) arrays (carla_msgs/CarlaEgoVehicleControl fields)."""

    throttle: np.ndarray
    steer: np.ndarray
    brake: np.ndarray
    hand_brake: np.ndarray | None = None
    reverse: np.ndarray | None = None

    @classmethod
    def zeros(cls, num_envs: int) -> Controls:
        z = np.zeros(num_envs)
        return cls(z, z.copy(), z.copy())

    def validate(self) -> None:
        for f in ("throttle", "steer", "brake"):
            a = np.asarray(getattr(self, f))
            if not np.all(np.isfinite(a)):
                raise ValueError(f"Controls.{f}: non-finite value {a}")


def compact_junction_index(g: LaneGraph) -> np.ndarray:
    """Lane -> 0..J-1 index of its junction (-1 outside junctions)."""
    out = np.full(g.num_lanes, -1, np.int64)
    m = g.lane_junction >= 0
    if m.any():
        _, inv = np.unique(g.lane_junction[m], return_inverse=True)
        out[m] = inv
    return out


class Simulator:
    """Holds the static context (map, parameters); the state is passed in and returned."""

    def __init__(self, g: LaneGraph, dt: float = DT, vehicle: VehicleParams = DEFAULT_VEHICLE,
                 idm: IDMParams = DEFAULT_IDM, track_ego_lane: bool = True):
        self.map, self.dt, self.vehicle, self.idm = g, dt, vehicle, idm
        self.junction_index = compact_junction_index(g)
        self.track_ego_lane = track_ego_lane

    def lights(self, state: SimState) -> np.ndarray:
        """(E, T) LightState of every traffic light."""
        return light_states(self.map, state.t, state.light_offset)

    def step(self, state: SimState, controls: Controls) -> SimState:
        g, dt = self.map, self.dt
        E, A = state.x.shape
        new = {}
        # 1. background agents: IDM lane following (sees the ego through its lane assignment)
        if (state.behavior == BEH.IDM).any():
            new.update(idm_step(state, g, self.lights(state), self.junction_index, dt, self.idm))
        x = new.get("x", state.x).copy()
        y = new.get("y", state.y).copy()
        yaw = new.get("yaw", state.yaw).copy()
        speed = new.get("speed", state.speed).copy()
        accel = new.get("accel", state.accel).copy()
        valid = new.get("valid", state.valid)
        # 2. walkers: straight along their heading for the distance left on their walk (s), then stand
        w = state.valid & (state.behavior == BEH.WALKER)
        s = new.get("s", state.s).copy()
        if w.any():
            step = np.where(w, np.minimum(state.desired_speed * dt, np.maximum(state.s, 0.0)), 0.0)
            x = x + step * np.cos(yaw)
            y = y + step * np.sin(yaw)
            speed = np.where(w, step / dt, speed)
            s = np.where(w, s - step, s)
        # 3. scripted scenario actors
        script = state.script
        if script is not None and (state.behavior == BEH.SCRIPTED).any():
            out = script_step(state, dt)
            sm = state.behavior == BEH.SCRIPTED
            x, y, yaw = np.where(sm, out["x"], x), np.where(sm, out["y"], y), np.where(sm, out["yaw"], yaw)
            speed, accel = np.where(sm, out["speed"], speed), np.where(sm, out["accel"], accel)
            s = np.where(sm, out["s"], s)
            valid = np.where(sm, out["valid"], valid)
            script = dataclasses.replace(script, t_act=out["t_act"])
        # 4. log replay at the next time step
        r = state.valid & (state.behavior == BEH.REPLAY)
        if r.any() and state.log_xyyv is not None:
            K = state.log_xyyv.shape[2]
            k = np.clip(np.round((state.t + dt) / dt).astype(np.int64), 0, K - 1)  # (E,)
            logged = state.log_xyyv[np.arange(E), :, k]  # (E, A, 4)
            lv = state.log_valid[np.arange(E), :, k]
            x = np.where(r, logged[..., 0], x)
            y = np.where(r, logged[..., 1], y)
            yaw = np.where(r, logged[..., 2], yaw)
            speed = np.where(r, logged[..., 3], speed)
            valid = np.where(r, lv, valid)
        # 5. the ego: kinematic bicycle on CARLA controls (perturbed during control-loss events)
        throttle_cmd, steer_cmd, perturb = controls.throttle, controls.steer, state.perturb
        if perturb is not None:
            throttle_cmd, steer_cmd, t_fire = perturb_controls(perturb, state.x[:, EGO], state.y[:, EGO], state.t,
                                                               np.asarray(throttle_cmd), np.asarray(steer_cmd))
            perturb = dataclasses.replace(perturb, t_fire=t_fire)
        ex, ey, eyaw, ev, steer, ea = bicycle_step(
            state.x[:, EGO], state.y[:, EGO], state.yaw[:, EGO], state.speed[:, EGO], state.steer,
            throttle_cmd, steer_cmd, controls.brake, dt, self.vehicle,
            reverse=controls.reverse, hand_brake=controls.hand_brake,
        )
        x[:, EGO], y[:, EGO], yaw[:, EGO], speed[:, EGO], accel[:, EGO] = ex, ey, eyaw, ev, ea
        lane = new.get("lane", state.lane).copy()
        if self.track_ego_lane:
            # matched at the stored (float32) pose: the monitor's lane checks ask the same of the new state
            pose = np.stack([ex, ey, eyaw], 1).astype(np.float32).astype(np.float64)
            pi, _, dist = g.project(pose[:, :2], pose[:, 2])
            lane[:, EGO] = np.where(dist < 3.0, g.pt_lane[pi], -1)
            s[:, EGO] = g.pt_s[pi]
        out = state.replace(
            x=x.astype(np.float32), y=y.astype(np.float32), yaw=yaw.astype(np.float32),
            speed=speed.astype(np.float32), accel=accel.astype(np.float32), valid=valid, lane=lane, s=s,
            steer=steer.astype(np.float32), t=(state.t + dt).astype(np.float32), script=script, perturb=perturb,
        )
        for k in ("next_lane", "stop_wait", "rng"):
            if k in new:
                setattr(out, k, new[k])
        # 6. actor flows: vehicles leave at their sink, follow their lane path, new ones enter at the source
        if out.flows is not None:
            res = flow_step(out, g)
            out = out.replace(**res)
        return out
