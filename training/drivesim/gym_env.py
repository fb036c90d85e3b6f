"""A gymnasium vector environment over the batched pseudo-simulator.

Observation (per env): the perceived vector scene in the ego frame (route points ahead, visible agents with a
mask, ego speed, distance/state of the next light and stop sign). Action, by `ActionMode`:

- ``CONTROLS``: raw CARLA controls [throttle, steer, brake], (3,).
- ``PATH_SPEED``: a path of PATH_POINTS points in the observation's ego frame plus a target speed, flattened to
  (2 * PATH_POINTS + 1,) = [x0, y0, x1, y1, ..., target_speed [m/s]]; the deployed PID controller (the one the
  ROS planner node runs) turns it into controls every step, so a policy trained here drives the stack unchanged.

Reward: route-completion gain in % minus 10 per new collision. An env whose route
ends (completed, deviated, blocked, timeout) is reset on the next step (gymnasium's next-step autoreset).
"""

from __future__ import annotations

import enum

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .loop import ClosedLoop
from .maps.lanegraph import LaneGraph
from .metrics.monitor import RouteMonitor
from .routes.generate import random_routes
from .routes.planner import DenseRoute, plan_route
from .sim.control import PIDController
from .sim.perception import ROUTE_POINTS
from .sim.world import Controls

COLLISION_REWARD = -10.0
PATH_POINTS = 8  # points of a PATH_SPEED action's path
MAX_TARGET_SPEED = 20.0  # [m/s]


class ActionMode(enum.Enum):
    CONTROLS = "controls"
    PATH_SPEED = "path_speed"


class DriveVectorEnv(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, g: LaneGraph, num_envs: int = 4, max_agents: int = 32, seed: int = 0,
                 routes: list[DenseRoute] | None = None, action_mode: ActionMode = ActionMode.CONTROLS):
        self.map, self.num_envs, self.max_agents = g, num_envs, max_agents
        self.action_mode = ActionMode(action_mode)
        self._seed = seed
        self._routes_fixed = routes
        n = max_agents - 1
        self.single_observation_space = spaces.Dict({
            "route": spaces.Box(-np.inf, np.inf, (ROUTE_POINTS, 2), np.float32),
            "agents": spaces.Box(-np.inf, np.inf, (n, 7), np.float32),
            "agents_valid": spaces.MultiBinary(n),
            "ego": spaces.Box(-np.inf, np.inf, (5,), np.float32),
        })
        if self.action_mode is ActionMode.CONTROLS:
            self.single_action_space = spaces.Box(np.array([0, -1, 0], np.float32), np.array([1, 1, 1], np.float32))
        else:
            lo = np.full(2 * PATH_POINTS + 1, -100.0, np.float32)
            hi = np.full(2 * PATH_POINTS + 1, 100.0, np.float32)
            lo[-1], hi[-1] = 0.0, MAX_TARGET_SPEED
            self.single_action_space = spaces.Box(lo, hi)
        self.controller = PIDController(num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, bool)

    def _new_routes(self, n: int, seed: int) -> list[DenseRoute]:
        if self._routes_fixed is not None:
            return [self._routes_fixed[i % len(self._routes_fixed)] for i in range(n)]
        return [plan_route(self.map, r) for r in random_routes(self.map, n, seed=seed, min_length=150.0)]

    def _build(self, seed: int) -> None:
        self.loop = ClosedLoop(self.map, self._new_routes(self.num_envs, seed), seed=seed,
                               max_agents=self.max_agents, log_trajectory=False)

    @property
    def state(self):
        return self.loop.state

    @property
    def monitor(self) -> RouteMonitor:
        return self.loop.monitor

    @property
    def routes(self) -> list[DenseRoute]:
        return self.loop.routes

    def _obs(self):
        sc, _ = self.loop.perceive(privileged=False)
        ego = np.stack([sc.ego_speed, sc.speed_limit, np.minimum(sc.light_dist, 1e3), sc.light_state,
                        np.minimum(sc.stop_dist, 1e3)], 1)
        return {"route": sc.route.astype(np.float32), "agents": sc.agents.astype(np.float32),
                "agents_valid": sc.agents_valid.astype(np.int8), "ego": ego.astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._seed = seed
        self._build(self._seed)
        self.controller.reset()
        self._autoreset[:] = False
        return self._obs(), {}

    def step(self, actions):
        a = np.asarray(actions, dtype=np.float64)
        want = (self.num_envs,) + self.single_action_space.shape
        if a.shape != want or not np.all(np.isfinite(a)):
            raise ValueError(f"actions: expected finite {want} for action mode {self.action_mode.value}, got "
                             f"{a.shape}{'' if np.all(np.isfinite(a)) else ' with non-finite values'}")
        if self._autoreset.any():  # finished envs start again on fresh routes: one masked update of the loop
            self._seed += 1
            self.loop.reset_envs(self._autoreset, self._new_routes(self.num_envs, self._seed), seed=self._seed)
            self.controller.reset(self._autoreset)
        rc0 = self.monitor.rc.copy()
        ncoll0 = self._collisions()
        done = self.loop.step(self._controls(a))
        reward = (self.monitor.rc - rc0) + COLLISION_REWARD * (self._collisions() - ncoll0)
        completed = self.monitor.completed.copy()
        terminated = done & ~self._autoreset
        self._autoreset = done
        return self._obs(), reward.astype(np.float32), terminated, np.zeros(self.num_envs, bool), {
            "route_completion": self.monitor.rc.copy(), "completed": completed}

    def _controls(self, a: np.ndarray) -> Controls:
        if self.action_mode is ActionMode.CONTROLS:
            return Controls(np.clip(a[:, 0], 0, 1), np.clip(a[:, 1], -1, 1), np.clip(a[:, 2], 0, 1))
        path = a[:, :-1].reshape(self.num_envs, PATH_POINTS, 2)  # (E, P, 2) [m] ego frame
        target = np.clip(a[:, -1], 0.0, MAX_TARGET_SPEED)  # (E,) [m/s]
        th, st, br = self.controller(path, target, self.state.speed[:, 0].astype(np.float64))
        return Controls(th, st, br)

    def _collisions(self) -> np.ndarray:
        """(E,) collisions registered so far (the monitor's event table)."""
        n = np.zeros(self.num_envs)
        for ev in self.monitor.events:
            if ev.key in ("collisions_layout", "collisions_pedestrian", "collisions_vehicle"):
                n[ev.env] += 1
        return n
