"""The facts of the machine a result was made on, written next to benchmark figures and into `pipeline.json`:
CPU model and count, Python, and the versions of the packages the numbers depend on. The environment is resolved
afresh by `make setup` (only torch is pinned exactly), and floating-point results of the simulator and training can
change with the CPU's instruction set or a numeric package's release; with these facts beside two runs that differ,
one can tell a changed environment from a changed program."""

from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("numpy", "scipy", "numba", "llvmlite", "torch", "onnxruntime", "carla")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(**extra) -> dict:
    """cpus, processor, python and PACKAGES' versions (None where one is not installed), plus `extra`."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {"cpus": os.cpu_count(), "processor": cpu_model(), "python": platform.python_version(),
            "packages": versions, **extra}
