"""launch/drive_stack_agent.py, the Leaderboard 2.0 ROS 2 agent, against the upstream contract.

The Leaderboard (carla-simulator/leaderboard leaderboard-2.0, as carried by Bench2Drive 0.0.4) cannot be installed
here: its modules import the CARLA client, rclpy and the ROS message packages. So a minimal stand-in of the two
upstream base modules the agent imports is written to a temporary folder on sys.path:
`leaderboard/autoagents/autonomous_agent.py` (the `Track` enum with upstream's four members, autonomous_agent.py:21-29,
and a base that sets `track = Track.SENSORS` as autonomous_agent.py:39 does) and `leaderboard/autoagents/ros2_agent.py`
(a `ROS2Agent` base that only stores what it is given, and calls `get_ros_entrypoint()` from its __init__ as
ros_base_agent.py:156-160 does, before `setup()` is ever called). Upstream line numbers are of leaderboard-2.0 @
a87a3419e9d2 (shared/carla_lb2/CONTRACT.md).

Checked: (a) each perception mode's `sensors()` passes upstream's rules, re-implemented below from
agent_wrapper.py (allowed types and counts, mount radius <= 3 m, unique ids, opendrive_map not on the SENSORS track,
the agent's track equal to `--track MAP`) and has the keys agent_wrapper.py reads for its type, and every sensor's
topic is listed in the module docstring; (b) `get_ros_entrypoint()` names drive_stack / bench2drive.launch.py and
every parameter it passes is a DeclareLaunchArgument of launch/bench2drive.launch.py (parsed with `ast`: launch_ros
is not installable); (c) bad config keys and values are refused with the key named; (d) the agent module parses
with Python 3.7's grammar and imports only the standard library and `leaderboard`; (e) the two launch file copies
are identical.
"""

import ast
import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "launch" / "drive_stack_agent.py"
LAUNCH = ROOT / "launch" / "bench2drive.launch.py"
LAUNCH_PKG_COPY = ROOT / "ros2_ws" / "src" / "drive_stack" / "launch" / "bench2drive.launch.py"

STAND_IN = {
    "leaderboard/__init__.py": "",
    "leaderboard/autoagents/__init__.py": "",
    "leaderboard/autoagents/autonomous_agent.py": '''
from enum import Enum


class Track(Enum):  # upstream autonomous_agent.py:21-29
    SENSORS = "SENSORS"
    MAP = "MAP"
    SENSORS_QUALIFIER = "SENSORS_QUALIFIER"
    MAP_QUALIFIER = "MAP_QUALIFIER"


class AutonomousAgent:
    def __init__(self, carla_host, carla_port, debug=False):
        self.track = Track.SENSORS  # upstream autonomous_agent.py:39
''',
    "leaderboard/autoagents/ros2_agent.py": '''
from leaderboard.autoagents.autonomous_agent import AutonomousAgent


class ROS2Agent(AutonomousAgent):
    def __init__(self, carla_host, carla_port, debug=False):
        super().__init__(carla_host, carla_port, debug)
        self.carla_host, self.carla_port, self.debug = carla_host, carla_port, debug
        # upstream ros_base_agent.py:156-160 launches the stack from get_ros_entrypoint() here, before setup()
        self.launched = self.get_ros_entrypoint()

    def get_ros_entrypoint(self):
        raise NotImplementedError

    # upstream ros2_agent.py:80-105 calls /carla/spawn_object, /carla/destroy_object: recorded here
    def spawn_object(self, type_, id_, transform, attributes, attach_to=0):
        calls = self.__dict__.setdefault("spawned", [])
        calls.append((type_, id_, transform, dict(attributes), attach_to))
        return (10000 if ".pseudo." in type_ else 300) + len(calls)

    def destroy_object(self, uid):
        self.__dict__.setdefault("destroyed", []).append(uid)
        return True

    def destroy(self):
        self.base_destroyed = True
''',
}


@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    """The agent module, imported against the stand-in Leaderboard."""
    base = tmp_path_factory.mktemp("leaderboard_stand_in")
    for rel, text in STAND_IN.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    sys.path.insert(0, str(base))
    try:
        spec = importlib.util.spec_from_file_location("drive_stack_agent", AGENT)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(base))
        for name in [n for n in sys.modules if n == "leaderboard" or n.startswith("leaderboard.")]:
            del sys.modules[name]


def evaluator_argv(config=None):
    argv = ["leaderboard/leaderboard/leaderboard_evaluator.py", "--routes", "r.xml", "--track", "MAP",
            "--agent", str(AGENT)]
    return argv + (["--agent-config", str(config)] if config is not None else [])


