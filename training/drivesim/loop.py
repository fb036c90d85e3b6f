"""The closed loop: route -> scene -> simulator -> perception -> policy -> Bench2Drive scoring, for E envs.

`ClosedLoop` owns the routes, the simulator state, the simulator, the perception views and the route monitor.
Every place that drives a route goes through it: evaluation (`evaluation/runner.run_route`), the pseudo-simulator
node's core (`stack/core.PseudoSimCore`), the gym env (`gym_env.DriveVectorEnv`), data collection (expert, noisy
and DAgger drivers, `dataset/collect`) and rendering (`render.record_route_frames`).

- ``observe(policy)`` gives a policy exactly what it may see: the perceived scene (range + occlusion) for a policy
  whose class declares ``privileged = False``, the full-range scene plus the simulator's `Truth` for one that
  declares ``privileged = True`` (the `Policy` protocol; the flag is read from the class, never probed).
  Each view is computed once per step and shared by every policy that asks for it.
- ``step(controls)`` advances every env one tick (DT) and scores the transition; it returns ``done`` (E,).
- ``drive(loop, policy, ...)`` runs one or more policies until every env is done: the policy whose controls are
  labels (and, unless a `driver` is given, executed), an optional driver (DAgger: its controls are executed,
  from its own view), an optional perturbation of the executed controls (recovery data) and an optional
  takeover gate (`stack/takeover.TakeoverGate`, offline: the same rule as the ROS takeover monitor).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from .maps.lanegraph import LaneGraph
from .metrics.bench2drive import junction_meta
from .metrics.monitor import RouteMonitor
from .routes.planner import DenseRoute, plan_route
from .routes.xml import RouteSpec
from .scenarios.scene import route_scene
from .sim.perception import PERCEPTION_RANGE, PRIVILEGED_RANGE, PerceivedScene, ScenePerceiver, Truth
from .sim.state import EGO, SimState
from .sim.world import Controls, Simulator


@runtime_checkable
class Policy(Protocol):
    """What the closed loop (and the ROS planner node) drives with. ``privileged`` is a class attribute: True
    for a policy that may see the simulator's truth (the expert), False for one that sees only the perceived
    scene. ``act`` returns the controls of every env and the plan behind them (path in the ego frame, target
    speed, speed profile); ``status[e]`` says what env e's last plan does and why (renders, debugging)."""

    privileged: ClassVar[bool]
    model_id: dict | None  # {'path', 'sha256'} of the model file a learned policy runs, else None
    E: int
    status: list[str]

    def act(self, scene: PerceivedScene, truth: Truth | None = None): ...

    def reset(self) -> None: ...


def is_privileged(policy) -> bool:
    """The policy's class-level declaration (the `Policy` protocol); a class without one is refused."""
    flag = getattr(type(policy), "privileged", None)  # the class's declaration (inherited ones count)
    if not isinstance(flag, bool):
        raise TypeError(f"{type(policy).__name__}: a policy must declare `privileged = True|False` as a class "
                        "attribute (drivesim.loop.Policy)")
    return flag


