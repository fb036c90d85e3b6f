"""Closed-loop evaluation of one route in the pseudo-simulator (20 Hz), scored as Bench2Drive does."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..maps.lanegraph import LaneGraph
from ..metrics.monitor import RouteMonitor
from ..policies import make_policy
from ..routes.planner import DenseRoute, plan_route
from ..routes.xml import RouteSpec
from ..sim.perception import PERCEPTION_RANGE, PRIVILEGED_RANGE, ScenePerceiver
from ..sim.scene import route_scene
from ..sim.state import EGO, SimState
from ..sim.world import Simulator


def scenario_note(types) -> str | None:
    """What the summary says about scenario types that run with background traffic only (not simulated yet)."""
    from ..scenarios import SIMULATED_TYPES

    missing = sorted({t for t in types if t and t not in SIMULATED_TYPES})
    return (f"scenario types not simulated yet (background traffic only): {', '.join(missing)}" if missing else None)



def leaderboard_route_id(route_id: str, rep: int = 0) -> str:
    return f"RouteScenario_{route_id}_rep{rep}"


@dataclass
class Episode:
    """What a closed-loop run leaves behind: the record and (optionally) every state."""

    record: dict
    route: DenseRoute
    states: list[SimState] = field(default_factory=list)
    steps: int = 0
    wall_time: float = 0.0


def run_route(g: LaneGraph, spec: RouteSpec, policy: str = "rule", seed: int = 0, max_agents: int = 64,
              background: bool = True, keep_states: bool = False, index: int = 0, observer=None,
              noise=None) -> Episode:
    """Drive one route to its end (completion, deviation, blocked or timeout) and score it.

    observer(state, lights, controls, plan, pol): called every step before the simulator steps (the dataset
    writer); noise(state, controls) -> controls: what is executed instead of the policy's controls (recovery
    data: the observer still sees the policy's own controls as the label)."""
    t0 = time.perf_counter()
    dense = plan_route(g, spec)
    state = route_scene(g, [dense], max_agents=max_agents, seed=seed, background=background,
                        scenarios=[spec.scenarios[0] if spec.scenarios else None])
    sim = Simulator(g)
    pol = make_policy(policy, 1, g=g)
    perceive = ScenePerceiver(g, [dense], perception_range=PRIVILEGED_RANGE if pol.privileged else PERCEPTION_RANGE,
                             occlusion=not pol.privileged)
    monitor = RouteMonitor(g, [dense], scenarios=[spec.scenarios[0] if spec.scenarios else None])
    states = [state] if keep_states else []
    lights = sim.lights(state)
    steps = 0
    while True:
        scene = perceive(state, lights)
        controls, plan = pol.act(scene, perceive.truth(state, lights) if pol.privileged else None)
        controls.validate()
        if observer is not None:
            observer(state, lights, controls, plan, pol)
        new = sim.step(state, noise(state, controls) if noise is not None else controls)
        lights = sim.lights(new)
        done = monitor.update(state, new, lights)
        state = new
        steps += 1
        if keep_states:
            states.append(state)
        if done[0]:
            break
    wall = time.perf_counter() - t0
    rec = monitor.record(0, leaderboard_route_id(spec.route_id), index=index, duration_system=wall, town=spec.town)
    rec["meta"]["seed"] = seed
    rec["meta"]["final_position"] = [float(state.x[0, EGO]), float(state.y[0, EGO])]
    return Episode(rec, dense, states, steps, wall)


def realtime_factor(ep: Episode, dt: float = 0.05) -> float:
    return ep.steps * dt / max(ep.wall_time, 1e-9)


__all__ = ["Episode", "leaderboard_route_id", "realtime_factor", "run_route", "scenario_note"]
