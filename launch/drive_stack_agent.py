"""drive-stack's Leaderboard 2.0 agent: a ROS 2 agent for Bench2Drive's / the Leaderboard's evaluator.

    python3 leaderboard/leaderboard/leaderboard_evaluator.py --track MAP \\
        --agent /path/to/drive-stack/launch/drive_stack_agent.py --agent-config my_agent.conf --routes ...

Upstream: carla-simulator/leaderboard branch leaderboard-2.0 @ a87a3419e9d2 (Bench2Drive 0.0.4 carries the same
autoagents/ros2_agent.py and ros_base_agent.py); "rba" = leaderboard/autoagents/ros_base_agent.py, "r2a" =
ros2_agent.py, "aa" = autonomous_agent.py, "aw" = agent_wrapper.py, "ev" = leaderboard/leaderboard_evaluator.py.
What happens at the ROS boundary is written down in shared/carla_lb2/CONTRACT.md.

This file runs inside the evaluator's Python (it imports the CARLA client and rclpy), never the stack's: standard
library and `leaderboard` only, Python 3.7 syntax (Bench2Drive's own environment is 3.7; with ROS 2 it is the
distribution's Python: Humble's 3.10). The stack runs in the processes of the ROS launch named below.

Sequence (upstream): `DriveStackAgent(host, port, debug)` starts the bridge, then `ros2 launch drive_stack
bench2drive.launch.py k:=v ...` from `get_ros_entrypoint()` (rba:140-160), and blocks until the stack publishes
/carla/hero/status (r2a:75); only then come `set_global_plan`, `setup(--agent-config)` and the check of
`sensors()` against `--track` (ev:294-303). The launch comes before `setup()`, so the config is read in __init__:
from the evaluator's own `--agent-config` argument (this module runs in its process), or from the environment
variable DRIVE_STACK_AGENT_CONFIG if set; `setup()` then refuses a config that differs from the launched one.

Config file (`--agent-config`; none: all defaults): a JSON object, or `key=value` lines (blank lines and lines
starting with `#` are skipped; no quoting: the value is the rest of the line, stripped). Keys:

    perception   privileged (default) | sensors: what the stack perceives from (the topics below)
    policy       the planner's policy: rule | expert | il | perlad (default) | perlad_logreplay | takead | takevla
    params_file  optional: a drive_stack params YAML (default: the package's config/stack.yaml)
    model        optional: an ONNX planner instead of the policy's default planner.onnx
    reasoning    the vla_reasoning node's reasoner: rule (default) | takevla | hf
    reasoning_model  optional: takevla: a vla.onnx; hf: the folder of a Hugging Face vision-language model
    camera       none (default) | front: declare a front RGB camera (id rgb_front, 800x600, fov 100, 1.5 m ahead of
                 the hero's origin, 2.4 m up) whose /carla/hero/rgb_front/image the hf reasoner sees instead of
                 the BEV raster (needs reasoning=hf)

e.g. `perception=sensors` and `policy=perlad` on two lines, or {"perception": "sensors", "policy": "perlad"}.
Relative paths are taken from the config file's folder; paths must exist and hold no whitespace or quotes
(rba:74-83 joins the launch arguments into one command line). Any other key or value: ValueError naming the key
and what is allowed. Bench2Drive's evaluator passes `<config>+<route>` to setup() (its leaderboard_evaluator.py:363):
the part from the first `+` on is dropped, so the path must not hold `+`.

Track: both modes need the OpenDRIVE map, which the SENSORS track rejects (aw:87-89), so the agent is on
Track.MAP: run the evaluator with `--track MAP` (ev:303 refuses any other, aw:71-72).

Topics. The ROS wrapper spawns each sensor through /carla/spawn_object attached to the hero, with the sensor id as
its name (aw:292-304, r2a:84-105), so the bridge publishes it on /carla/hero/<id> (CONTRACT.md sec. 5-6):

    /carla/hero/map     std_msgs/String              OpenDRIVE XML, once at the first tick, TRANSIENT_LOCAL  (both)
    /carla/hero/speed   carla_msgs/CarlaSpeedometer  signed speed [m/s] every tick                           (both)
    /carla/hero/gnss    sensor_msgs/NavSatFix        every tick                                              (sensors)
    /carla/hero/imu     sensor_msgs/Imu              every tick                                              (sensors)
    /carla/hero/rgb_front (/image)  sensor_msgs/Image bgra8, every tick          (camera=front: the hf reasoner's)

GNSS and IMU sit at the hero's origin (no lever arm to undo). The stack reads the map from the bridge's
/carla/world_info (carla_msgs/CarlaWorldInfo: the same OpenDRIVE, TRANSIENT_LOCAL, there from the bridge's start, so
the stack can say it is up before the first tick); the map sensor is declared because using the map puts the run
on the MAP track. In `privileged` mode the stack itself spawns the
bridge's pseudo sensors through the same /carla/spawn_object service (not declared here: `sensors()` may only
name the Leaderboard's allowed types, aw:44, 91-93): sensor.pseudo.objects id `objects` and sensor.pseudo.odom id
`odometry` on the hero (/carla/hero/objects derived_object_msgs/ObjectArray, /carla/hero/odometry
nav_msgs/Odometry) and sensor.pseudo.traffic_lights id `traffic_lights` on the world
(/carla/traffic_lights/{info,status}, by actor id, TRANSIENT_LOCAL, on change only): this agent spawns them
(`spawn_object`: when the Leaderboard spawns its first sensor on the hero, with the hero's actor id it names) and
destroys them at the end. A privileged research setup, not a valid Leaderboard submission. Always there: /clock, the route on /carla/hero/global_plan (carla_msgs/CarlaRoute,
TRANSIENT_LOCAL, r2a:70-71, sent only after the stack said it is up); the stack publishes /carla/hero/status
(std_msgs/Bool, TRANSIENT_LOCAL) once it has the map and one stamped /carla/hero/vehicle_control_cmd per tick
(rba:174-243).
"""

