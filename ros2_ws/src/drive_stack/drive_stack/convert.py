"""Messages <-> library types. The one place where CARLA's left-handed frame meets ROS's right-handed one
(`drivesim.geometry.carla_to_ros_pose`): everything on the wire is ROS-handed, everything in the library is
CARLA-handed."""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from carla_msgs.msg import (
    CarlaEgoVehicleControl,
    CarlaGnssRoute,
    CarlaRoute,
    CarlaSpeedometer,
    CarlaTrafficLightInfo,
    CarlaTrafficLightInfoList,
    CarlaTrafficLightStatus,
    CarlaTrafficLightStatusList,
    CarlaWorldInfo,
)
from derived_object_msgs.msg import Object, ObjectArray
from drive_stack_msgs.msg import AgentState, PerceivedScene, Plan
from drivesim.geometry import carla_to_ros_pose, ros_to_carla_pose
from drivesim.sim.perception import PerceivedScene as LibScene
from drivesim.sim.state import EGO, AgentKind, SimState
from drivesim.stack import leaderboard
from drivesim.stack.actors import FIRST_ACTOR_ID, light_actor_poses
from drivesim.stack.core import ControlCommand
from drivesim.stack.wire import (  # noqa: F401 - the wire helpers the nodes use, re-exported
    CLASS_OF_KIND,
    KIND_OF_CLASS,
    EgoAccel,
    InvalidMessage,
    light_index,
    lights_array,
    object_rows,
    plan_path,
    plan_profile,
    quat_yaw,
    route_positions,
    state_from_rows,
)
from drivesim.stack.wire import finite as _finite
from geometry_msgs.msg import Point, Pose, Quaternion
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Imu, NavSatFix
from shape_msgs.msg import SolidPrimitive


def ros_time(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def yaw_quat(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))


# ----------------------------------------------------------------------------- simulator side (CARLA contract)
def ego_odometry(state: SimState, t: float, frame: str = "map") -> Odometry:
    """The bridge's odometry pseudo sensor: pose in the map, twist in the vehicle frame. (No vehicle status: the
    bridge publishes none for the Leaderboard's hero.)"""
    x, y, yaw = carla_to_ros_pose(float(state.x[0, EGO]), float(state.y[0, EGO]), float(state.yaw[0, EGO]))
    v = float(state.speed[0, EGO])
    odom = Odometry()
    odom.header.stamp, odom.header.frame_id, odom.child_frame_id = ros_time(t), frame, "hero"
    odom.pose.pose.position.x, odom.pose.pose.position.y = float(x), float(y)
    odom.pose.pose.orientation = yaw_quat(float(yaw))
    odom.twist.twist.linear.x = v  # body frame
    return odom


def speedometer_message(state: SimState, t: float, frame: str = "hero/speed") -> CarlaSpeedometer:
    """The bridge's speedometer pseudo sensor: the hero's signed speed (velocity . forward)."""
    m = CarlaSpeedometer(speed=float(state.speed[0, EGO]))
    m.header.stamp, m.header.frame_id = ros_time(t), frame
    return m


def gnss_message(lat: float, lon: float, t: float, frame: str = "hero/gnss") -> NavSatFix:
    """A GNSS sensor at the hero's origin: a fix (sim.localization.GnssSensor: the map's geoReference and CARLA's
    noise)."""
    m = NavSatFix(latitude=float(lat), longitude=float(lon), altitude=0.0)
    m.header.stamp, m.header.frame_id = ros_time(t), frame
    return m


def imu_message(state: SimState, t: float, frame: str = "hero/imu") -> Imu:
    """An IMU at the hero's origin (the bridge's imu.py): orientation ROS-handed (yaw negated), the longitudinal
    acceleration and the yaw rate are not emulated beyond the acceleration along x (gravity on z)."""
    _, _, yaw = carla_to_ros_pose(0.0, 0.0, float(state.yaw[0, EGO]))
    m = Imu(orientation=yaw_quat(float(yaw)))
    m.linear_acceleration.x, m.linear_acceleration.z = float(state.accel[0, EGO]), 9.81
    m.header.stamp, m.header.frame_id = ros_time(t), frame
    return m


