"""ament_python package: `colcon build` in a ROS install, or `pip install -e ros2_ws/src/drive_stack` here.

The nodes import the `drivesim` library (the repository's training/ package): install it beside them
(`pip install -e <repo>`), as `make setup` does."""

from glob import glob

from setuptools import setup

NODES = ["pseudo_sim", "perception_input", "planner", "vla_reasoning", "takeover_monitor", "recorder", "views"]

setup(
    name="drive_stack",
    version="0.1.0",
    packages=["drive_stack"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/drive_stack"]),
        ("share/drive_stack", ["package.xml"]),
        ("share/drive_stack/config", glob("config/*.yaml") + glob("config/*.json")),
        ("share/drive_stack/launch", glob("launch/*.launch.py")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    description="drive-stack ROS 2 nodes",
    license="Apache-2.0",
    # the nodes, and drive-stack-ros: the commands that run the stack (stack run, bench stack, demo; drive_stack/cli.py)
    entry_points={"console_scripts": [f"{n} = drive_stack.{n}:main" for n in NODES]
                  + ["drive-stack-ros = drive_stack.cli:main"]},
)