import json
import os
import sys

from leaderboard.autoagents.autonomous_agent import Track
from leaderboard.autoagents.ros2_agent import ROS2Agent

PACKAGE = "drive_stack"
LAUNCH_FILE = "bench2drive.launch.py"
CONFIG_ENV = "DRIVE_STACK_AGENT_CONFIG"

PERCEPTION_MODES = ("privileged", "sensors")
POLICIES = ("rule", "expert", "il", "perlad", "perlad_logreplay", "takead", "takevla")  # drivesim.policies.POLICIES (a test checks)
REASONERS = ("rule", "takevla", "hf")  # drivesim.stack.reasoners.REASONERS (a test checks)
PATH_KEYS = ("params_file", "model", "reasoning_model")
DEFAULTS = {"perception": "privileged", "policy": "perlad", "params_file": "", "model": "", "reasoning": "rule",
            "reasoning_model": "", "camera": "none"}
CHOICES = {"perception": PERCEPTION_MODES, "policy": POLICIES, "reasoning": REASONERS, "camera": ("none", "front")}


def _sensor(type_, id_, **extra):
    """A sensor spec in the Leaderboard's format (aa:57-77), mounted at the hero's origin."""
    spec = {"type": type_, "id": id_, "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0}
    spec.update(extra)
    return spec


# aw:147 reads `reading_frequency` of the map sensor (a KeyError without it); the bridge ignores it (pseudo sensors
# get no attributes, RB actor_factory.py:132-133) and publishes the map once, latched.
OPENDRIVE_MAP = _sensor("sensor.opendrive_map", "map", reading_frequency=1)
SPEEDOMETER = _sensor("sensor.speedometer", "speed")  # aw:151-153 sets its reading_frequency itself
GNSS = _sensor("sensor.other.gnss", "gnss")
IMU = _sensor("sensor.other.imu", "imu")

SENSORS = {
    "privileged": (OPENDRIVE_MAP, SPEEDOMETER),
    "sensors": (GNSS, IMU, SPEEDOMETER, OPENDRIVE_MAP),
}
# camera=front: a camera.rgb (aw:158-169 reads width, height, fov and the mount), within the 3 m mount radius
# (aw:25-44); the bridge publishes it on /carla/hero/rgb_front/image, bgra8 (CONTRACT.md sec. 6)
FRONT_CAMERA = _sensor("sensor.camera.rgb", "rgb_front", x=1.5, z=2.4, width=800, height=600, fov=100)
CAMERA_TOPIC = "/carla/hero/rgb_front/image"

# perception=privileged: the bridge's pseudo sensors the stack perceives from (type, id = the topic's last part, on
# the hero? else on the world), spawned through /carla/spawn_object with the hero's actor id that the Leaderboard's
# own first sensor spawn names (aw:292-304); topics as the stack's node table names them
PRIVILEGED = (
    ("sensor.pseudo.odom", "odometry", True),  # /carla/hero/odometry
    ("sensor.pseudo.objects", "objects", True),  # /carla/hero/objects
    ("sensor.pseudo.traffic_lights", "traffic_lights", False),  # /carla/traffic_lights/{info,status}
)


def get_entry_point():
    """The class the evaluator instantiates (ev:285-286)."""
    return "DriveStackAgent"


def track_for(sensor_specs):
    """MAP when the OpenDRIVE map is among the sensors (the SENSORS track rejects it, aw:87-89), else SENSORS."""
    if any(s["type"] == "sensor.opendrive_map" for s in sensor_specs):
        return Track.MAP
    return Track.SENSORS


def parse_config_text(text, source="agent config"):
    """A JSON object or `key=value` lines -> {key: value} (values not checked here)."""
    body = text.strip()
    if not body:
        return {}
    if body[0] in "{[":  # JSON (an object is required below)
        try:
            data = json.loads(body)
        except ValueError as e:
            raise ValueError(f"{source}: not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a JSON config must be an object")
        for key, value in data.items():
            if not isinstance(value, str):
                raise ValueError(f"{source}: {key} must be a string, got {value!r}")
        return data
    data = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"{source}, line {n}: expected key=value, got {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if key in data:
            raise ValueError(f"{source}, line {n}: {key} is given twice")
        data[key] = value
    return data


def check_config(data, base_dir="", source="agent config"):
    """Defaults filled in, every key and value checked; relative paths resolved against `base_dir`."""
    config = dict(DEFAULTS)
    for key, value in data.items():
        if key not in DEFAULTS:
            raise ValueError(f"{source}: unknown key {key!r}; allowed keys: {', '.join(DEFAULTS)}")
        if key in CHOICES and value not in CHOICES[key]:
            raise ValueError(f"{source}: {key}={value!r} is not allowed; allowed values for {key}: "
                             f"{', '.join(CHOICES[key])}")
        if key in PATH_KEYS and value:
            if any(c.isspace() or c in "'\"" for c in value):
                raise ValueError(f"{source}: {key}={value!r}: the path may hold no whitespace or quotes (the ROS "
                                 "launch command line is one string, leaderboard ros_base_agent.py:74-83)")
            value = os.path.abspath(os.path.join(base_dir, os.path.expanduser(value)))
            folder = key == "reasoning_model" and data.get("reasoning") == "hf"  # a Hugging Face model is a folder
            if not (os.path.isdir(value) if folder else os.path.isfile(value)):
                raise ValueError(f"{source}: {key}={value!r}: no such {'folder' if folder else 'file'}")
        config[key] = value
    if config["camera"] != "none" and config["reasoning"] != "hf":
        raise ValueError(f"{source}: camera={config['camera']} is for reasoning=hf (a vision-language model that "
                         f"takes images); reasoning={config['reasoning']} reasons on the perceived scene")
    return config


def load_config(path):
    """The agent config at `path` ('' or None: all defaults), checked."""
    if not path:
        return dict(DEFAULTS)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"agent config {path!r}: cannot read it ({e})") from None
    source = f"agent config {path}"
    return check_config(parse_config_text(text, source), os.path.dirname(os.path.abspath(path)), source)


