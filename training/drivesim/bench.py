"""Benchmarks of the pseudo-simulator (results as JSON; never timed unit tests)."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from .evaluation.runner import realtime_factor, run_route
from .maps import TownLoader
from .metrics.monitor import RouteMonitor
from .routes.generate import random_routes
from .routes.planner import plan_route
from .sim.scene import route_scene, spawn_background
from .sim.state import Behavior
from .sim.world import Controls, Simulator


def bench_sim(num_envs: int = 256, max_agents: int = 64, steps: int = 100, town: str = "Proc0",
              maps_dir: str | None = None, seed: int = 0) -> dict:
    g = TownLoader(maps_dir).load(town)
    specs = random_routes(g, min(num_envs, 16), seed=seed)
    dense = [plan_route(g, specs[e % len(specs)]) for e in range(num_envs)]
    state = route_scene(g, dense, max_agents=max_agents, seed=seed, background=False)
    rng = np.random.default_rng(seed)
    for e in range(num_envs):  # dense traffic: fill every slot with IDM vehicles
        spawn_background(state, e, g, dense[e].xy, rng, spacing=12.0, radius=400.0)
    n_idm = int((state.valid & (state.behavior == Behavior.IDM)).sum())
    sim = Simulator(g)
    monitor = RouteMonitor(g, dense, log_trajectory=False)
    controls = Controls(np.full(num_envs, 0.3), np.zeros(num_envs), np.zeros(num_envs))
    lights = sim.lights(state)
    state = sim.step(state, controls)  # warm-up
    t0 = time.perf_counter()
    t_sim = 0.0
    for _ in range(steps):
        a = time.perf_counter()
        new = sim.step(state, controls)
        t_sim += time.perf_counter() - a
        lights = sim.lights(new)
        monitor.update(state, new, lights)
        state = new
    wall = time.perf_counter() - t0
    agent_steps = num_envs * max_agents * steps
    # a single closed-loop route with the rule policy and background traffic
    spec = random_routes(g, 1, seed=seed + 1)[0]
    ep = run_route(g, spec, "rule", seed=seed)
    return {
        "what": ("batched step (ego bicycle + IDM lane following with lights, stop signs, junction yielding) "
                 "plus every Bench2Drive criterion (collisions, red lights, stop signs, lanes, progress, TTC) "
                 "every step; agent-steps counts all env x agent slots"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "town": town,
        "num_envs": num_envs,
        "max_agents": max_agents,
        "idm_agents": n_idm,
        "steps": steps,
        "agent_steps_per_s": agent_steps / wall,
        "agent_steps_per_s_step_only": agent_steps / t_sim,
        "ms_per_step": 1000 * wall / steps,
        "target_agent_steps_per_s": 5_000_000,
        "single_route": {"route_length_m": ep.record["meta"]["route_length"], "sim_time_s": ep.steps * 0.05,
                         "wall_s": ep.wall_time, "realtime_factor": realtime_factor(ep), "target_realtime_factor": 100,
                         "status": ep.record["status"]},
    }
