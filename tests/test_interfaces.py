"""The ROS 2 interface packages as files (no ROS install, no colcon, no build): the compat carla_msgs equals the
upstream Leaderboard-2.0 definitions, colcon never sees ros2_ws/compat, interface packages declare what their
messages use, and drive_stack's package.xml declares what its Python code imports."""

import ast
import hashlib
import importlib.util
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT, SHARED

WS = ROOT / "ros2_ws"
COMPAT = WS / "compat"
CARLA_MSG = COMPAT / "carla_msgs" / "msg"
UPSTREAM = SHARED / "carla_lb2" / "carla_msgs"  # byte-identical upstream copies + SOURCE.md
INTERFACE_PKGS = [COMPAT / "carla_msgs", COMPAT / "derived_object_msgs", WS / "src" / "drive_stack_msgs"]
COLCON_PACKAGES = {WS / "src" / "drive_stack", WS / "src" / "drive_stack_msgs"}
# the 11 types of ros-carla-msgs branch leaderboard-2.0 (commit fa234e3)
CARLA_TYPES = {"CarlaBoundingBox", "CarlaEgoVehicleControl", "CarlaEgoVehicleStatus", "CarlaGnssRoute", "CarlaRoute",
               "CarlaSpeedometer", "CarlaTrafficLightInfo", "CarlaTrafficLightInfoList", "CarlaTrafficLightStatus",
               "CarlaTrafficLightStatusList", "CarlaWorldInfo"}


def need_upstream() -> Path:
    if not UPSTREAM.is_dir() or not list(UPSTREAM.glob("*.msg")):
        pytest.skip(f"{UPSTREAM} (upstream carla_msgs definitions) not present")
    return UPSTREAM


def parsed(msg: Path, pkg: str = "carla_msgs"):
    """rosbags' parse of one .msg: {type: (constants [(name, type, value)], fields [(name, type tree)])}."""
    from rosbags.typesys import get_types_from_msg

    return get_types_from_msg(msg.read_text(), f"{pkg}/msg/{msg.stem}")


def git_blob_sha1(p: Path) -> str:
    data = p.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ------------------------------------------------------------------------------------ carla_msgs vs upstream


def test_compat_carla_msgs_carries_the_eleven_leaderboard2_types():
    assert {f.stem for f in CARLA_MSG.glob("*.msg")} == CARLA_TYPES


def test_compat_carla_msgs_is_field_identical_to_upstream(tmp_path):
    """Every upstream type is in compat with the same fields (name + type), constants and RIHS01 hash."""
    pytest.importorskip("rosbags")
    from drivesim.stack.bags import make_typestore

    up = need_upstream()
    up_msgs = sorted(up.glob("*.msg"))
    assert {f.stem for f in up_msgs} == CARLA_TYPES
    # make_typestore takes <package>/msg folders: the shared folder's parent is carla_lb2, so copy it
    tmp_msg = tmp_path / "carla_msgs" / "msg"
    tmp_msg.mkdir(parents=True)
    for f in up_msgs:
        shutil.copyfile(f, tmp_msg / f.name)
    ts_up, ts_compat = make_typestore([tmp_msg]), make_typestore([CARLA_MSG])
    for f in up_msgs:
        mine = CARLA_MSG / f.name
        assert mine.is_file(), f"compat carla_msgs lacks {f.name}"
        assert parsed(mine) == parsed(f), f"{f.stem}: fields or constants differ from upstream"
        name = f"carla_msgs/msg/{f.stem}"
        assert ts_compat.hash_rihs01(name) == ts_up.hash_rihs01(name), f"{f.stem}: RIHS01 differs from upstream"


def test_compat_carla_msgs_is_byte_identical_to_upstream():
    """Stronger than field-identical: the copies are the upstream blobs (comments and licence headers included)."""
    up = need_upstream()
    for f in sorted(up.glob("*.msg")):
        assert (CARLA_MSG / f.name).read_bytes() == f.read_bytes(), f.name


def test_compat_carla_msgs_source_note_matches_the_files():
    """SOURCE.md names upstream (repository, branch, commit) and each file's git blob, which the files still have."""
    text = (COMPAT / "carla_msgs" / "SOURCE.md").read_text()
    assert "github.com/carla-simulator/ros-carla-msgs" in text and "leaderboard-2.0" in text
    assert "fa234e3af4d2e3c238ed15412460063a9b58d032" in text
    blobs = dict(re.findall(r"^\| (\w+\.msg) \| ([0-9a-f]{40}) \|$", text, re.M))
    assert set(blobs) == {f"{t}.msg" for t in CARLA_TYPES}
    for name, sha in blobs.items():
        assert git_blob_sha1(CARLA_MSG / name) == sha, f"{name} is no longer the upstream blob"
    # the services the Leaderboard agent calls and the bridge serves (../shared has no copy of them: their blobs at
    # that commit, checked against a clone of ros-carla-msgs, are in SOURCE.md)
    srv = dict(re.findall(r"(\w+\.srv) `([0-9a-f]{40})`", text))
    assert set(srv) == {"SpawnObject.srv", "DestroyObject.srv"}
    assert sorted(p.name for p in (COMPAT / "carla_msgs" / "srv").glob("*.srv")) == sorted(srv)
    for name, sha in srv.items():
        assert git_blob_sha1(COMPAT / "carla_msgs" / "srv" / name) == sha, f"{name} is no longer the upstream blob"


# ------------------------------------------------------------------------------------ interface packages


def _deps(pkg_xml: Path, *tags: str) -> set[str]:
    root = ET.parse(pkg_xml).getroot()
    return {e.text.strip() for t in tags for e in root.findall(t)}


