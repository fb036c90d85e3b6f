"""Counterfactual branches: from one simulator state, the same world rolled forward under several ego plans.

The prediction world model must learn how the other agents answer the ego's plan (a follower brakes when the
ego brakes, a crossing car waits when the ego commits). A logged drive shows one plan per moment, and the
expert's plan is well predicted by the scene itself, so a model trained on logs alone learns to ignore the
plan (measured: followers moved 14.53 m vs 14.56 m in 3 s for "brake" vs "commit", issue 5 notes). Branches
give the same moment under different plans, with everything else equal: the state is tiled (SimState.tile:
same agents, same random streams, same light phases), the ego follows one path at K different target speeds
with the deployed PID controller, and the simulator's IDM, scripted and flow agents react as they do in a
closed loop.
"""

from __future__ import annotations

import numpy as np

from .control import PIDController
from .state import EGO, SimState
from .world import Controls, Simulator


def to_world(path_ego: np.ndarray, pose) -> np.ndarray:
    """(P, 2) points in the ego frame of pose (x, y, yaw) -> world frame."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.stack([pose[0] + path_ego[:, 0] * c - path_ego[:, 1] * s,
                     pose[1] + path_ego[:, 0] * s + path_ego[:, 1] * c], -1)


def branch_rollouts(sim: Simulator, state: SimState, path_world: np.ndarray, speeds: np.ndarray,
                    seconds: float = 3.0, every: float = 0.5) -> dict[str, np.ndarray]:
    """Env 0 of `state` rolled forward `seconds` once per target speed in `speeds` (K,), the ego following
    `path_world` (P, 2; world frame, from the ego on) with the PID controller. Recorded every `every` seconds
    (T = seconds / every records, the first one `every` after the start):

      ego (K, T, 3) x, y, yaw; agents (K, T, A-1, 2) x, y of every other agent slot; valid (K, T, A-1).
    """
    speeds = np.asarray(speeds, np.float64)
    K = len(speeds)
    if K == 0:
        raise ValueError("branch_rollouts: no target speeds")
    path_world = np.asarray(path_world, np.float64)
    if path_world.ndim != 2 or path_world.shape[1] != 2 or len(path_world) < 2:
        raise ValueError(f"branch_rollouts: path of shape {path_world.shape}, expected (P >= 2, 2)")
    one = state if state.num_envs == 1 else state.env(0)
    st = one.tile(K)
    n = int(round(seconds / sim.dt))
    rec = int(round(every / sim.dt))
    if rec < 1 or n % rec:
        raise ValueError(f"branch_rollouts: {seconds} s is not a whole number of {every} s records at dt {sim.dt}")
    T, A = n // rec, st.max_agents
    ego, agents = np.zeros((K, T, 3), np.float32), np.zeros((K, T, A - 1, 2), np.float32)
    valid = np.zeros((K, T, A - 1), bool)
    ctl = PIDController(K, dt=sim.dt)
    for i in range(n):
        ex, ey, eyaw = (st.x[:, EGO].astype(np.float64), st.y[:, EGO].astype(np.float64),
                        st.yaw[:, EGO].astype(np.float64))
        dx, dy = path_world[None, :, 0] - ex[:, None], path_world[None, :, 1] - ey[:, None]
        c, s = np.cos(eyaw)[:, None], np.sin(eyaw)[:, None]
        local = np.stack([dx * c + dy * s, -dx * s + dy * c], -1)
        thr, steer, brake = ctl(local, speeds, st.speed[:, EGO].astype(np.float64))
        st = sim.step(st, Controls(thr, steer, brake))
        if (i + 1) % rec == 0:
            j = (i + 1) // rec - 1
            ego[:, j] = np.stack([st.x[:, EGO], st.y[:, EGO], st.yaw[:, EGO]], -1)
            agents[:, j] = np.stack([st.x[:, 1:], st.y[:, 1:]], -1)
            valid[:, j] = st.valid[:, 1:]
    return {"ego": ego, "agents": agents, "valid": valid}


__all__ = ["branch_rollouts", "to_world"]
