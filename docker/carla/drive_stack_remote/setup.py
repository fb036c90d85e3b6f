"""ament_python package of the evaluator image (docker/Dockerfile.carla-eval): not part of the vehicle stack."""

from setuptools import setup

setup(
    name="drive_stack_remote",
    version="0.1.0",
    packages=["drive_stack_remote"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/drive_stack_remote"]),
        ("share/drive_stack_remote", ["package.xml"]),
        ("share/drive_stack_remote/launch", ["launch/remote_stack.launch.py"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    license="Apache-2.0",
    entry_points={"console_scripts": ["watch_stack = drive_stack_remote.watch:main"]},
)
