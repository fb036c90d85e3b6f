"""Batched simulator state: (num_envs, max_agents) arrays with valid masks. Agent 0 of every env is the ego."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

DT = 0.05  # [s] closed-loop step, as CARLA Leaderboard 2.0 (20 Hz)
if TYPE_CHECKING:
    from .flows import Flows
    from .perturb import Perturbations
    from .script import Script

EGO = 0  # index of the controlled agent


class AgentKind(enum.IntEnum):
    VEHICLE = 0
    PEDESTRIAN = 1
    CYCLIST = 2
    STATIC = 3  # props: cones, barriers, containers (collisions_layout)
    EMERGENCY = 4  # an emergency vehicle (ambulance, police, fire truck) with sirens: the ego must yield


class Behavior(enum.IntEnum):
    CONTROLLED = 0  # the ego: driven by controls
    STATIC = 1  # never moves
    REPLAY = 2  # follows its logged trajectory
    IDM = 3  # lane following with IDM, traffic lights, stop signs and junction yielding
    WALKER = 4  # walks straight along its heading at its desired speed for `s` metres, then stands
    SCRIPTED = 5  # scenario actor: follows its script (sim/script.py): a path, a trigger, speeds by phase


class LightState(enum.IntEnum):
    """carla.TrafficLightState values."""

    RED = 0
    YELLOW = 1
    GREEN = 2
    OFF = 3


class Codes:
    """An IntEnum's members as plain ints (``BEH.IDM == 3``). Per-step array code compares against these: numpy
    compares an array with an IntEnum member about 6x slower than with a plain int (measured: 3.3 vs 0.55 us),
    and a single-route step makes dozens of such comparisons."""

    def __init__(self, e: type[enum.IntEnum]):
        self.__dict__.update({m.name: int(m) for m in e})


KIND, BEH, LIGHT = Codes(AgentKind), Codes(Behavior), Codes(LightState)


@dataclass
class SimState:
    """All arrays are (E, A) unless noted; E = num_envs, A = max_agents (agent 0 = ego)."""

    x: np.ndarray  # [m] CARLA frame, centre of the box
    y: np.ndarray  # [m]
    yaw: np.ndarray  # [rad]
    speed: np.ndarray  # [m/s] signed along the heading
    accel: np.ndarray  # [m/s^2] last longitudinal acceleration
    length: np.ndarray  # [m]
    width: np.ndarray  # [m]
    kind: np.ndarray  # int8 AgentKind
    behavior: np.ndarray  # int8 Behavior
    valid: np.ndarray  # bool
    lane: np.ndarray  # int32 current lane (IDM agents), -1 otherwise
    s: np.ndarray  # [m] arc length on that lane (IDM); distance left to walk (WALKER)
    next_lane: np.ndarray  # int32 chosen successor lane, -1 at a dead end
    desired_speed: np.ndarray  # [m/s] IDM v0 / walker speed
    stop_wait: np.ndarray  # [s] time stopped at the current stop sign (IDM), -1 = not yet at one
    rng: np.ndarray  # uint32 per-agent random stream (route choices)
    steer: np.ndarray  # (E,) [rad] ego front-wheel angle
    t: np.ndarray  # (E,) [s] simulation time
    light_offset: np.ndarray  # (E, T) [s] phase offset of every traffic light's cycle
    log_xyyv: np.ndarray | None = None  # (E, A, K, 4) x, y, yaw, speed logged at DT, for REPLAY agents
    log_valid: np.ndarray | None = None  # (E, A, K) bool
    script: Script | None = None  # scenario actors' scripts (sim/script.py), for SCRIPTED agents
    flows: Flows | None = None  # actor flows (sim/flows.py): sources that keep spawning IDM vehicles
    perturb: Perturbations | None = None  # control loss events on the ego (sim/perturb.py)

    @property
    def num_envs(self) -> int:
        return self.x.shape[0]

    @property
    def max_agents(self) -> int:
        return self.x.shape[1]

    def replace(self, **kw) -> SimState:
        return dataclasses.replace(self, **kw)

    def copy(self) -> SimState:
        return dataclasses.replace(
            self, **{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).copy())
                     for f in dataclasses.fields(self)}
        )

    def map_arrays(self, fn) -> SimState:
        """A new state with fn applied to every array field, nested scripts, flows and perturbations
        included (all of them have the env axis first)."""

        def go(v):
            if v is None:
                return None
            if dataclasses.is_dataclass(v):
                return dataclasses.replace(v, **{f.name: go(getattr(v, f.name)) for f in dataclasses.fields(v)})
            return fn(v)

        return go(self)

    def merge_envs(self, mask: np.ndarray, other: SimState) -> SimState:
        """A new state: env e from `other` where mask[e], else from self (gym's autoreset as one masked update).
        Every array field, nested scripts, flows and perturbations included, is merged the same way; the two
        states must have the same layout (fields present in both or in neither, equal shapes)."""
        mask = np.asarray(mask, bool)

        def go(a, b, name):
            if a is None and b is None:
                return None
            if (a is None) != (b is None):
                raise ValueError(f"SimState.merge_envs: {name} is set in one state only")
            if dataclasses.is_dataclass(a):
                return dataclasses.replace(a, **{f.name: go(getattr(a, f.name), getattr(b, f.name), f"{name}.{f.name}")
                                                 for f in dataclasses.fields(a)})
            if a.shape != b.shape:
                raise ValueError(f"SimState.merge_envs: {name} has shape {a.shape} here and {b.shape} in the other")
            return np.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), b, a)

        return SimState(**{f.name: go(getattr(self, f.name), getattr(other, f.name), f.name)
                           for f in dataclasses.fields(self)})

    def tile(self, k: int) -> SimState:
        """A state of E*k envs: every env repeated k times in a row (env e -> envs e*k .. e*k+k-1)
        (counterfactual branches from one state, sim/branch.py)."""
        return self.map_arrays(lambda a: np.repeat(a, k, axis=0))

    def env(self, e: int) -> SimState:
        """Env e as a state of one env (a copy)."""
        return self.map_arrays(lambda a: a[e:e + 1].copy())

    def validate(self) -> None:
        """Raise ValueError naming the first field whose shape or dtype is wrong, or that holds NaN."""
        E, A = self.x.shape
        for f in ("y", "yaw", "speed", "accel", "length", "width", "kind", "behavior", "valid", "lane", "s",
                  "next_lane", "desired_speed", "stop_wait", "rng"):
            if getattr(self, f).shape != (E, A):
                raise ValueError(f"SimState.{f}: shape {getattr(self, f).shape}, expected {(E, A)}")
        for f in ("steer", "t"):
            if getattr(self, f).shape != (E,):
                raise ValueError(f"SimState.{f}: shape {getattr(self, f).shape}, expected {(E,)}")
        if self.valid.dtype != bool:
            raise ValueError("SimState.valid: dtype must be bool")
        for f in ("x", "y", "yaw", "speed"):
            a = getattr(self, f)
            if not np.all(np.isfinite(a[self.valid])):
                raise ValueError(f"SimState.{f}: non-finite values on valid agents")
        if self.log_xyyv is not None and self.log_xyyv.shape[:2] != (E, A):
            raise ValueError(f"SimState.log_xyyv: shape {self.log_xyyv.shape}, expected ({E}, {A}, K, 4)")


def empty_state(num_envs: int, max_agents: int, num_lights: int = 0) -> SimState:
    """A state with every agent invalid (except nothing: the caller places the ego)."""
    E, A = num_envs, max_agents
    f = lambda v=0.0: np.full((E, A), v, np.float32)  # noqa: E731
    return SimState(
        x=f(), y=f(), yaw=f(), speed=f(), accel=f(), length=f(4.9), width=f(2.1),
        kind=np.zeros((E, A), np.int8), behavior=np.full((E, A), Behavior.STATIC, np.int8),
        valid=np.zeros((E, A), bool), lane=np.full((E, A), -1, np.int32), s=f(),
        next_lane=np.full((E, A), -1, np.int32), desired_speed=f(), stop_wait=f(-1.0),
        rng=np.zeros((E, A), np.uint32), steer=np.zeros(E, np.float32), t=np.zeros(E, np.float32),
        light_offset=np.zeros((E, num_lights), np.float32),
    )
