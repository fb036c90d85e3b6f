"""What the Leaderboard launches for drive-stack's agent (docker/carla/drive_stack_agent.py): the stack runs in its own
container; this runs the watcher whose exit tells the Leaderboard the stack is gone."""

from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    return LaunchDescription([Node(package="drive_stack_remote", executable="watch_stack", name="watch_stack",
                                   output="screen")])
