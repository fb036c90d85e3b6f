"""Frames in the Bench2Drive annotation format (``anno/00000.json.gz``), written from and read back into arrays.

Fields written per frame (the ones Bench2Drive's own loaders read; CARLA's left-handed world frame, metres,
degrees in `rotation`):

- ego: ``x, y`` (position), ``theta`` (compass heading [rad] = yaw + pi/2, as CARLA's IMU reports it),
  ``speed`` [m/s], ``throttle, steer, brake, reverse``, ``acceleration`` [m/s^2, xyz], ``angular_velocity``
  [rad/s, xyz], ``command_near / x_command_near / y_command_near`` (route command and point NEAR_DIST ahead),
  ``command_far / x_command_far / y_command_far`` (FAR_DIST ahead), ``x_target, y_target`` (= the near point).
- ``bounding_boxes``: one dict per object, the ego first (``class`` ego_vehicle), then ``vehicle``, ``walker``,
  ``traffic_light`` and ``traffic_sign`` within BOX_RANGE: ``id, class, type_id, location, center, rotation``
  ([roll, pitch, yaw] deg), ``extent`` (half sizes), ``speed, distance``; lights and signs carry ``state``
  (carla.TrafficLightState value) and ``affects_ego``; the ego carries ``world2ego`` (4x4).
- ``drivesim``: what we add (ignored by Bench2Drive tools): time, the expert's plan and status.

`frame_to_arrays` reads a frame (ours, or a real Bench2Drive one) back: ego pose, controls, and the agents as
(x, y, yaw, speed, length, width, kind) rows with their ids.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from ..maps.lanegraph import LaneGraph
from ..sim.state import EGO, AgentKind, Behavior, SimState

NEAR_DIST, FAR_DIST = 10.0, 40.0  # [m] along the route: the near and far command points
BOX_RANGE = 75.0  # [m] objects farther from the ego are not written (Bench2Drive's loaders cut at 75 m)
HEIGHT = {AgentKind.VEHICLE: 1.5, AgentKind.PEDESTRIAN: 1.8, AgentKind.CYCLIST: 1.6, AgentKind.STATIC: 1.0,
          AgentKind.EMERGENCY: 2.0}
CLASS = {AgentKind.VEHICLE: ("vehicle", "vehicle.car"), AgentKind.PEDESTRIAN: ("walker", "walker.pedestrian"),
         AgentKind.CYCLIST: ("vehicle", "vehicle.bicycle"), AgentKind.STATIC: ("static", "static.prop"),
         AgentKind.EMERGENCY: ("vehicle", "vehicle.emergency")}
KIND_OF_TYPE = {"vehicle.bicycle": AgentKind.CYCLIST, "vehicle.emergency": AgentKind.EMERGENCY,
                "static.prop": AgentKind.STATIC}
LIGHT_ID_BASE, SIGN_ID_BASE = 100000, 200000  # ids of lights / stop signs: base + their map index


def world2ego(x: float, y: float, yaw: float) -> list[list[float]]:
    c, s = np.cos(yaw), np.sin(yaw)
    m = np.eye(4)
    m[:2, :2] = [[c, s], [-s, c]]
    m[:2, 3] = -m[:2, :2] @ np.array([x, y])
    return m.round(6).tolist()


def _box(cls: str, type_id: str, ident: int, x, y, yaw, length, width, height, speed, ego_xy) -> dict:
    loc = [round(float(x), 4), round(float(y), 4), 0.0]
    return {"class": cls, "type_id": type_id, "id": int(ident), "location": loc,
            "center": [loc[0], loc[1], round(height / 2, 3)], "rotation": [0.0, 0.0, round(float(np.degrees(yaw)), 4)],
            "extent": [round(float(length) / 2, 4), round(float(width) / 2, 4), round(height / 2, 3)],
            "speed": round(float(speed), 4), "distance": round(float(np.hypot(x - ego_xy[0], y - ego_xy[1])), 3)}


def make_frame(state: SimState, e: int, lights: np.ndarray, g: LaneGraph, route, route_idx: int, controls,
               extras: dict, prev_speed: float, prev_yaw: float, dt: float,
               light_ahead: int = -1, sign_ahead: int = -1) -> dict:
    """One annotation frame for env e. controls: (throttle, steer, brake) of the label (the policy's own)."""
    ex, ey, eyaw, ev = (float(state.x[e, EGO]), float(state.y[e, EGO]), float(state.yaw[e, EGO]),
                        float(state.speed[e, EGO]))
    i_near = min(int(np.searchsorted(route.cum_s, route.cum_s[route_idx] + NEAR_DIST)), len(route) - 1)
    i_far = min(int(np.searchsorted(route.cum_s, route.cum_s[route_idx] + FAR_DIST)), len(route) - 1)
    yaw_rate = float(np.angle(np.exp(1j * (eyaw - prev_yaw)))) / dt
    acc = (ev - prev_speed) / dt
    frame = {
        "x": round(ex, 4), "y": round(ey, 4), "theta": round(eyaw + np.pi / 2, 6), "speed": round(ev, 4),
        "throttle": round(float(controls[0]), 4), "steer": round(float(controls[1]), 4),
        "brake": round(float(controls[2]), 4), "reverse": False,
        "acceleration": [round(acc * np.cos(eyaw), 4), round(acc * np.sin(eyaw), 4), 0.0],
        "angular_velocity": [0.0, 0.0, round(yaw_rate, 5)],
        "command_near": int(route.command[i_near]), "x_command_near": round(float(route.xy[i_near, 0]), 3),
        "y_command_near": round(float(route.xy[i_near, 1]), 3),
        "command_far": int(route.command[i_far]), "x_command_far": round(float(route.xy[i_far, 0]), 3),
        "y_command_far": round(float(route.xy[i_far, 1]), 3),
        "x_target": round(float(route.xy[i_near, 0]), 3), "y_target": round(float(route.xy[i_near, 1]), 3),
    }
    ego = _box("ego_vehicle", "vehicle.lincoln.mkz_2020", 0, ex, ey, eyaw, state.length[e, EGO],
               state.width[e, EGO], 1.5, ev, (ex, ey))
    ego["world2ego"] = world2ego(ex, ey, eyaw)
    boxes = [ego]
    near = np.flatnonzero(state.valid[e] & (np.hypot(state.x[e] - ex, state.y[e] - ey) <= BOX_RANGE))
    for a in near[near != EGO]:
        k = AgentKind(int(state.kind[e, a]))
        cls, type_id = CLASS[k]
        boxes.append(_box(cls, type_id, int(a), state.x[e, a], state.y[e, a], state.yaw[e, a], state.length[e, a],
                          state.width[e, a], HEIGHT[k], state.speed[e, a], (ex, ey)))
    for t in np.flatnonzero(np.hypot(g.light_pos[:, 0] - ex, g.light_pos[:, 1] - ey) <= BOX_RANGE):
        b = _box("traffic_light", "traffic.traffic_light", LIGHT_ID_BASE + int(t), *g.light_pos[t], 0.0, 0.6, 0.6,
                 3.0, 0.0, (ex, ey))
        b["state"] = int(lights[e, t]) if lights.size else 2
        b["affects_ego"] = bool(t == light_ahead)
        boxes.append(b)
    for k in np.flatnonzero(np.hypot(g.stop_box[:, 0] - ex, g.stop_box[:, 1] - ey) <= BOX_RANGE):
        bx = g.stop_box[k]
        b = _box("traffic_sign", "traffic.stop", SIGN_ID_BASE + int(k), bx[0], bx[1], bx[2], bx[3], bx[4], 2.0, 0.0,
                 (ex, ey))
        b["affects_ego"] = bool(k == sign_ahead)
        boxes.append(b)
    frame["bounding_boxes"] = boxes
    frame["drivesim"] = extras
    return frame


def write_frame(path: Path, frame: dict) -> None:
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=5) as f:
        json.dump(frame, f, separators=(",", ":"))