@pytest.mark.parametrize("pkg", INTERFACE_PKGS, ids=lambda p: p.name)
def test_interface_packages_declare_what_their_messages_use(pkg):
    """Each msg/*.msg is generated (CMakeLists) and every other package its fields name is a build and run
    dependency (package.xml) and a find_package + DEPENDENCIES entry (CMakeLists)."""
    cmake = (pkg / "CMakeLists.txt").read_text()
    gen = re.search(r"rosidl_generate_interfaces\((.*?)\)", cmake, re.S).group(1)
    listed = set(re.findall(r'"msg/(\w+)\.msg"', gen))
    assert listed == {f.stem for f in (pkg / "msg").glob("*.msg")}
    generate_deps = set(gen.split("DEPENDENCIES", 1)[1].split()) if "DEPENDENCIES" in gen else set()
    found = set(re.findall(r"find_package\((\w+) REQUIRED\)", cmake))
    used = set()
    for f in (pkg / "msg").glob("*.msg"):
        for line in f.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and "/" in line.split()[0]:
                used.add(line.split()[0].split("/")[0])
    xml = pkg / "package.xml"
    assert ET.parse(xml).getroot().findtext("name") == pkg.name
    build = _deps(xml, "depend", "build_depend")
    run = _deps(xml, "depend", "exec_depend")
    for dep in used:
        assert dep in build and dep in run, f"{pkg.name}/package.xml lacks {dep}"
        assert dep in found and dep in generate_deps, f"{pkg.name}/CMakeLists.txt lacks {dep}"


# ------------------------------------------------------------------------------------ colcon never sees compat


def colcon_packages(root: Path) -> set[Path]:
    """Folders with a package.xml that colcon's crawl of `root` would reach: it skips every folder holding a
    COLCON_IGNORE (and all below it). Stricter than colcon: packages nested in packages are reported too."""
    found = set()
    for d, dirs, files in os.walk(root, followlinks=True):
        if "COLCON_IGNORE" in files:
            dirs[:] = []
            continue
        if "package.xml" in files:
            found.add(Path(d))
    return found


def test_colcon_never_crawls_compat():
    marker = COMPAT / "COLCON_IGNORE"
    assert marker.is_file() and marker.stat().st_size == 0
    assert colcon_packages(WS) == COLCON_PACKAGES
    assert all(p.is_relative_to(COMPAT) for p in {x.parent for x in WS.rglob("package.xml")} - COLCON_PACKAGES)


def test_build_interfaces_still_finds_the_compat_packages():
    """build_interfaces.py names its package folders itself, so the COLCON_IGNORE above them does not matter."""
    spec = importlib.util.spec_from_file_location("build_interfaces", WS / "tools" / "build_interfaces.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pkgs = {name: src for name, src, _ in mod.PACKAGES}
    assert pkgs == {p.name: p for p in INTERFACE_PKGS}
    for name, src in pkgs.items():
        assert (src / "package.xml").is_file() and (src / "CMakeLists.txt").is_file(), name
    assert mod.digest(pkgs["carla_msgs"])  # the change stamp covers the compat sources


# ------------------------------------------------------------------------------------ drive_stack's package.xml

ROS_PYTHON = {"rclpy", "ament_index_python", "launch", "launch_ros"}  # ROS packages not named *_msgs/*_interfaces
ROSDEP = {"numpy": "python3-numpy", "yaml": "python3-yaml", "scipy": "python3-scipy", "lxml": "python3-lxml",
          "psutil": "python3-psutil", "PIL": "python3-pil", "cv2": "python3-opencv", "requests": "python3-requests"}
OWN = {"drive_stack", "drivesim"}  # the package itself, and the project's library (pip-installed beside it)


def is_ros_package(mod: str) -> bool:
    return mod in ROS_PYTHON or mod.endswith(("_msgs", "_interfaces"))


def stack_imports() -> dict[str, set[str]]:
    """Top-level modules imported (anywhere, absolute imports) by drive_stack's node modules and launch files."""
    pkg = WS / "src" / "drive_stack"
    files = sorted((pkg / "drive_stack").glob("*.py")) + sorted((pkg / "launch").glob("*.launch.py"))  # the LB agent runs in the evaluator
    out: dict[str, set[str]] = {}
    for f in files:
        for n in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                names = [n.module]
            for m in names:
                out.setdefault(m.split(".")[0], set()).add(f.name)
    return out


def test_drive_stack_package_xml_declares_its_imports():
    imports = stack_imports()
    assert {"rclpy", "carla_msgs", "drive_stack_msgs", "numpy"} <= set(imports)  # the scan found the nodes
    declared = _deps(WS / "src" / "drive_stack" / "package.xml", "depend", "exec_depend")
    for mod, where in sorted(imports.items()):
        if mod in OWN or mod in sys.stdlib_module_names:
            continue
        if is_ros_package(mod):
            assert mod in declared, f"drive_stack/package.xml: no <exec_depend>{mod}</exec_depend> ({sorted(where)})"
        else:
            assert mod in ROSDEP, f"{mod} (imported by {sorted(where)}): add its rosdep key to ROSDEP and package.xml"
            assert ROSDEP[mod] in declared, f"drive_stack/package.xml: no <exec_depend>{ROSDEP[mod]}</exec_depend>"


def test_drive_stack_msgs_package_xml_matches_its_cmake():
    """What drive_stack_msgs generates against is what it declares (the message-level check is above)."""
    pkg = WS / "src" / "drive_stack_msgs"
    cmake = (pkg / "CMakeLists.txt").read_text()
    gen_deps = set(re.search(r"DEPENDENCIES([^)]*)\)", cmake).group(1).split())
    assert gen_deps <= _deps(pkg / "package.xml", "depend", "build_depend")
    assert gen_deps <= _deps(pkg / "package.xml", "depend", "exec_depend")