def config_path_from_evaluator(argv=None, environ=None):
    """The config the stack is launched with: $DRIVE_STACK_AGENT_CONFIG, else the evaluator's `--agent-config`
    (`--agent-config X` or `--agent-config=X`, the last one wins as in argparse; abbreviations are not read),
    else '' (defaults)."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return environ[CONFIG_ENV]
    path = ""
    for i, arg in enumerate(argv):
        if arg == "--agent-config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--agent-config="):
            path = arg.split("=", 1)[1]
    return path


def strip_bench2drive_suffix(path_to_conf_file):
    """Bench2Drive's evaluator calls setup('<config>+<save name>') (its leaderboard_evaluator.py:363)."""
    return (path_to_conf_file or "").split("+", 1)[0]


class DriveStackAgent(ROS2Agent):
    """drive-stack behind the Leaderboard's ROS 2 agent: the bridge and `ros2 launch drive_stack
    bench2drive.launch.py` run as its child processes; the stack talks to the bridge and to this agent over ROS."""

    def __init__(self, carla_host, carla_port, debug=False):
        # read before the base class: ROSBaseAgent.__init__ launches the stack from get_ros_entrypoint()
        # (rba:156-160), and setup() comes only after the stack is up (ev:294-296, r2a:75)
        self._config_path = config_path_from_evaluator()
        self._config = load_config(self._config_path)
        self._privileged = []  # actor ids of the pseudo sensors spawned for perception=privileged
        super().__init__(carla_host, carla_port, debug)
        self.track = track_for(self.sensors())  # aa:39 set SENSORS

    def setup(self, path_to_conf_file):
        path = strip_bench2drive_suffix(path_to_conf_file)
        config = load_config(path)
        if config != self._config:
            raise ValueError(
                f"setup() got agent config {path!r} {config} but the stack was launched with "
                f"{self._config_path!r} {self._config}: the launch starts before setup() (leaderboard "
                f"ros_base_agent.py:156-160), so the config comes from the evaluator's --agent-config argument or "
                f"${CONFIG_ENV}; give the same file to both")
        self.track = track_for(self.sensors())

    def sensors(self):
        camera = (FRONT_CAMERA,) if self._config["camera"] == "front" else ()
        return [dict(spec) for spec in SENSORS[self._config["perception"]] + camera]

    def spawn_object(self, type_, id_, transform, attributes, attach_to=0):
        """The Leaderboard spawns each declared sensor through here, attached to the hero (aw:292-304); with
        perception=privileged, the first such call also spawns the bridge's pseudo sensors (PRIVILEGED) on the
        same hero, at the same mount (all at the hero's origin)."""
        uid = super().spawn_object(type_, id_, transform, attributes, attach_to)
        if self._config["perception"] == "privileged" and attach_to and not self._privileged:
            for ptype, pid, on_hero in PRIVILEGED:
                self._privileged.append(super().spawn_object(ptype, pid, transform, {}, attach_to if on_hero else 0))
        return uid

    def destroy(self):
        for uid in self._privileged:  # best effort: the bridge also removes them with the hero
            try:
                self.destroy_object(uid)
            except Exception:  # noqa: BLE001 - upstream's destroy_object may raise; the hero's end removes them
                pass
        self._privileged = []
        super().destroy()

    def get_ros_entrypoint(self):
        # rba:74-83 turns parameters into `k:=v` with str.format: every value here is already a string
        parameters = {"sim": "carla", "perception": self._config["perception"], "policy": self._config["policy"]}
        for key in PATH_KEYS:
            if self._config[key]:
                parameters[key] = self._config[key]
        if self._config["reasoning"] != "rule":
            parameters["reasoning"] = self._config["reasoning"]
        if self._config["camera"] == "front":
            parameters["reasoning_camera"] = CAMERA_TOPIC
        return {"package": PACKAGE, "launch_file": LAUNCH_FILE, "parameters": parameters}