class FrameError(ValueError):
    pass


def read_frame(path: str | Path) -> dict:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise FrameError(f"{path}: not a readable Bench2Drive annotation frame ({e}); re-collect the episode "
                         "or remove the file") from e


def frame_to_arrays(frame: dict, source: str = "frame") -> dict:
    """Ego pose/controls and agents of one annotation frame (ours or Bench2Drive's). Agents: rows
    (x, y, yaw, speed, length, width, kind) and their ids; lights and signs are left out."""
    try:
        boxes = frame["bounding_boxes"]
        ego = next(b for b in boxes if b["class"] == "ego_vehicle")
        rows, ids = [], []
        for b in boxes:
            cls = b["class"]
            if cls not in ("vehicle", "walker", "static"):
                continue
            kind = AgentKind.PEDESTRIAN if cls == "walker" else KIND_OF_TYPE.get(
                b.get("type_id", ""), AgentKind.STATIC if cls == "static" else AgentKind.VEHICLE)
            loc, ext = b["location"], b["extent"]
            rows.append([loc[0], loc[1], np.radians(b["rotation"][2]), float(b.get("speed", 0.0)), 2 * ext[0],
                         2 * ext[1], int(kind)])
            ids.append(int(b["id"]))
        out = {
            "ego": np.array([ego["location"][0], ego["location"][1], np.radians(ego["rotation"][2]),
                             float(frame["speed"])], np.float64),
            "controls": np.array([frame.get("throttle", 0.0), frame.get("steer", 0.0), frame.get("brake", 0.0)]),
            "command_near": int(frame.get("command_near", -1)), "command_far": int(frame.get("command_far", -1)),
            "target": np.array([frame.get("x_target", np.nan), frame.get("y_target", np.nan)], np.float64),
            "agents": np.array(rows, np.float64).reshape(-1, 7), "ids": np.array(ids, np.int64),
        }
    except (KeyError, StopIteration, IndexError, TypeError) as e:
        raise FrameError(f"{source}: missing or malformed Bench2Drive field ({e!r}); expected 'bounding_boxes' "
                         "with an 'ego_vehicle' entry, 'speed', and per box 'location', 'rotation', 'extent'") from e
    return out


