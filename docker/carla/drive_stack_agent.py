"""The Leaderboard 2.0 / Bench2Drive agent of drive-stack (docker/compose.carla.yaml's evaluator loads it with
`--agent`). A ROS 2 agent: the Leaderboard starts the carla-ros-bridge and, from `get_ros_entrypoint()`, a ROS launch;
the stack itself runs in its own container (the `stack` service, docker/Dockerfile.gpu) and talks to the bridge over
DDS. The launch started here (`drive_stack_remote`, beside this file) only watches the stack's liveness
(/drive_stack/node_ready, repeated by every node every 0.25 s) and exits when a node falls silent, so the
Leaderboard's per-step check that the agent process is alive sees a dead stack.

Inputs. The stack perceives from the bridge's privileged pseudo sensors (ground-truth objects, odometry, light
status, the OpenDRIVE map), which `sensors()` may not declare (the Leaderboard accepts cameras, lidars, radars, GNSS,
IMU, speedometer, map: shared/carla_lb2/CONTRACT.md sec. 5-6): they are spawned through the same
/carla/spawn_object service when the Leaderboard spawns the declared speedometer. So this is a privileged research
setup, not a valid Leaderboard submission. Topics: /carla/hero/odometry, /carla/hero/objects (on the hero),
/carla/traffic_lights/{info,status} (on the world), as the stack's node table names them; the map comes from the
bridge's /carla/world_info and the route from the Leaderboard's /carla/hero/global_plan (carla_msgs/CarlaRoute),
which the stack reads as its pseudo-simulator sends them (drivesim/stack/leaderboard.py). Untested: no CARLA server
here.
"""

from __future__ import annotations

import carla
from leaderboard.autoagents.autonomous_agent import Track
from leaderboard.autoagents.ros2_agent import ROS2Agent

# (bridge type, id -> topic, attached to the hero? else to the world)
PRIVILEGED = (
    ("sensor.pseudo.odom", "odometry", True),  # /carla/hero/odometry
    ("sensor.pseudo.objects", "objects", True),  # /carla/hero/objects
    ("sensor.pseudo.traffic_lights", "traffic_lights", False),  # /carla/traffic_lights/{info,status}
)


def get_entry_point():
    return "DriveStackAgent"


class DriveStackAgent(ROS2Agent):
    def setup(self, path_to_conf_file):
        self.track = Track.SENSORS
        self._privileged = []

    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "speed"}]

    def get_ros_entrypoint(self):
        return {"package": "drive_stack_remote", "launch_file": "remote_stack.launch.py", "parameters": {}}

    def spawn_object(self, type_, id_, transform, attributes, attach_to=0):
        uid = super().spawn_object(type_, id_, transform, attributes, attach_to)
        if attach_to and not getattr(self, "_privileged", None):
            self._privileged = [super(DriveStackAgent, self).spawn_object(t, i, carla.Transform(), {},
                                                                          attach_to if on_hero else 0)
                                for t, i, on_hero in PRIVILEGED]
        return uid

    def destroy(self):
        for uid in getattr(self, "_privileged", []):
            try:
                self.destroy_object(uid)
            except RuntimeError:
                pass
        self._privileged = []
        super().destroy()