def ego_from_sensors(gnss: NavSatFix, imu: Imu, speed: CarlaSpeedometer, ref: tuple[float, float]) -> Odometry:
    """perception=sensors: the ego's pose and speed from GNSS (position), IMU (orientation) and speedometer, as an
    Odometry (map frame, ROS-handed) for the same code path as the privileged one. Raises InvalidMessage."""
    _finite("/carla/hero/gnss", latitude=gnss.latitude, longitude=gnss.longitude)
    x, y = leaderboard.gps_to_location(gnss.latitude, gnss.longitude, ref)
    odom = Odometry()
    odom.header.stamp, odom.header.frame_id = gnss.header.stamp, "map"
    odom.pose.pose.position.x, odom.pose.pose.position.y = float(x), float(-y)
    odom.pose.pose.orientation = imu.orientation
    odom.twist.twist.linear.x = float(speed.speed)
    return odom


def objects_message(state: SimState, t: float, ids: np.ndarray | None = None, frame: str = "map") -> ObjectArray:
    """The bridge's objects: every valid agent but the ego, its id the CARLA actor id (`ids` per slot, from
    stack.actors.ActorIds; default FIRST_ACTOR_ID + slot)."""
    arr = ObjectArray()
    arr.header.stamp, arr.header.frame_id = ros_time(t), frame
    for a in np.flatnonzero(state.valid[0]):
        if a == EGO:
            continue
        o = Object()
        o.header = arr.header
        o.id = int(ids[a]) if ids is not None else FIRST_ACTOR_ID + int(a)
        o.detection_level = Object.OBJECT_TRACKED
        o.object_classified = True
        x, y, yaw = carla_to_ros_pose(float(state.x[0, a]), float(state.y[0, a]), float(state.yaw[0, a]))
        o.pose.position.x, o.pose.position.y = float(x), float(y)
        o.pose.orientation = yaw_quat(float(yaw))
        v, yw = float(state.speed[0, a]), float(yaw)
        o.twist.linear.x, o.twist.linear.y = v * math.cos(yw), v * math.sin(yw)  # map frame, as the bridge
        o.shape.type = SolidPrimitive.BOX
        o.shape.dimensions = [float(state.length[0, a]), float(state.width[0, a]), 1.5]
        o.classification = CLASS_OF_KIND[AgentKind(int(state.kind[0, a]))]
        o.classification_certainty = 255
        arr.objects.append(o)
    return arr


def lights_message(actor_ids: np.ndarray, states: np.ndarray) -> CarlaTrafficLightStatusList:
    """The bridge's light status list (no header), by actor id."""
    msg = CarlaTrafficLightStatusList()
    msg.traffic_lights = [CarlaTrafficLightStatus(id=int(i), state=int(s)) for i, s in zip(actor_ids, states)]
    return msg


def lights_info_message(g, actor_ids: np.ndarray) -> CarlaTrafficLightInfoList:
    """The bridge's light info list (no header): per light actor, its transform (the pole at the roadside, turned
    across the road: stack/actors.light_actor_poses) and its trigger volume over the stop lines it governs (centre
    relative to the transform, rotation included; size 2 x extent), ROS-handed as the bridge sends them (y and yaw
    negated)."""
    pole, yaw, centre, size = light_actor_poses(g)
    msg = CarlaTrafficLightInfoList()
    for k, i in enumerate(actor_ids):
        info = CarlaTrafficLightInfo(id=int(i))
        info.transform.position = Point(x=float(pole[k, 0]), y=float(-pole[k, 1]), z=0.0)
        info.transform.orientation = yaw_quat(float(-yaw[k]))
        info.trigger_volume.center.x, info.trigger_volume.center.y = float(centre[k, 0]), float(-centre[k, 1])
        info.trigger_volume.center.z = 1.0
        info.trigger_volume.size.x, info.trigger_volume.size.y = float(size[k, 0]), float(size[k, 1])
        info.trigger_volume.size.z = 2.0
        msg.traffic_lights.append(info)
    return msg


