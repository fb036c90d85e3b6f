"""Every node's parameters as one typed config each (no rclpy import): the node declares them from here with
their ROS types and descriptions (`common.StackNode.declare_params`), config/stack.yaml documents exactly these
keys (a test checks it), and the values are validated when the config is built (the field named in the error).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from drivesim.sim.perception import PERCEPTION_RANGE
from drivesim.stack.takeover import TakeoverConfig
from drivesim.typed import check


@dataclass(frozen=True)
class NodeParams:
    fault: str = ""  # fault injection for tests and demos: KIND@T (stall, nan, exit, raise; see drivesim.stack.faults)

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class PseudoSimParams(NodeParams):
    routes_file: str = ""  # Leaderboard 2.0 / Bench2Drive route XML
    route_id: str = ""  # the route of that file to drive
    maps_dir: str = ""  # OpenDRIVE folder (default: $DRIVE_STACK_MAPS or $CARLA_ROOT's); Proc<seed> towns need none
    seed: int = 0  # scene seed (background traffic, light phases)
    out_dir: str = "results/stack"  # results.json + summary.json (same shape as drive-stack eval)
    tick_timeout: float = 1.0  # [s wall] wait for the tick's command, then count a missed tick
    setup_time: float = 1.0  # [s wall] between the route and the first tick, as the Leaderboard spends it on the
    # agent's setup() and spawning its sensors through the bridge (a stack's readers match the simulator's writers)
    republish_period: float = 0.0  # [s wall] re-send the tick's messages while waiting (0: never, as the bridge,
    # which publishes each tick once; > 0 only to debug a stack that joins late)
    start_timeout: float = 120.0  # [s wall] wait for /carla/hero/status
    offer_expert: bool = True  # publish the privileged expert's command (the takeover monitor hands control to it)
    perception: Literal["privileged", "sensors", "none"] = "privileged"  # what the pseudo-simulator spawns as the Leaderboard and the drive-stack agent
    # would: privileged (map, speedometer; odometry, objects, lights pseudo sensors), sensors (GNSS, IMU,
    # speedometer, map; objects and lights from an ideal detector on /drive_stack/detector/*), none (only what comes
    # through /carla/spawn_object)
    expert_policy: str = "expert"  # the policy whose commands are offered as the expert's
    gnss_noise: float = 5e-6  # [deg] the GNSS sensor's noise (the Leaderboard's noise_{lat,lon}_stddev; 0: none)
    max_agents: int = 64  # agent slots of the scene (ego included)
    policy_name: str = ""  # the planner's policy, written into the results (informational)
    index: int = 0  # the route's index in results.json
    wired_nodes: list[str] = field(default_factory=lambda: [""])  # the stack's nodes whose endpoints the first tick
    # waits for (each announces them on /drive_stack/node_reads): all but the simulator; without this list only the
    # nodes it had heard of counted, and a node whose announcement came late missed tick 0 (seen in CI)


@dataclass(frozen=True)
class PerceptionParams(NodeParams):
    max_agents: int = 64  # agent slots of the perceived scene (ego included)
    perception_range: float = PERCEPTION_RANGE  # [m] agents farther away are not seen
    bev_every: int = 10  # publish the BEV raster every N ticks (2 Hz at 20 Hz; 0: never)
    perception: Literal["privileged", "sensors"] = "privileged"  # privileged: the bridge's odometry, objects and
    # light pseudo sensors; sensors: the ego from GNSS + IMU + speedometer, objects and lights from the detector
    # topics (/drive_stack/detector/*)
    gnss_noise: float = 5e-6  # [deg] sensors: the GNSS noise the position filter assumes (the Leaderboard's; 0: the
    # fixes as they come)


@dataclass(frozen=True)
class PlannerParams(NodeParams):
    policy: str = "rule"  # rule | expert | il | perlad | perlad_logreplay | takead | takevla (learned: ONNX, needs /carla/world_info)
    model: str = ""  # learned policies: an ONNX file instead of <models dir>/<policy>/planner.onnx
    backend: Literal["auto", "tensorrt", "ort-cuda", "ort-cpu"] = "auto"  # inference backend (auto: TensorRT >
    # ONNX Runtime CUDA > CPU)
    wait_for: list[str] = field(default_factory=lambda: [""])  # nodes that must be up before the stack reports ready
    max_agents: int = 64  # agent slots of the scene (ego included)
    honour_advisory: bool = False  # cap the target speed by the reasoning node's advisory (/drive_stack/reasoning)
    advisory_ttl: float = 1.0  # [s sim time] an advisory older than this (by its scene's stamp) no longer caps
    check: float = 0.0  # [s] learned planners (il, perlad, perlad_logreplay, takead): the candidate check's horizon
    # (drivesim.policies.learned.CandidateCheck, as `drive-stack eval --check`; 0: off)
    unstall: float = 0.0  # [s] with check: where the ego has stood this long and the plan still stands,
    # drive the best-scored candidate the check clears (CandidateCheck.unstall, as `eval --unstall`; 0: off)
    check_margin: float = 0.0  # [m] with check: the forecast ego's box this much wider on each side
    # (CandidateCheck.margin, as `eval --check-margin`; 0: as it is)


@dataclass(frozen=True)
class ReasoningParams(NodeParams):
    rate_hz: float = 2.0  # [Hz of sim time] reasoning messages per second
    max_agents: int = 64  # agent slots of the scene (ego included)
    model: str = "rule"  # rule | takevla (TakeVLA's ONNX commentary) | hf (a local Hugging Face VLM); learned: need the map
    model_file: str = ""  # takevla: a vla.onnx instead of <models dir>/takevla/vla.onnx; hf: the model's folder
    backend: Literal["auto", "tensorrt", "ort-cuda", "ort-cpu"] = "auto"  # inference backend for takevla
    camera_topic: str = ""  # hf: a sensor_msgs/Image topic the model sees instead of the BEV raster (e.g. the
    # Leaderboard camera /carla/hero/rgb_front/image); "": the raster


@dataclass(frozen=True)
class ViewsParams(NodeParams):
    every: int = 2  # markers for every N-th scene (10 Hz at 20 Hz ticks)


@dataclass(frozen=True)
class TakeoverMonitorParams(NodeParams, TakeoverConfig):
    """The takeover gate's own config (drivesim.stack.takeover.TakeoverConfig) plus what the node needs."""

    max_agents: int = 64  # agent slots of the scene (ego included)

    def __post_init__(self):
        TakeoverConfig.__post_init__(self)
        check(self)

    def gate(self) -> TakeoverConfig:
        return TakeoverConfig(**{f.name: getattr(self, f.name) for f in fields(TakeoverConfig)})


