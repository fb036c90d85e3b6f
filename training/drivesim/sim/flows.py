"""Actor flows: streams of lane-following vehicles (or bicycles) from a source point to a sink point, the
mechanism behind Bench2Drive's flow scenarios (EnterActorFlow, InterurbanActorFlow, HighwayExit,
MergerIntoSlowTraffic, CrossingBicycleFlow, the junction turns with flows, ...). Vectorised over (E, F, A).

Each flow f owns a few agent slots. A slot that is free (never used, or its vehicle reached the sink or left)
is filled at the source lane when the previous vehicle of the flow has moved `next_gap` metres away from the
source (a fresh gap is drawn from [gap_lo, gap_hi], CARLA's `source_dist_interval`). Flow vehicles are IDM
agents (they stop for lights, queue, yield) that take, at every lane end, the successor on the lane path from
source to sink; they leave at the sink.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..maps.lanegraph import LaneGraph
from .state import BEH, SimState

SINK_RADIUS = 4.0  # [m]
FLOW_SLOTS = 8  # agent slots per flow


@dataclass
class Flows:
    src_xy: np.ndarray  # (E, F, 2) [m]
    src_lane: np.ndarray  # (E, F) int32, -1 = no flow
    src_s: np.ndarray  # (E, F) [m] spawn arc length on the source lane
    sink_xy: np.ndarray  # (E, F, 2) [m]
    speed: np.ndarray  # (E, F) [m/s]
    gap_lo: np.ndarray  # (E, F) [m]
    gap_hi: np.ndarray  # (E, F) [m]
    next_gap: np.ndarray  # (E, F) [m]
    last_slot: np.ndarray  # (E, F) int64, -1 = none yet
    kind: np.ndarray  # (E, F) int8 AgentKind
    length: np.ndarray  # (E, F) [m]
    width: np.ndarray  # (E, F) [m]
    on_path: np.ndarray  # (E, F, L) bool: lanes of the source -> sink path
    slot_flow: np.ndarray  # (E, A) int16: the flow a slot belongs to, -1 none
    rng: np.ndarray  # (E, F) uint32

    def copy(self) -> Flows:
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})

    @classmethod
    def empty(cls, E: int, A: int, F: int, L: int) -> Flows:
        z = lambda dt=np.float32, v=0: np.full((E, F), v, dt)  # noqa: E731
        return cls(src_xy=np.zeros((E, F, 2), np.float32), src_lane=z(np.int32, -1), src_s=z(), sink_xy=np.zeros((E, F, 2), np.float32),
                   speed=z(), gap_lo=z(), gap_hi=z(), next_gap=z(), last_slot=z(np.int64, -1), kind=z(np.int8),
                   length=z(), width=z(), on_path=np.zeros((E, F, L), bool), slot_flow=np.full((E, A), -1, np.int16),
                   rng=z(np.uint32, 12345))


def _lcg(r: np.ndarray) -> np.ndarray:
    return (r * np.uint32(1664525) + np.uint32(1013904223)).astype(np.uint32)


def flow_step(state: SimState, g: LaneGraph) -> dict[str, np.ndarray]:
    """Despawn flow vehicles at their sink, steer flow vehicles along their lane path, spawn new ones.
    Returns the changed (E, A) arrays and the updated Flows."""
    fl = state.flows
    E, A = state.x.shape
    F = fl.src_lane.shape[1]
    rows = np.arange(E)[:, None]
    out = {k: getattr(state, k).copy() for k in ("x", "y", "yaw", "speed", "valid", "lane", "s", "next_lane",
                                                 "behavior", "kind", "length", "width", "desired_speed", "stop_wait")}
    sf = fl.slot_flow.astype(np.int64)
    mine = sf >= 0
    f_idx = np.maximum(sf, 0)
    # 1. leave at the sink
    sink = np.take_along_axis(fl.sink_xy, f_idx[..., None].repeat(2, -1), axis=1)  # (E, A, 2)
    at_sink = mine & out["valid"] & (np.hypot(state.x - sink[..., 0], state.y - sink[..., 1]) < SINK_RADIUS)
    out["valid"] &= ~at_sink
    # 2. follow the lane path: at a lane end the chosen successor is one on the path when there is one
    on = mine & out["valid"] & (state.lane >= 0)
    succ = g.lane_succ[np.maximum(state.lane, 0)]  # (E, A, K)
    path_of = fl.on_path[rows[..., None], f_idx[..., None], np.maximum(succ, 0)] & (succ >= 0)  # (E, A, K)
    has = path_of.any(-1)
    pick = np.take_along_axis(succ, np.argmax(path_of, -1)[..., None], -1)[..., 0]
    out["next_lane"] = np.where(on & has, pick, out["next_lane"]).astype(state.next_lane.dtype)
    # 3. spawn: the flow's first free slot, when the previous vehicle is far enough from the source
    free = mine & ~out["valid"]  # (E, A)
    cand = free[:, None, :] & (sf[:, None, :] == np.arange(F)[None, :, None])  # (E, F, A)
    slot = np.argmax(cand, -1)  # (E, F)
    any_free = cand.any(-1) & (fl.src_lane >= 0)
    last = np.maximum(fl.last_slot, 0)
    lx, ly = state.x[rows, last], state.y[rows, last]
    last_ok = (fl.last_slot < 0) | ~out["valid"][rows, last] | (
        np.hypot(lx - fl.src_xy[..., 0], ly - fl.src_xy[..., 1]) >= fl.next_gap)
    # nobody (of any kind) standing on the spawn point
    d_src = np.hypot(state.x[:, None, :] - fl.src_xy[..., 0:1], state.y[:, None, :] - fl.src_xy[..., 1:2])
    clear = ~(out["valid"][:, None, :] & (d_src < 6.0)).any(-1)
    go = any_free & last_ok & clear
    new_flows = fl
    if go.any():
        e_i, f_i = np.nonzero(go)
        a_i = slot[e_i, f_i]
        lane = fl.src_lane[e_i, f_i]
        x, y, yaw = g.lane_position(lane, fl.src_s[e_i, f_i].astype(np.float64))
        for k, v in (("x", x), ("y", y), ("yaw", yaw), ("speed", fl.speed[e_i, f_i]), ("lane", lane),
                     ("s", fl.src_s[e_i, f_i]), ("desired_speed", fl.speed[e_i, f_i]), ("kind", fl.kind[e_i, f_i]),
                     ("length", fl.length[e_i, f_i]), ("width", fl.width[e_i, f_i])):
            out[k][e_i, a_i] = v
        out["valid"][e_i, a_i] = True
        out["behavior"][e_i, a_i] = BEH.IDM
        out["stop_wait"][e_i, a_i] = -1.0
        succ0 = g.lane_succ[lane]
        p0 = fl.on_path[e_i, f_i][np.arange(len(e_i))[:, None], np.maximum(succ0, 0)] & (succ0 >= 0)
        out["next_lane"][e_i, a_i] = np.where(p0.any(-1), np.take_along_axis(succ0, np.argmax(p0, -1)[:, None], -1)[:, 0],
                                              succ0[:, 0])
        rng = fl.rng.copy()
        rng[e_i, f_i] = _lcg(rng[e_i, f_i])
        u = (rng[e_i, f_i] >> np.uint32(8)).astype(np.float64) / float(1 << 24)
        next_gap = fl.next_gap.copy()
        next_gap[e_i, f_i] = fl.gap_lo[e_i, f_i] + u * (fl.gap_hi[e_i, f_i] - fl.gap_lo[e_i, f_i])
        last_slot = fl.last_slot.copy()
        last_slot[e_i, f_i] = a_i
        new_flows = dataclasses.replace(fl, rng=rng, next_gap=next_gap.astype(np.float32), last_slot=last_slot)
    out["flows"] = new_flows
    return out