def make_agent(lb, monkeypatch, config=None, setup=True):
    """What the evaluator does (ev:294-296): construct (the stack is launched), then setup(--agent-config)."""
    monkeypatch.setattr(sys, "argv", evaluator_argv(config))
    monkeypatch.delenv(lb.CONFIG_ENV, raising=False)
    agent = lb.DriveStackAgent("localhost", 2000, 0)
    if setup:
        agent.setup("" if config is None else str(config))
    return agent


def write_config(tmp_path, text, name="agent.conf"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- upstream's rules, re-implemented from leaderboard-2.0 leaderboard/autoagents/agent_wrapper.py ----------------

class SensorConfigurationInvalid(Exception):
    pass


MAX_ALLOWED_RADIUS_SENSOR = 3.0  # agent_wrapper.py:25
QUALIFIER_SENSORS_LIMITS = {  # agent_wrapper.py:26-34
    "sensor.camera.rgb": 4, "sensor.lidar.ray_cast": 1, "sensor.other.radar": 2, "sensor.other.gnss": 1,
    "sensor.other.imu": 1, "sensor.opendrive_map": 1, "sensor.speedometer": 1,
}
SENSORS_LIMITS = {  # agent_wrapper.py:35-43
    "sensor.camera.rgb": 8, "sensor.lidar.ray_cast": 2, "sensor.other.radar": 4, "sensor.other.gnss": 1,
    "sensor.other.imu": 1, "sensor.opendrive_map": 1, "sensor.speedometer": 1,
}
ALLOWED_SENSORS = SENSORS_LIMITS.keys()  # agent_wrapper.py:44
# the keys AgentWrapper._preprocess_sensor_spec reads for each type (agent_wrapper.py:141-228; type and id: 142-143)
POSE = ("x", "y", "z", "roll", "pitch", "yaw")
REQUIRED_KEYS = {
    "sensor.opendrive_map": ("reading_frequency",),  # 146-147
    "sensor.speedometer": (),  # 151-153: reading_frequency from the world's fixed_delta_seconds
    "sensor.camera.rgb": ("width", "height", "fov") + POSE,  # 157-166
    "sensor.lidar.ray_cast": POSE,  # 168-184
    "sensor.other.radar": ("horizontal_fov", "vertical_fov") + POSE,  # 186-197
    "sensor.other.gnss": ("x", "y", "z"),  # 199-210
    "sensor.other.imu": POSE,  # 212-225
}


def validate_sensor_configuration(sensors, agent_track, selected_track, Track):
    """agent_wrapper.py:66-118."""
    if Track(selected_track) != agent_track:  # 71-72
        raise SensorConfigurationInvalid(f"You are submitting to the wrong track [{Track(selected_track)}]!")
    sensor_count, sensor_ids = {}, []
    for sensor in sensors:
        if sensor["id"] in sensor_ids:  # 79-84
            raise SensorConfigurationInvalid(f"Duplicated sensor tag [{sensor['id']}]")
        sensor_ids.append(sensor["id"])
        if agent_track == Track.SENSORS and sensor["type"].startswith("sensor.opendrive_map"):  # 86-89
            raise SensorConfigurationInvalid(f"Illegal sensor 'sensor.opendrive_map' used for Track [{agent_track}]!")
        if sensor["type"] not in ALLOWED_SENSORS:  # 91-93
            raise SensorConfigurationInvalid(f"Illegal sensor '{sensor['type']}' used for Track [{agent_track}]!")
        if "x" in sensor and "y" in sensor and "z" in sensor:  # 95-99
            if math.sqrt(sensor["x"] ** 2 + sensor["y"] ** 2 + sensor["z"] ** 2) > MAX_ALLOWED_RADIUS_SENSOR:
                raise SensorConfigurationInvalid(f"Illegal sensor extrinsics used for sensor '{sensor['id']}'")
        sensor_count[sensor["type"]] = sensor_count.get(sensor["type"], 0) + 1  # 101-105
    limits = QUALIFIER_SENSORS_LIMITS if agent_track in (Track.SENSORS_QUALIFIER, Track.MAP_QUALIFIER) \
        else SENSORS_LIMITS  # 107-110
    for sensor_type, max_instances in limits.items():  # 112-118
        if sensor_count.get(sensor_type, 0) > max_instances:
            raise SensorConfigurationInvalid(f"Too many {sensor_type} used!")


# ---- (a) sensors ----------------------------------------------------------------------------------------------------

EXPECTED_TYPES = {
    "privileged": {"sensor.opendrive_map", "sensor.speedometer"},
    "sensors": {"sensor.other.gnss", "sensor.other.imu", "sensor.speedometer", "sensor.opendrive_map"},
}


@pytest.mark.parametrize("mode,camera", [("privileged", False), ("sensors", False), ("privileged", True),
                                         ("sensors", True)])
def test_sensors_pass_upstream_validation(lb, monkeypatch, tmp_path, mode, camera):
    Track = sys.modules["leaderboard.autoagents.autonomous_agent"].Track
    extra = "reasoning=hf\ncamera=front\n" if camera else ""
    agent = make_agent(lb, monkeypatch, write_config(tmp_path, f"perception={mode}\n{extra}"))
    sensors = agent.sensors()
    assert {s["type"] for s in sensors} == EXPECTED_TYPES[mode] | ({"sensor.camera.rgb"} if camera else set())
    assert agent.track is Track.MAP
    validate_sensor_configuration(sensors, agent.track, "MAP", Track)  # ev:303 with --track MAP
    for s in sensors:
        missing = {"type", "id", *REQUIRED_KEYS[s["type"]]} - set(s)
        assert not missing, (s["id"], missing)
        # the id is the bridge's actor name: the topic is /carla/hero/<id> (CONTRACT.md sec. 5), listed for the stack
        assert re.fullmatch(r"[a-z][a-z0-9_]*", s["id"]), s["id"]
        assert f"/carla/hero/{s['id']} " in lb.__doc__, s["id"]
    # the same sensors on the SENSORS track are refused (opendrive_map), and the MAP agent refuses --track SENSORS
    with pytest.raises(SensorConfigurationInvalid, match="opendrive_map"):
        validate_sensor_configuration(sensors, Track.SENSORS, "SENSORS", Track)
    with pytest.raises(SensorConfigurationInvalid, match="wrong track"):
        validate_sensor_configuration(sensors, agent.track, "SENSORS", Track)
    assert agent.sensors() is not agent.sensors() and agent.sensors()[0] is not sensors[0]  # copies, not our tables


def test_validator_is_not_vacuous(lb):
    """The re-implemented rules do refuse what upstream refuses."""
    Track = sys.modules["leaderboard.autoagents.autonomous_agent"].Track
    gnss = dict(lb.GNSS)
    bad = {
        "Duplicated": [gnss, dict(gnss)],
        "extrinsics": [dict(gnss, x=2.5, z=2.0)],
        "Illegal sensor 'sensor.pseudo.objects'": [{"type": "sensor.pseudo.objects", "id": "objects"}],
        "Too many sensor.other.gnss": [gnss, dict(gnss, id="gnss2")],
    }
    for message, sensors in bad.items():
        with pytest.raises(SensorConfigurationInvalid, match=re.escape(message)):
            validate_sensor_configuration(sensors, Track.MAP, "MAP", Track)


# ---- (b) the ROS entry point against the launch file -------------------------------------------------------------

def launch_arguments():
    """{name: DeclareLaunchArgument keywords (constants only)} of launch/bench2drive.launch.py, read with ast."""
    declared = {}
    for node in ast.walk(ast.parse(LAUNCH.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == \
                "DeclareLaunchArgument":
            name = node.args[0].value
            declared[name] = {k.arg: ast.literal_eval(k.value) for k in node.keywords
                              if k.arg in ("default_value", "choices") and isinstance(k.value, (ast.Constant, ast.List))}
    return declared


def test_entrypoint_names_the_launch_file_and_its_arguments(lb, monkeypatch, tmp_path):
    declared = launch_arguments()
    assert {"sim", "params_file", "policy", "perception", "model"} <= set(declared)
    assert tuple(declared["perception"]["choices"]) == lb.PERCEPTION_MODES
    assert declared["perception"]["default_value"] == lb.DEFAULTS["perception"]
    (tmp_path / "stack.yaml").write_text("{}\n")
    (tmp_path / "planner.onnx").write_bytes(b"")
    configs = {
        "defaults": None,
        "all keys": write_config(tmp_path, "perception=sensors\npolicy=il\nparams_file=stack.yaml\n"
                                           "model=planner.onnx\n"),
    }
    for label, config in configs.items():
        agent = make_agent(lb, monkeypatch, config)
        entry = agent.get_ros_entrypoint()
        assert agent.launched == entry, label  # what __init__ launched is what get_ros_entrypoint() says
        assert set(entry) == {"package", "launch_file", "parameters"}  # ros_base_agent.py:74, 157-160
        assert (entry["package"], entry["launch_file"]) == ("drive_stack", "bench2drive.launch.py")
        params = entry["parameters"]
        assert set(params) <= set(declared), (label, set(params) - set(declared))
        assert params["sim"] == "carla"
        # ros_base_agent.py:79 writes "{}:={}".format(k, v) into one command line: strings without blanks
        assert all(isinstance(v, str) and v and not re.search(r"\s", v) for v in params.values()), params
    assert params == {"sim": "carla", "perception": "sensors", "policy": "il",
                      "params_file": str(tmp_path / "stack.yaml"), "model": str(tmp_path / "planner.onnx")}
    defaults = make_agent(lb, monkeypatch).get_ros_entrypoint()["parameters"]
    assert defaults == {"sim": "carla", "perception": "privileged", "policy": "perlad"}
    # a VLM that sees the declared front camera: the reasoner, its folder and the camera's topic reach the launch
    (tmp_path / "vlm").mkdir()
    vlm = make_agent(lb, monkeypatch, write_config(tmp_path, "reasoning=hf\nreasoning_model=vlm\ncamera=front\n"))
    params = vlm.get_ros_entrypoint()["parameters"]
    assert set(params) <= set(declared) and tuple(declared["reasoning"]["choices"]) == lb.REASONERS
    assert params == {"sim": "carla", "perception": "privileged", "policy": "perlad", "reasoning": "hf",
                      "reasoning_model": str(tmp_path / "vlm"), "reasoning_camera": "/carla/hero/rgb_front/image"}
    assert 'extra["camera_topic"] = reasoning_camera' in LAUNCH.read_text()
    # the launch file hands `model` to the planner only when given
    source = LAUNCH.read_text()
    assert 'LaunchConfiguration("model").perform(context)' in source and 'extra["model"] = model' in source


def test_policies_are_the_librarys(lb):
    from drivesim.policies import POLICIES
    from drivesim.stack.reasoners import REASONERS

    assert lb.POLICIES == tuple(POLICIES) and lb.REASONERS == tuple(REASONERS)


# ---- (c) config ------------------------------------------------------------------------------------------------------

BAD_CONFIGS = [
    ("perception=lidar\n", ["perception", "'lidar'", "privileged, sensors"]),
    ("policy=magic\n", ["policy", "'magic'", "rule, expert, il, perlad, perlad_logreplay, takead"]),
    ("colour=red\n", ["'colour'", "perception, policy, params_file, model"]),
    ('{"perception": "camera"}', ["perception", "privileged, sensors"]),
    ('{"policy": 3}', ["policy", "must be a string"]),
    ('{"policy": ', ["not valid JSON"]),
    ('["perception"]', ["JSON config must be an object"]),
    ("params_file=missing.yaml\n", ["params_file", "no such file"]),
    ("model=my planner.onnx\n", ["model", "whitespace"]),
    ("# comment\nperception\n", ["line 2", "key=value"]),
    ("policy=rule\npolicy=il\n", ["policy", "twice"]),
    ("camera=front\n", ["camera=front is for reasoning=hf", "reasoning=rule"]),
    ("reasoning=magic\n", ["reasoning", "rule, takevla, hf"]),
    ("reasoning=hf\nreasoning_model=missing\n", ["reasoning_model", "no such folder"]),
]


@pytest.mark.parametrize("text,expected", BAD_CONFIGS, ids=[t for t, _ in BAD_CONFIGS])
def test_bad_config_is_refused_with_the_key_named(lb, monkeypatch, tmp_path, text, expected):
    path = write_config(tmp_path, text)
    with pytest.raises(ValueError) as err:
        lb.load_config(str(path))
    for part in expected:
        assert part in str(err.value), (part, str(err.value))
    # the agent refuses it when constructed, before anything is launched
    with pytest.raises(ValueError, match=re.escape(expected[0])):
        make_agent(lb, monkeypatch, path, setup=False)


def test_config_formats_and_sources(lb, monkeypatch, tmp_path):
    kv = write_config(tmp_path, "# drive-stack agent\n\nperception = sensors\npolicy=rule\n")
    js = write_config(tmp_path, json.dumps({"perception": "sensors", "policy": "rule"}), "agent.json")
    assert lb.load_config(str(kv)) == lb.load_config(str(js)) == dict(lb.DEFAULTS, perception="sensors", policy="rule")
    assert lb.load_config("") == lb.DEFAULTS and lb.load_config(str(write_config(tmp_path, "", "empty"))) == lb.DEFAULTS
    with pytest.raises(ValueError, match="cannot read"):
        lb.load_config(str(tmp_path / "nope.conf"))
    # where __init__ finds the config: the evaluator's argument (both argparse spellings), or the environment first
    assert lb.config_path_from_evaluator(["ev.py", "--agent-config", "a.conf"], {}) == "a.conf"
    assert lb.config_path_from_evaluator(["ev.py", "--agent-config=b.conf", "--track", "MAP"], {}) == "b.conf"
    assert lb.config_path_from_evaluator(["ev.py", "--agent", "x.py"], {}) == ""
    assert lb.config_path_from_evaluator(["ev.py", "--agent-config", "a.conf"], {lb.CONFIG_ENV: "c.conf"}) == "c.conf"
    # Bench2Drive's evaluator calls setup("<config>+<save name>") (its leaderboard_evaluator.py:363)
    agent = make_agent(lb, monkeypatch, kv, setup=False)
    agent.setup(f"{kv}+RouteScenario_1711_rep0_Town12_Accident_1_w2_01_01_00_00_00")
    assert agent.sensors()[0]["type"] == "sensor.other.gnss"
    # a setup() config other than the launched one is refused, naming both
    other = write_config(tmp_path, "policy=il\n", "o.conf")
    with pytest.raises(ValueError, match="launched with") as err:
        agent.setup(str(other))
    assert "o.conf" in str(err.value) and str(kv) in str(err.value)
    # the environment variable, when set, is what gets launched
    monkeypatch.setattr(sys, "argv", evaluator_argv())
    monkeypatch.setenv(lb.CONFIG_ENV, str(js))
    env_agent = lb.DriveStackAgent("localhost", 2000, 0)
    assert env_agent.launched["parameters"]["perception"] == "sensors"


# ---- (d) Python 3.7, standard library only -------------------------------------------------------------------------

def test_agent_module_is_python37_and_stdlib_only():
    source = AGENT.read_text()
    tree = ast.parse(source, feature_version=(3, 7))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # Python 3.7 evaluates annotations when the function is defined (list[str] would raise there)
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            assert node.returns is None and all(a.annotation is None for a in args), node.name
    assert "__future__" not in imported
    assert imported - {"leaderboard"} <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    assert "leaderboard" in imported and "drivesim" not in imported


# ---- (e) the launch file's two paths -------------------------------------------------------------------------------

def test_launch_file_copies_identical():
    assert LAUNCH_PKG_COPY.read_bytes() == LAUNCH.read_bytes()


@pytest.mark.parametrize("mode", ["privileged", "sensors"])
def test_privileged_mode_spawns_the_pseudo_sensors_on_the_hero(lb, monkeypatch, tmp_path, mode):
    """The Leaderboard spawns the declared sensors on the hero (aw:292-304: attach_to = the hero's actor id); in
    privileged mode the agent's first such spawn also spawns the bridge's odometry and objects pseudo sensors on
    the hero and the traffic-light one on the world, named so that the bridge publishes them where the stack's
    node table listens; destroy() removes them. The sensors mode spawns nothing of its own."""
    from drive_stack import node_table as T

    agent = make_agent(lb, monkeypatch, write_config(tmp_path, f"perception={mode}\n"))
    hero, mount = 181, object()
    for s in agent.sensors():  # as the Leaderboard's wrapper does, in order
        agent.spawn_object(s["type"], s["id"], mount, {"reading_frequency": 20}, attach_to=hero)
    own = [c for c in agent.spawned if ".pseudo." in c[0]]
    if mode == "sensors":
        assert own == [] and agent._privileged == []
        return
    assert [(t, i, a) for t, i, _, _, a in own] == [("sensor.pseudo.odom", "odometry", hero),
                                                   ("sensor.pseudo.objects", "objects", hero),
                                                   ("sensor.pseudo.traffic_lights", "traffic_lights", 0)]
    assert all(tr is mount and attrs == {} for _, _, tr, attrs, _ in own)  # no attributes: the bridge reads none
    # spawned right after the first declared sensor, once
    assert agent.spawned.index(own[0]) == 1 and len(own) == 3
    # the bridge names hero-attached actors /carla/hero/<id>, world-attached ones /carla/<id> (CONTRACT.md sec. 6)
    assert {f"/carla/hero/{i}" for _, i, on_hero in lb.PRIVILEGED if on_hero} == {T.ODOMETRY, T.OBJECTS}
    assert f"/carla/{lb.PRIVILEGED[2][1]}/status" == T.TRAFFIC_LIGHTS
    assert f"/carla/{lb.PRIVILEGED[2][1]}/info" == T.TRAFFIC_LIGHTS_INFO
    ids = list(agent._privileged)
    agent.destroy()
    assert agent.destroyed == ids and agent.base_destroyed and agent._privileged == []