class ClosedLoop:
    """E envs, each driving its own dense route through its own scene (see the module docstring)."""

    def __init__(self, g: LaneGraph, routes: list[DenseRoute], scenarios: list | None = None, seed: int = 0,
                 max_agents: int = 64, background: bool = True, log_trajectory: bool = True,
                 state: SimState | None = None, perception: str = "privileged", geo_ref: tuple | None = None,
                 gnss_noise: float | None = None):
        self.map, self.routes = g, list(routes)
        self.scenarios = list(scenarios) if scenarios is not None else None
        self.seed, self.max_agents, self.background = seed, max_agents, background
        self.log_trajectory = log_trajectory
        self.state: SimState = state if state is not None else route_scene(
            g, self.routes, max_agents=max_agents, seed=seed, background=background, scenarios=self.scenarios)
        self.sim = Simulator(g)
        self.monitor = RouteMonitor(g, self.routes, scenarios=self.scenarios, log_trajectory=log_trajectory)
        self.lights = self.sim.lights(self.state)
        self._views: dict[bool, ScenePerceiver] = {}
        self._seen: dict[bool, tuple[PerceivedScene, Truth | None]] = {}
        self.steps = 0
        self.sim_seconds = 0.0  # wall time spent in Simulator.step (the benchmarks' step-only figure)
        # perception "sensors": a non-privileged policy's ego position is the GNSS fix (CARLA's noise) filtered with
        # the IMU's heading and the speedometer, as the stack's perception_input has it (sim/localization.py);
        # "privileged": the simulator's pose (the bridge's odometry pseudo sensor)
        if perception not in ("privileged", "sensors"):
            raise ValueError(f"perception {perception!r}: expected privileged or sensors")
        self.perception = perception
        self.gnss = self.gnss_filter = self.ego_estimate = None
        if perception == "sensors":
            from .sim.localization import GNSS_NOISE_DEG, GnssFilter, GnssSensor, noise_metres

            if geo_ref is None:
                raise ValueError("perception sensors needs the map's geoReference (geo_ref: sim.localization."
                                 "geo_reference of the town's OpenDRIVE)")
            noise = GNSS_NOISE_DEG if gnss_noise is None else float(gnss_noise)
            self.gnss = GnssSensor(geo_ref, self.num_envs, seed, noise)
            self.gnss_filter = GnssFilter(self.num_envs, noise_metres(geo_ref, noise))
            self._localize(0.0)

    @classmethod
    def for_route(cls, g: LaneGraph, spec: RouteSpec, seed: int = 0, max_agents: int = 64, background: bool = True,
                  log_trajectory: bool = True, **perception) -> ClosedLoop:
        """One env driving a route of a route file (its first scenario, as Bench2Drive runs it). perception: the
        `perception`, `geo_ref`, `gnss_noise` options."""
        return cls(g, [plan_route(g, spec)], [spec.scenarios[0] if spec.scenarios else None], seed=seed,
                   max_agents=max_agents, background=background, log_trajectory=log_trajectory, **perception)

    def _localize(self, dt: float, envs: np.ndarray | None = None) -> None:
        """perception sensors: this tick's GNSS fixes and the filter's ego positions (`ego_estimate`, (E, 2))."""
        st = self.state
        self.gnss.read(st.x[:, EGO], st.y[:, EGO], envs)
        self.ego_estimate = self.gnss_filter.update(self.gnss.xy, st.speed[:, EGO], st.yaw[:, EGO], dt, envs)

    def localized(self) -> SimState:
        """The state a non-privileged policy perceives from: the ego at its estimated position (sensors), else the
        simulator's."""
        if self.ego_estimate is None:
            return self.state
        x, y = self.state.x.copy(), self.state.y.copy()
        x[:, EGO], y[:, EGO] = self.ego_estimate[:, 0], self.ego_estimate[:, 1]
        return self.state.replace(x=x, y=y)

    # ------------------------------------------------------------------ what policies see
    @property
    def num_envs(self) -> int:
        return self.state.num_envs

    @property
    def t(self) -> np.ndarray:
        return self.state.t

    @property
    def done(self) -> np.ndarray:
        return self.monitor.done

    def view(self, privileged: bool) -> ScenePerceiver:
        """The perceiver of one kind of policy: range + occlusion, or (privileged) everything."""
        if privileged not in self._views:
            self._views[privileged] = ScenePerceiver(
                self.map, self.routes, perception_range=PRIVILEGED_RANGE if privileged else PERCEPTION_RANGE,
                occlusion=not privileged)
        return self._views[privileged]

    def perceive(self, privileged: bool = False) -> tuple[PerceivedScene, Truth | None]:
        """(scene, truth) of this step for a view; truth is None unless privileged. Computed once per step."""
        if privileged not in self._seen:
            v = self.view(privileged)
            scene = v(self.state if privileged else self.localized(), self.lights)
            self._seen[privileged] = (scene, v.truth(self.state, self.lights) if privileged else None)
        return self._seen[privileged]

    def observe(self, policy) -> tuple[PerceivedScene, Truth | None]:
        """Exactly what `policy` may see at this step (see the module docstring)."""
        return self.perceive(is_privileged(policy))

    # ------------------------------------------------------------------ stepping
    def step(self, controls: Controls) -> np.ndarray:
        """Advance every env by one tick with `controls` and score the transition; returns done (E,)."""
        controls.validate()
        t0 = time.perf_counter()
        new = self.sim.step(self.state, controls)
        self.sim_seconds += time.perf_counter() - t0
        lights = self.sim.lights(new)
        done = self.monitor.update(self.state, new, lights)
        self.state, self.lights = new, lights
        if self.gnss is not None:
            self._localize(self.sim.dt)
        self._seen.clear()
        self.steps += 1
        return done

    def reset_envs(self, mask: np.ndarray, routes: list[DenseRoute], seed: int,
                   scenarios: list | None = None) -> None:
        """Autoreset: envs where `mask` is set start again on `routes[e]` (a scene drawn with `seed`); the others
        carry on untouched. One masked update of the state, the monitor and the perception views."""
        mask = np.asarray(mask, bool)
        if not mask.any():
            return
        routes = [routes[e] if mask[e] else self.routes[e] for e in range(self.num_envs)]
        scen = None if scenarios is None and self.scenarios is None else [
            (scenarios[e] if scenarios is not None else None) if mask[e] else
            (self.scenarios[e] if self.scenarios is not None else None) for e in range(self.num_envs)]
        fresh = route_scene(self.map, routes, max_agents=self.max_agents, seed=seed, background=self.background,
                            scenarios=scen)
        self.state = self.state.merge_envs(mask, fresh)
        self.routes, self.scenarios = routes, scen
        monitor = RouteMonitor(self.map, routes, scenarios=scen, log_trajectory=self.log_trajectory)
        monitor.carry_over(~mask, self.monitor)
        self.monitor = monitor
        old_views = self._views
        self._views = {}
        for priv, old in old_views.items():
            self.view(priv).idx[~mask] = old.idx[~mask]
        self.lights = self.sim.lights(self.state)
        if self.gnss is not None:  # the fresh envs' filters start again from their first fix
            self.gnss_filter.reset(mask)
            self._localize(self.sim.dt, mask)
        self._seen.clear()

    # ------------------------------------------------------------------ results
    def record(self, e: int, route_id: str, index: int = 0, duration_system: float = 0.0, town: str = "") -> dict:
        """The Leaderboard 2.0 route record of env e (plus its final position and what Bench2Drive's Traffic_Signs
        junction credit needs)."""
        rec = self.monitor.record(e, route_id, index=index, duration_system=duration_system, town=town)
        rec["meta"]["final_position"] = [float(self.state.x[e, EGO]), float(self.state.y[e, EGO])]
        rec["meta"]["perception"] = self.perception
        rec["meta"].update(junction_meta(self.map, self.routes[e]))
        return rec