def replay_state(ego_log: np.ndarray, agents_log: np.ndarray, valid_log: np.ndarray, k: int, dt_log: float,
                 max_agents: int, sim_dt: float = 0.05) -> SimState:
    """A pseudo-simulator scene from logged frames: the ego at frame k, every logged agent a REPLAY agent that
    follows its log from frame k on (resampled from dt_log to the simulator's step). ego_log (F, 4) x, y, yaw,
    speed; agents_log (F, A, 7); valid_log (F, A)."""
    from ..sim.state import empty_state

    F, A = valid_log.shape
    A = min(A, max_agents - 1)
    n = F - k
    K = int(round((n - 1) * dt_log / sim_dt)) + 1
    tq = np.arange(K) * sim_dt / dt_log  # fractional frame offsets
    i0 = np.minimum(np.floor(tq).astype(int), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (tq - i0)[:, None]
    log = agents_log[k:, :A]
    val = valid_log[k:, :A]
    st = empty_state(1, max_agents)
    st.x[0, EGO], st.y[0, EGO], st.yaw[0, EGO], st.speed[0, EGO] = ego_log[k]
    st.valid[0, EGO], st.behavior[0, EGO] = True, Behavior.CONTROLLED
    xyyv = np.zeros((1, max_agents, K, 4), np.float32)
    lv = np.zeros((1, max_agents, K), bool)
    yaw0, yaw1 = log[i0][..., 2], log[i1][..., 2]
    dyaw = np.angle(np.exp(1j * (yaw1 - yaw0)))
    interp = lambda c: log[i0][..., c] * (1 - w) + log[i1][..., c] * w  # noqa: E731
    xyyv[0, 1:A + 1] = np.stack([interp(0), interp(1), yaw0 + dyaw * w, interp(3)], -1).transpose(1, 0, 2)
    lv[0, 1:A + 1] = (val[i0] & val[i1]).T
    a = np.arange(1, A + 1)
    st.x[0, a], st.y[0, a], st.yaw[0, a], st.speed[0, a] = log[0, :, 0], log[0, :, 1], log[0, :, 2], log[0, :, 3]
    st.length[0, a], st.width[0, a] = log[0, :, 4], log[0, :, 5]
    st.kind[0, a] = log[0, :, 6].astype(np.int8)
    st.valid[0, a] = val[0]
    st.behavior[0, a] = Behavior.REPLAY
    return st.replace(log_xyyv=xyyv, log_valid=lv)