def global_plan_messages(dense) -> tuple[CarlaRoute, CarlaGnssRoute]:
    """What the Leaderboard publishes for a dense route (stack/leaderboard.py): CarlaRoute (downsampled, its
    quirks kept: empty header, orientations from degrees read as radians, the first pose 0.5 m up) and
    CarlaGnssRoute (coordinates empty, road options filled: upstream's bug)."""
    poses, options = leaderboard.global_plan(dense.xy, dense.yaw, dense.command)
    route, gnss = CarlaRoute(), CarlaGnssRoute()
    for x, y, z, qx, qy, qz, qw in poses:
        route.poses.append(Pose(position=Point(x=float(x), y=float(y), z=float(z)),
                                orientation=Quaternion(x=float(qx), y=float(qy), z=float(qz), w=float(qw))))
    route.road_options = [int(o) for o in options]
    gnss.road_options = list(route.road_options)
    return route, gnss


def world_info(name: str, xodr: str) -> CarlaWorldInfo:
    return CarlaWorldInfo(map_name=name, opendrive=xodr)


def control_message(t: float, throttle: float, steer: float, brake: float) -> CarlaEgoVehicleControl:
    c = CarlaEgoVehicleControl(throttle=float(throttle), steer=float(steer), brake=float(brake), hand_brake=False,
                               reverse=False, gear=1, manual_gear_shift=False)
    c.header.stamp = ros_time(t)
    return c


def control_command(msg: CarlaEgoVehicleControl) -> ControlCommand:
    return ControlCommand(to_sec(msg.header.stamp), float(msg.throttle), float(msg.steer), float(msg.brake),
                          bool(msg.hand_brake), bool(msg.reverse))


# ----------------------------------------------------------------------------- perception side
def state_from_messages(odom: Odometry, objects: ObjectArray | np.ndarray, max_agents: int, num_lights: int,
                        accel: float = 0.0, slots=None) -> SimState:
    """A one-env SimState (CARLA frame) rebuilt from the bridge's odometry and objects (an ObjectArray, or its
    rows from cdr_objects.decode_object_array; actor ids to slots by `slots`, a stack.actors.SlotMap kept across
    ticks); raises InvalidMessage naming the topic, object and field."""
    rows = object_rows(objects) if isinstance(objects, ObjectArray) else objects
    return state_from_rows(odom, rows, max_agents, num_lights, accel=accel, slots=slots)


def scene_message(scene: LibScene, t: float, e: int = 0, light_ids: np.ndarray | None = None) -> PerceivedScene:
    """Library scene (CARLA-handed ego frame) -> PerceivedScene (ROS ego frame: y left). light_ids: the map's
    light ids in the order of scene.lights."""
    m = PerceivedScene()
    m.header.stamp, m.header.frame_id = ros_time(t), "hero"
    m.ego_speed = float(scene.ego_speed[e])
    m.speed_limit = float(scene.speed_limit[e])
    a = scene.agents[e]
    for j in np.flatnonzero(scene.agents_valid[e]):
        m.agents.append(AgentState(id=int(j) + 1, kind=int(a[j, 6]), x=float(a[j, 0]), y=float(-a[j, 1]),
                                   yaw=float(-a[j, 2]), speed=float(a[j, 3]), length=float(a[j, 4]), width=float(a[j, 5])))
    r = scene.route[e][scene.route_valid[e]]
    m.route = [Point(x=float(p[0]), y=float(-p[1]), z=0.0) for p in r]
    m.command = int(scene.command[e][0]) if scene.route_valid[e][0] else -1
    m.light_state = int(scene.light_state[e])
    m.light_distance = float(scene.light_dist[e])
    m.stop_id = int(scene.stop_id[e])
    m.stop_distance = float(scene.stop_dist[e])
    if scene.ego_pose is not None:
        x, y, yaw = carla_to_ros_pose(*scene.ego_pose[e])
        m.ego_x, m.ego_y, m.ego_yaw = float(x), float(y), float(yaw)
    if scene.ego_accel is not None:
        m.ego_accel = float(scene.ego_accel[e])
    if scene.lights is not None and light_ids is not None and scene.lights.size:
        m.light_ids = [int(i) for i in light_ids]
        m.light_states = [int(v) for v in scene.lights[e]]
    return m