@dataclass(frozen=True)
class RecorderParams(NodeParams):
    mode: Literal["takeover", "continuous", "both"] = "takeover"  # one bag per takeover, continuous segments, or both
    out_dir: str = "results/stack/bags"  # where the bags go
    pre: float = 10.0  # [s sim] recorded before a takeover
    post: float = 5.0  # [s sim] recorded after it
    grace: float = 0.5  # [s sim] a takeover bag is written this long after its window closed (late messages of its
    # last ticks, stamped inside the window, are in)
    segment: float = 5.0  # [s sim] continuous-mode segment length


def parse_set(items: list[str]) -> dict[str, dict]:
    """`--set NODE.PARAM=VALUE` options -> {node: {param: value}}, each value converted to the field's type and
    validated by building the node's config (an unknown node or parameter, or a bad value, raises ValueError
    naming it)."""
    import typing

    out: dict[str, dict] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        node, dot, name = key.partition(".")
        if not eq or not dot:
            raise ValueError(f"--set {item!r}: expected NODE.PARAM=VALUE, e.g. takeover_monitor.steer_threshold=0.2")
        if node not in PARAMS:
            raise ValueError(f"--set {item!r}: unknown node {node!r}; nodes: {', '.join(PARAMS)}")
        cls = PARAMS[node]
        hints = typing.get_type_hints(cls)
        if name not in {f.name for f in fields(cls)}:
            raise ValueError(f"--set {item!r}: {node} has no parameter {name!r}; its parameters: "
                             f"{', '.join(f.name for f in fields(cls))}")
        t = hints[name]
        try:
            if t is bool:
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError("expected true or false")
                v = raw.lower() in ("true", "1")
            elif t in (int, float):
                v = t(raw)
            elif typing.get_origin(t) is list:
                v = [x for x in raw.split(",")]
            else:
                v = raw
        except ValueError as e:
            raise ValueError(f"--set {item!r}: {e}") from None
        out.setdefault(node, {})[name] = v
    for node, kw in out.items():
        try:
            PARAMS[node](**kw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"--set {node}: {e}") from None
    return out


PARAMS: dict[str, type[NodeParams]] = {
    "pseudo_sim": PseudoSimParams, "perception_input": PerceptionParams, "planner": PlannerParams,
    "vla_reasoning": ReasoningParams, "takeover_monitor": TakeoverMonitorParams, "recorder": RecorderParams,
    "views": ViewsParams,
}
