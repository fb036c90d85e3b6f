"""Messages <-> library types. The one place where CARLA's left-handed frame meets ROS's right-handed one
(`drivesim.geometry.carla_to_ros_pose`): everything on the wire is ROS-handed, everything in the library is
CARLA-handed."""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from carla_msgs.msg import (
    CarlaEgoVehicleControl,
    CarlaEgoVehicleStatus,
    CarlaTrafficLightStatus,
    CarlaTrafficLightStatusList,
)
from derived_object_msgs.msg import Object, ObjectArray
from drive_stack_msgs.msg import AgentState, PerceivedScene, Plan
from drivesim.geometry import carla_to_ros_pose, ros_to_carla_pose
from drivesim.sim.dynamics import DEFAULT_VEHICLE
from drivesim.sim.perception import PerceivedScene as LibScene
from drivesim.sim.state import EGO, AgentKind, Behavior, SimState, empty_state
from drivesim.stack.core import ControlCommand
from geometry_msgs.msg import Point, PoseStamped, Quaternion
from nav_msgs.msg import Odometry, Path
from shape_msgs.msg import SolidPrimitive

CLASS_OF_KIND = {AgentKind.VEHICLE: Object.CLASSIFICATION_CAR, AgentKind.PEDESTRIAN: Object.CLASSIFICATION_PEDESTRIAN,
                 AgentKind.CYCLIST: Object.CLASSIFICATION_BIKE, AgentKind.STATIC: Object.CLASSIFICATION_BARRIER,
                 AgentKind.EMERGENCY: Object.CLASSIFICATION_OTHER_VEHICLE}
KIND_OF_CLASS = {Object.CLASSIFICATION_CAR: AgentKind.VEHICLE, Object.CLASSIFICATION_TRUCK: AgentKind.VEHICLE,
                 Object.CLASSIFICATION_OTHER_VEHICLE: AgentKind.VEHICLE, Object.CLASSIFICATION_MOTORCYCLE: AgentKind.CYCLIST,
                 Object.CLASSIFICATION_PEDESTRIAN: AgentKind.PEDESTRIAN, Object.CLASSIFICATION_BIKE: AgentKind.CYCLIST}


class InvalidMessage(ValueError):
    """A message with NaN / out-of-range fields; the text names the message and the fields."""


def ros_time(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def yaw_quat(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))


def quat_yaw(q: Quaternion) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def _finite(name: str, **fields) -> None:
    bad = [k for k, v in fields.items() if not np.all(np.isfinite(np.asarray(v, dtype=np.float64)))]
    if bad:
        raise InvalidMessage(f"{name}: non-finite {', '.join(bad)}")


# ----------------------------------------------------------------------------- simulator side (CARLA contract)
def ego_messages(state: SimState, t: float, frame: str = "map") -> tuple[Odometry, CarlaEgoVehicleStatus]:
    x, y, yaw = carla_to_ros_pose(float(state.x[0, EGO]), float(state.y[0, EGO]), float(state.yaw[0, EGO]))
    v = float(state.speed[0, EGO])
    odom = Odometry()
    odom.header.stamp, odom.header.frame_id, odom.child_frame_id = ros_time(t), frame, "hero"
    odom.pose.pose.position.x, odom.pose.pose.position.y = float(x), float(y)
    odom.pose.pose.orientation = yaw_quat(float(yaw))
    odom.twist.twist.linear.x = v  # body frame
    status = CarlaEgoVehicleStatus()
    status.header = odom.header
    status.velocity = v
    status.acceleration.linear.x = float(state.accel[0, EGO])
    status.orientation = odom.pose.pose.orientation
    return odom, status


def objects_message(state: SimState, t: float, frame: str = "map") -> ObjectArray:
    arr = ObjectArray()
    arr.header.stamp, arr.header.frame_id = ros_time(t), frame
    for a in np.flatnonzero(state.valid[0]):
        if a == EGO:
            continue
        o = Object()
        o.header = arr.header
        o.id = int(a)
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


def lights_message(light_ids: np.ndarray, states: np.ndarray) -> CarlaTrafficLightStatusList:
    msg = CarlaTrafficLightStatusList()
    msg.traffic_lights = [CarlaTrafficLightStatus(id=int(i), state=int(s)) for i, s in zip(light_ids, states)]
    return msg


def route_path(keypoints: np.ndarray, t: float, frame: str = "map") -> Path:
    path = Path()
    path.header.stamp, path.header.frame_id = ros_time(t), frame
    for k in keypoints:
        ps = PoseStamped()
        ps.header = path.header
        x, y, _ = carla_to_ros_pose(float(k[0]), float(k[1]), 0.0)
        ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = float(x), float(y), float(k[2])
        path.poses.append(ps)
    return path