@dataclass
class Step:
    """What an observer sees at each step, before the simulator steps: the state and light states, the labelling
    policy's own controls and plan, the controls executed (after a driver, a perturbation or a takeover), and
    the controller of each env ('planner' when the policy or driver drives, else 'expert' or 'safe_stop')."""

    state: SimState
    lights: np.ndarray
    controls: Controls
    plan: object
    policy: object
    executed: Controls
    controller: list[str] = field(default_factory=list)
    acting: Controls | None = None  # the driving policy's own controls (the driver's, else the policy's), before
    # a perturbation or a takeover changed them

def plan_profile(plan, e: int) -> tuple[np.ndarray, np.ndarray]:
    """Env e's path and speed profile (a plan without a profile keeps its target speed, as the stack's Plan
    message does)."""
    path, profile = plan.points(e)
    return path, profile if profile is not None else np.full(len(path), float(plan.target_speed[e]))


def drive(loop: ClosedLoop, policy, *, driver=None, perturb: Callable[[SimState, Controls], Controls] | None = None,
          observer: Callable[[Step], None] | None = None, gate=None, expert=None,
          keep_states: bool = False, max_steps: int | None = None) -> dict:
    """Run `loop` until every env is done (or `max_steps`).

    Per step: `policy` acts on what it may see (its controls and plan are the labels); `driver` (if given) acts
    on its own view and its controls are executed instead (DAgger); `perturb(state, controls)` changes the
    executed controls (recovery data); `gate` (a `TakeoverGate`, or one per env) checks the driving policy's
    plan and may hand the env to `expert` (shadow mode: the expert's command every tick; `expert` may be
    `policy` itself, the labelling expert, whose controls are then reused) or a safe stop. Returns {'steps',
    'wall_s', 'states' (when keep_states), 'controllers' and 'moved' per step and env, 'takeovers' (per env, the
    gate's records)}."""
    gates = None if gate is None else (list(gate) if isinstance(gate, list | tuple) else [gate])
    if gates is not None and len(gates) != loop.num_envs:
        raise ValueError(f"drive: {len(gates)} takeover gates for {loop.num_envs} envs (one per env)")
    t0 = time.perf_counter()
    states = [loop.state] if keep_states else []
    steps = 0
    who: list[list[str]] = []  # per step, per env: the controller ('planner' unless a gate took over)
    moved: list[np.ndarray] = []  # per step: how far each ego went [m]
    while not loop.done.all() and (max_steps is None or steps < max_steps):
        scene, truth = loop.observe(policy)
        controls, plan = policy.act(scene, truth)
        executed, acting_plan, acting_scene = controls, plan, scene
        if driver is not None:
            acting_scene, dtruth = loop.observe(driver)
            executed, acting_plan = driver.act(acting_scene, dtruth)
        acting = executed
        if perturb is not None:
            executed = perturb(loop.state, executed)
        controller = ["planner"] * loop.num_envs
        if gates is not None:
            ec = ep = None
            if expert is not None:
                ec, ep = (controls, plan) if expert is policy else expert.act(*loop.observe(expert))
            cmds = []
            for e, g in enumerate(gates):
                path, profile = plan_profile(acting_plan, e)
                cmd = (float(executed.throttle[e]), float(executed.steer[e]), float(executed.brake[e]))
                ex = None if ec is None else (float(ec.throttle[e]), float(ec.steer[e]), float(ec.brake[e]))
                eprof = None if ep is None else plan_profile(ep, e)[1]
                c, controller[e] = g.tick_offline(float(loop.t[e]), acting_scene.env(e), path, profile, cmd, ex,
                                                  eprof)
                cmds.append(c)
            th, st, br = (np.array(v, np.float64) for v in zip(*cmds, strict=True))
            executed = Controls(th, st, br)
        if observer is not None:
            observer(Step(loop.state, loop.lights, controls, plan, policy, executed, controller, acting))
        x0, y0 = loop.state.x[:, EGO].astype(np.float64), loop.state.y[:, EGO].astype(np.float64)
        loop.step(executed)
        who.append(controller)
        moved.append(np.hypot(loop.state.x[:, EGO] - x0, loop.state.y[:, EGO] - y0))
        steps += 1
        if keep_states:
            states.append(loop.state)
    out = {"steps": steps, "wall_s": time.perf_counter() - t0, "states": states, "controllers": who,
           "moved": np.asarray(moved).reshape(steps, loop.num_envs)}
    if gates is not None:
        out["takeovers"] = [g.records() for g in gates]
    return out


__all__ = ["ClosedLoop", "Policy", "Step", "drive", "is_privileged"]
