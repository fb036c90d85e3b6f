"""The stack's node table: one source for the launch file (ROS installs) and `drive-stack stack run` (here).

No rclpy import: the launch file and the in-process launcher both read this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivesim.stack.topics import (  # noqa: F401 - the topic names, re-exported for the nodes
    BEV,
    CLOCK,
    CONTROL_CMD,
    DETECTED_LIGHTS,
    DETECTED_LIGHTS_INFO,
    DETECTED_OBJECTS,
    DIAGNOSTICS,
    EXPERT_CMD,
    EXPERT_PLAN,
    GLOBAL_PLAN,
    GLOBAL_PLAN_GNSS,
    GNSS,
    HERO_STATUS,
    IMU,
    MARKERS,
    NODE_READS,
    NODE_READY,
    OBJECTS,
    ODOMETRY,
    PLAN,
    PLANNER_CMD,
    REASONING,
    SCENE,
    SPEEDOMETER,
    STATUS,
    TAKEOVER,
    TRAFFIC_LIGHTS,
    TRAFFIC_LIGHTS_INFO,
    WORLD_INFO,
)


@dataclass(frozen=True)
class NodeSpec:
    name: str  # ROS node name (also the key under which its parameters live)
    executable: str  # console_scripts entry point
    module: str  # python -m module (what `stack run` starts)
    sim_only: bool = False  # started only with sim:=pseudo (the pseudo-simulator stands in for CARLA)
    defaults: dict = field(default_factory=dict)  # parameter defaults, documented in config/stack.yaml


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("pseudo_sim", "pseudo_sim", "drive_stack.pseudo_sim", sim_only=True),
    NodeSpec("perception_input", "perception_input", "drive_stack.perception_input"),
    NodeSpec("planner", "planner", "drive_stack.planner"),
    NodeSpec("vla_reasoning", "vla_reasoning", "drive_stack.vla_reasoning"),
    NodeSpec("takeover_monitor", "takeover_monitor", "drive_stack.takeover_monitor"),
    NodeSpec("views", "views", "drive_stack.views"),
    NodeSpec("recorder", "recorder", "drive_stack.recorder"),
)

# Topics of the contract (shared/DESIGN.md) and of the stack: drivesim/stack/topics.py

# what the recorder keeps (topic -> rosbag message type)
RECORDED = {
    ODOMETRY: "nav_msgs/msg/Odometry",
    OBJECTS: "derived_object_msgs/msg/ObjectArray",
    TRAFFIC_LIGHTS: "carla_msgs/msg/CarlaTrafficLightStatusList",
    TRAFFIC_LIGHTS_INFO: "carla_msgs/msg/CarlaTrafficLightInfoList",
    GNSS: "sensor_msgs/msg/NavSatFix",
    IMU: "sensor_msgs/msg/Imu",
    SPEEDOMETER: "carla_msgs/msg/CarlaSpeedometer",
    DETECTED_OBJECTS: "derived_object_msgs/msg/ObjectArray",
    DETECTED_LIGHTS: "carla_msgs/msg/CarlaTrafficLightStatusList",
    DETECTED_LIGHTS_INFO: "carla_msgs/msg/CarlaTrafficLightInfoList",
    GLOBAL_PLAN: "carla_msgs/msg/CarlaRoute",
    CONTROL_CMD: "carla_msgs/msg/CarlaEgoVehicleControl",
    PLANNER_CMD: "carla_msgs/msg/CarlaEgoVehicleControl",
    EXPERT_CMD: "carla_msgs/msg/CarlaEgoVehicleControl",
    EXPERT_PLAN: "drive_stack_msgs/msg/Plan",
    WORLD_INFO: "carla_msgs/msg/CarlaWorldInfo",
    SCENE: "drive_stack_msgs/msg/PerceivedScene",
    PLAN: "drive_stack_msgs/msg/Plan",
    REASONING: "drive_stack_msgs/msg/Reasoning",
    TAKEOVER: "drive_stack_msgs/msg/TakeoverEvent",
    STATUS: "drive_stack_msgs/msg/StackStatus",
    DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
    MARKERS: "visualization_msgs/msg/MarkerArray",
}

# published once or only on change, TRANSIENT_LOCAL: the recorder subscribes to them latched and puts the last of
# each before a takeover's window (and those inside it) into its bag, so a bag replays (and `takeover ingest` reads
# it) alone
LATCHED_TOPICS = (WORLD_INFO, GLOBAL_PLAN, TRAFFIC_LIGHTS, TRAFFIC_LIGHTS_INFO, DETECTED_LIGHTS, DETECTED_LIGHTS_INFO)


def ready_set(sim: str) -> list[str]:
    """The nodes the planner waits for before reporting the stack ready (all but itself and the simulator)."""
    return [n.name for n in nodes_for(sim) if n.name not in ("planner", "pseudo_sim")]


def nodes_for(sim: str) -> list[NodeSpec]:
    """sim='pseudo': the whole table; sim='carla': without the pseudo-simulator (CARLA + bridge provide it)."""
    if sim not in ("pseudo", "carla"):
        raise ValueError(f"sim:={sim!r}: expected 'pseudo' or 'carla'")
    return [n for n in NODES if sim == "pseudo" or not n.sim_only]
