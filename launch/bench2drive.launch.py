"""ros2 launch drive_stack bench2drive.launch.py [sim:=carla|pseudo] [params_file:=...] [policy:=rule]
                                                [perception:=privileged|sensors] [model:=planner.onnx]
                                                [reasoning:=rule|takevla|hf] [reasoning_model:=...]
                                                [reasoning_camera:=/carla/hero/rgb_front/image]

For a ROS 2 install (the Leaderboard 2.0 ROS agent runs `ros2 launch <package> <launch_file> k:=v ...`; in CARLA
that agent is launch/drive_stack_agent.py, whose get_ros_entrypoint() passes sim, perception, policy and, when
given, params_file, model, reasoning, reasoning_model and reasoning_camera). The nodes come from drive_stack.node_table (the same table `drive-stack stack run`
starts here without launch_ros); with sim:=pseudo the pseudo-simulator stands in for CARLA + the bridge (then pass
its route parameters in the params file). Untested here: launch and launch_ros are not installable from PyPI.
"""

import os

from ament_index_python.packages import get_package_share_directory
from drive_stack.node_table import nodes_for
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _nodes(context):
    sim = LaunchConfiguration("sim").perform(context)
    params = LaunchConfiguration("params_file").perform(context)
    policy = LaunchConfiguration("policy").perform(context)
    model = LaunchConfiguration("model").perform(context)
    perception = LaunchConfiguration("perception").perform(context)
    reasoning = LaunchConfiguration("reasoning").perform(context)
    reasoning_model = LaunchConfiguration("reasoning_model").perform(context)
    reasoning_camera = LaunchConfiguration("reasoning_camera").perform(context)
    out = []
    for spec in nodes_for(sim):
        extra = {"use_sim_time": True}
        if spec.name in ("perception_input", "pseudo_sim"):  # what the stack perceives from, and what is spawned
            extra["perception"] = perception
        if spec.name == "planner":
            extra["policy"] = policy
            if model:
                extra["model"] = model
        if spec.name == "vla_reasoning":
            extra["model"] = reasoning
            if reasoning_model:
                extra["model_file"] = reasoning_model
            if reasoning_camera:
                extra["camera_topic"] = reasoning_camera
        out.append(Node(package="drive_stack", executable=spec.executable, name=spec.name, output="screen",
                        parameters=[params, extra], emulate_tty=True))
    return out


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("drive_stack"), "config", "stack.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("sim", default_value="carla", description="carla (bridge + leaderboard) or pseudo"),
        DeclareLaunchArgument("params_file", default_value=default_params),
        DeclareLaunchArgument("policy", default_value="rule", description="planner policy: rule | expert | il | perlad | perlad_logreplay | takead | takevla"),
        DeclareLaunchArgument("perception", default_value="privileged", choices=["privileged", "sensors"],
                              description="what the stack perceives from in CARLA: privileged (the bridge's pseudo "
                                          "sensors: objects, odometry, traffic lights, the OpenDRIVE map) or sensors "
                                          "(GNSS, IMU, speedometer, the OpenDRIVE map)"),
        DeclareLaunchArgument("model", default_value="",
                              description="learned policies: an ONNX planner instead of <models dir>/<policy>/"
                                          "planner.onnx (the planner's `model` parameter; empty: that default)"),
        DeclareLaunchArgument("reasoning", default_value="rule", choices=["rule", "takevla", "hf"],
                              description="the vla_reasoning node's reasoner: rule, takevla (TakeVLA's ONNX graphs) or "
                                          "hf (a local Hugging Face vision-language model folder: reasoning_model)"),
        DeclareLaunchArgument("reasoning_model", default_value="",
                              description="takevla: a vla.onnx instead of <models dir>/takevla/vla.onnx; hf: the "
                                          "model's folder (the node's `model_file` parameter)"),
        DeclareLaunchArgument("reasoning_camera", default_value="",
                              description="hf: a sensor_msgs/Image topic the model sees instead of the BEV raster "
                                          "(the node's `camera_topic`; the agent's camera=front declares "
                                          "/carla/hero/rgb_front/image); empty: the raster"),
        OpaqueFunction(function=_nodes),
    ])