def scene_from_message(m: PerceivedScene, num_agents: int, route_points: int, commands: np.ndarray | None = None,
                       light_ids: np.ndarray | None = None) -> LibScene:
    """PerceivedScene -> library scene (E=1). Raises InvalidMessage on NaN. light_ids: the receiver's map's light
    ids, to put the message's light states in that order (unknown lights read OFF)."""
    agents = np.zeros((1, num_agents, 7), np.float32)
    valid = np.zeros((1, num_agents), bool)
    for ag in m.agents:
        j = int(ag.id) - 1
        if 0 <= j < num_agents:
            agents[0, j] = (ag.x, -ag.y, -ag.yaw, ag.speed, ag.length, ag.width, ag.kind)
            valid[0, j] = True
    _finite("/drive_stack/scene", ego_speed=m.ego_speed, speed_limit=m.speed_limit, agents=agents)
    route = np.zeros((1, route_points, 2))
    rv = np.zeros((1, route_points), bool)
    pts = np.array([[p.x, -p.y] for p in m.route], np.float64).reshape(-1, 2)[:route_points]
    _finite("/drive_stack/scene", route=pts)
    n = len(pts)
    if n:
        route[0, :n] = pts
        route[0, n:] = pts[-1]
        rv[0, :n] = True
    cmd = np.full((1, route_points), max(int(m.command), 0), np.int8)
    if commands is not None:
        cmd[0, : min(len(commands), route_points)] = commands[:route_points]
    _finite("/drive_stack/scene", ego_pose=np.array([m.ego_x, m.ego_y, m.ego_yaw]), ego_accel=m.ego_accel)
    lights = None
    if light_ids is not None:
        lights = np.full((1, len(light_ids)), 3, np.int8)  # OFF where the message does not say
        pos = {int(i): k for k, i in enumerate(light_ids)}
        for i, v in zip(m.light_ids, m.light_states):
            k = pos.get(int(i))
            if k is not None:
                lights[0, k] = int(v)
    return LibScene(ego_speed=np.array([m.ego_speed], np.float64), route=route, route_valid=rv, command=cmd,
                    speed_limit=np.array([m.speed_limit]), agents=agents, agents_valid=valid,
                    light_dist=np.array([m.light_distance]), light_state=np.array([m.light_state], np.int64),
                    stop_dist=np.array([m.stop_distance]), stop_id=np.array([m.stop_id], np.int64),
                    ego_pose=np.array([ros_to_carla_pose(m.ego_x, m.ego_y, m.ego_yaw)], np.float64),
                    ego_accel=np.array([m.ego_accel], np.float64), lights=lights,
                    agent_ids=np.arange(1, num_agents + 1), t=np.array([to_sec(m.header.stamp)]))


def plan_message(path: np.ndarray, target_speed: float, t: float, policy: str,
                 speed_profile: np.ndarray | None = None) -> Plan:
    """path (P, 2) in the CARLA-handed ego frame; speed_profile (P,) [m/s] (default: the target speed)."""
    m = Plan()
    m.header.stamp, m.header.frame_id = ros_time(t), "hero"
    m.path = [Point(x=float(p[0]), y=float(-p[1]), z=0.0) for p in path]
    prof = np.full(len(path), target_speed) if speed_profile is None else np.asarray(speed_profile, np.float64)
    m.speed_profile = [float(v) for v in prof]
    m.target_speed = float(target_speed)
    m.policy = policy
    return m