def path_keypoints(path: Path) -> np.ndarray:
    pts = np.array([[p.pose.position.x, -p.pose.position.y, p.pose.position.z] for p in path.poses], np.float64)
    _finite("/carla/hero/global_plan", poses=pts)
    return pts.reshape(-1, 3)


def control_message(t: float, throttle: float, steer: float, brake: float) -> CarlaEgoVehicleControl:
    c = CarlaEgoVehicleControl(throttle=float(throttle), steer=float(steer), brake=float(brake), hand_brake=False,
                               reverse=False, gear=1, manual_gear_shift=False)
    c.header.stamp = ros_time(t)
    return c


def control_command(msg: CarlaEgoVehicleControl) -> ControlCommand:
    return ControlCommand(to_sec(msg.header.stamp), float(msg.throttle), float(msg.steer), float(msg.brake),
                          bool(msg.hand_brake), bool(msg.reverse))


# ----------------------------------------------------------------------------- perception side
def object_rows(objects: ObjectArray) -> np.ndarray:
    """An ObjectArray as (N, 12) rows in cdr_objects.FIELDS order (the same as decode_object_array gives)."""
    return np.array([(o.id, o.pose.position.x, o.pose.position.y, o.pose.orientation.x, o.pose.orientation.y,
                      o.pose.orientation.z, o.pose.orientation.w, o.twist.linear.x, o.twist.linear.y,
                      *(list(o.shape.dimensions[:2]) + [np.nan, np.nan])[:2], o.classification)
                     for o in objects.objects], np.float64).reshape(-1, 12)


def state_from_messages(odom: Odometry, objects: ObjectArray | np.ndarray, max_agents: int, num_lights: int) -> SimState:
    """A one-env SimState (CARLA frame) rebuilt from the bridge's odometry and objects (an ObjectArray, or its
    rows from cdr_objects.decode_object_array); raises InvalidMessage naming the topic, object and field."""
    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    _finite("/carla/hero/odometry", x=p.x, y=p.y, orientation=[q.x, q.y, q.z, q.w], speed=odom.twist.twist.linear.x)
    st = empty_state(1, max_agents, num_lights)
    x, y, yaw = ros_to_carla_pose(p.x, p.y, quat_yaw(q))
    st.x[0, EGO], st.y[0, EGO], st.yaw[0, EGO] = x, y, yaw
    st.speed[0, EGO] = odom.twist.twist.linear.x
    st.length[0, EGO], st.width[0, EGO] = DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width
    st.kind[0, EGO], st.behavior[0, EGO], st.valid[0, EGO] = AgentKind.VEHICLE, Behavior.CONTROLLED, True
    rows = object_rows(objects) if isinstance(objects, ObjectArray) else objects
    rows = rows[(rows[:, 0] > 0) & (rows[:, 0] < max_agents)]
    if len(rows):
        bad = ~np.isfinite(rows[:, 1:11])
        if bad.any():
            i, j = np.argwhere(bad)[0]
            field = ["x", "y", "orientation", "orientation", "orientation", "orientation", "twist", "twist",
                     "dimensions", "dimensions"][j]
            raise InvalidMessage(f"/carla/hero/objects[id={int(rows[i, 0])}]: non-finite {field}")
        slot = rows[:, 0].astype(np.int64)
        qx, qy, qz, qw = rows[:, 3], rows[:, 4], rows[:, 5], rows[:, 6]
        yaw_ros = np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        x, y, yaw = ros_to_carla_pose(rows[:, 1], rows[:, 2], yaw_ros)
        st.x[0, slot], st.y[0, slot], st.yaw[0, slot] = x, y, yaw
        st.speed[0, slot] = np.hypot(rows[:, 7], rows[:, 8])
        st.length[0, slot], st.width[0, slot] = rows[:, 9], rows[:, 10]
        st.kind[0, slot] = [KIND_OF_CLASS.get(int(c), AgentKind.STATIC) for c in rows[:, 11]]
        st.behavior[0, slot], st.valid[0, slot] = Behavior.STATIC, True
    return st


def lights_array(msg: CarlaTrafficLightStatusList, light_ids: np.ndarray) -> np.ndarray:
    """(1, T) LightState in the lane graph's light order; lights the message does not mention are OFF."""
    index = {int(i): k for k, i in enumerate(light_ids)}
    out = np.full((1, len(light_ids)), 3, np.int8)  # OFF
    for tl in msg.traffic_lights:
        k = index.get(int(tl.id))
        if k is not None:
            out[0, k] = min(int(tl.state), 3)
    return out


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


def plan_path(m: Plan) -> np.ndarray:
    return np.array([[p.x, -p.y] for p in m.path], np.float64).reshape(-1, 2)


def plan_profile(m: Plan) -> np.ndarray:
    prof = np.asarray(m.speed_profile, np.float64)
    return prof if len(prof) == len(m.path) else np.full(len(m.path), m.target_speed, np.float64)
