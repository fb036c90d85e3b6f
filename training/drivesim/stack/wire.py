"""The stack's messages as plain numbers, without rclpy: what the ROS nodes (`drive_stack.convert`) and the bag
readers (`dataset.ingest`) share, so a scene rebuilt from a bag is the scene the stack's perception rebuilt live.

Everything on the wire is ROS-handed (x forward, y left, yaw counter-clockwise); the library is CARLA-handed
(`geometry.ros_to_carla_pose`). Messages here are anything with the message's attributes: rclpy's classes or
the ones rosbags deserialises.
"""

from __future__ import annotations

import numpy as np

from ..geometry import ros_to_carla_pose
from ..sim.dynamics import DEFAULT_VEHICLE
from ..sim.state import EGO, AgentKind, Behavior, SimState, empty_state

# derived_object_msgs/Object CLASSIFICATION_* values
CLASS_UNKNOWN, CLASS_PEDESTRIAN, CLASS_BIKE, CLASS_CAR, CLASS_TRUCK, CLASS_MOTORCYCLE = 0, 4, 5, 6, 7, 8
CLASS_OTHER_VEHICLE, CLASS_BARRIER = 9, 10
CLASS_OF_KIND = {AgentKind.VEHICLE: CLASS_CAR, AgentKind.PEDESTRIAN: CLASS_PEDESTRIAN, AgentKind.CYCLIST: CLASS_BIKE,
                 AgentKind.STATIC: CLASS_BARRIER, AgentKind.EMERGENCY: CLASS_OTHER_VEHICLE}
KIND_OF_CLASS = {CLASS_CAR: AgentKind.VEHICLE, CLASS_TRUCK: AgentKind.VEHICLE, CLASS_OTHER_VEHICLE: AgentKind.VEHICLE,
                 CLASS_MOTORCYCLE: AgentKind.CYCLIST, CLASS_PEDESTRIAN: AgentKind.PEDESTRIAN,
                 CLASS_BIKE: AgentKind.CYCLIST}
OBJECT_FIELDS = ("x", "y", "orientation", "orientation", "orientation", "orientation", "twist", "twist",
                 "dimensions", "dimensions")  # what columns 1..10 of an object row are, for error messages
LIGHT_OFF = 3


class InvalidMessage(ValueError):
    """A message with a non-finite or out-of-range field; the text names the topic and the field."""


def finite(topic: str, **fields) -> None:
    bad = [k for k, v in fields.items() if not np.all(np.isfinite(np.asarray(v, dtype=np.float64)))]
    if bad:
        raise InvalidMessage(f"{topic}: non-finite {', '.join(bad)}")


IMAGE_CHANNELS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)), "bgra8": (4, (2, 1, 0)),
                  "mono8": (1, (0, 0, 0))}  # encoding -> (bytes per pixel, the R, G, B byte of a pixel)


def image_rgb(height: int, width: int, encoding: str, step: int, data, topic: str = "camera") -> np.ndarray:
    """A sensor_msgs/Image's fields -> (height, width, 3) uint8 RGB (the bridge's cameras send bgra8). Raises
    InvalidMessage naming the topic for an encoding it cannot read or a buffer that does not match the size."""
    if encoding not in IMAGE_CHANNELS:
        raise InvalidMessage(f"{topic}: image encoding {encoding!r}; readable: {', '.join(IMAGE_CHANNELS)}")
    n, rgb = IMAGE_CHANNELS[encoding]
    buf = np.frombuffer(bytes(data), np.uint8)
    if height <= 0 or width <= 0 or step < width * n or len(buf) < step * height:
        raise InvalidMessage(f"{topic}: image {width}x{height} {encoding} with step {step} needs {step * height} "
                             f"bytes (step >= {width * n}), got {len(buf)}")
    px = buf[: step * height].reshape(height, step)[:, : width * n].reshape(height, width, n)
    return np.ascontiguousarray(px[..., list(rgb)])


def stamp_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def quat_yaw(q) -> float:
    return float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))


def object_rows(objects) -> np.ndarray:
    """An ObjectArray as (N, 12) rows: id, x, y, qx, qy, qz, qw, vx, vy, length, width, classification (the
    layout `drive_stack.cdr_objects.decode_object_array` gives)."""
    return np.array([(o.id, o.pose.position.x, o.pose.position.y, o.pose.orientation.x, o.pose.orientation.y,
                      o.pose.orientation.z, o.pose.orientation.w, o.twist.linear.x, o.twist.linear.y,
                      *(list(o.shape.dimensions[:2]) + [np.nan, np.nan])[:2], o.classification)
                     for o in objects.objects], np.float64).reshape(-1, 12)


class EgoAccel:
    """The ego's longitudinal acceleration from its odometry speeds (the Leaderboard's hero has no
    /carla/hero/vehicle_status: the bridge publishes it only for an EgoVehicle, CONTRACT.md section 1): the speed
    difference to the previous tick over their time difference (the simulator's own definition), 0 at the first tick
    or after a gap of more than `max_gap` seconds."""

    def __init__(self, max_gap: float = 0.2):
        self.max_gap, self.prev = max_gap, None

    def __call__(self, t: float, speed: float) -> float:
        prev, self.prev = self.prev, (t, speed)
        if prev is None or not 0.0 < t - prev[0] <= self.max_gap:
            return 0.0
        return (speed - prev[1]) / (t - prev[0])


def state_from_rows(odom, rows: np.ndarray, max_agents: int, num_lights: int, accel: float = 0.0,
                    topic: str = "/carla/hero/objects", slots=None) -> SimState:
    """A one-env SimState (CARLA frame) from the ego's Odometry, its longitudinal acceleration (the vehicle
    status's; the learned planners read it) and the objects' rows (`object_rows`; ids are CARLA actor ids). Each
    object goes to the slot `slots` (a `stack.actors.SlotMap`, kept across ticks so an actor keeps its slot)
    gives it: the max_agents-1 nearest ones. Raises InvalidMessage naming the topic, object and field."""
    from .actors import SlotMap

    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    finite("/carla/hero/odometry", x=p.x, y=p.y, orientation=[q.x, q.y, q.z, q.w], speed=odom.twist.twist.linear.x)
    finite("/carla/hero/odometry", acceleration=accel)
    st = empty_state(1, max_agents, num_lights)
    x, y, yaw = ros_to_carla_pose(p.x, p.y, quat_yaw(q))
    st.x[0, EGO], st.y[0, EGO], st.yaw[0, EGO] = x, y, yaw
    st.speed[0, EGO], st.accel[0, EGO] = odom.twist.twist.linear.x, accel
    st.length[0, EGO], st.width[0, EGO] = DEFAULT_VEHICLE.length, DEFAULT_VEHICLE.width
    st.kind[0, EGO], st.behavior[0, EGO], st.valid[0, EGO] = AgentKind.VEHICLE, Behavior.CONTROLLED, True
    bad = ~np.isfinite(rows[:, 1:11])
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InvalidMessage(f"{topic}[id={int(rows[i, 0])}]: non-finite {OBJECT_FIELDS[j]}")
    slots = slots if slots is not None else SlotMap(max_agents)
    slot = slots.assign(rows[:, 0].astype(np.int64), np.hypot(rows[:, 1] - p.x, rows[:, 2] - p.y))
    rows, slot = rows[slot > 0], slot[slot > 0]
    if len(rows):
        qx, qy, qz, qw = rows[:, 3], rows[:, 4], rows[:, 5], rows[:, 6]
        yaw_ros = np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        x, y, yaw = ros_to_carla_pose(rows[:, 1], rows[:, 2], yaw_ros)
        st.x[0, slot], st.y[0, slot], st.yaw[0, slot] = x, y, yaw
        st.speed[0, slot] = np.hypot(rows[:, 7], rows[:, 8])
        st.length[0, slot], st.width[0, slot] = rows[:, 9], rows[:, 10]
        st.kind[0, slot] = [KIND_OF_CLASS.get(int(c), AgentKind.STATIC) for c in rows[:, 11]]
        st.behavior[0, slot], st.valid[0, slot] = Behavior.STATIC, True
    return st


LIGHT_MATCH = 12.0  # [m] a light actor's trigger volume within this of a light's stop line is that light


def trigger_centres(info, topic: str = "/carla/traffic_lights/info") -> tuple[np.ndarray, np.ndarray]:
    """Actor ids (N,) and the world positions (N, 2) of their trigger volumes' centres, CARLA-handed, from a
    CarlaTrafficLightInfoList: as CARLA's `actor_transform.transform(trigger_volume.location)`, in the bridge's
    ROS-handed values (it negates y and yaw, so the rotation is done in the ROS frame and y negated after)."""
    ids, xy = [], []
    for tl in info.traffic_lights:
        p, q, c = tl.transform.position, tl.transform.orientation, tl.trigger_volume.center
        finite(topic, **{f"id={tl.id}.transform": [p.x, p.y], f"id={tl.id}.trigger_volume.center": [c.x, c.y]})
        yaw = quat_yaw(q)
        wx = p.x + c.x * np.cos(yaw) - c.y * np.sin(yaw)
        wy = p.y + c.x * np.sin(yaw) + c.y * np.cos(yaw)
        ids.append(int(tl.id))
        xy.append((wx, -wy))
    return np.asarray(ids, np.int64), np.asarray(xy, np.float64).reshape(-1, 2)


def light_index(info, light_pos: np.ndarray, topic: str = "/carla/traffic_lights/info") -> dict[int, int]:
    """CARLA traffic-light actor id -> index of the lane graph's light (its stop line nearest the actor's trigger
    volume, within LIGHT_MATCH m; `trigger_centres`). Actors near no light of the map are left out."""
    out: dict[int, int] = {}
    if not len(light_pos):
        return out
    ids, xy = trigger_centres(info, topic)
    for i, (wx, wy) in zip(ids, xy):
        d = np.hypot(light_pos[:, 0] - wx, light_pos[:, 1] - wy)
        k = int(np.argmin(d))
        if d[k] <= LIGHT_MATCH:
            out[int(i)] = k
    return out


def lights_array(msg, index, n: int | None = None) -> np.ndarray:
    """(1, T) LightState in the lane graph's light order from a CarlaTrafficLightStatusList. index: actor id ->
    light index (`light_index`, with n the map's light count), or the lane graph's light ids (an array: ids are
    the lights' own). Lights the message does not mention are OFF."""
    if not isinstance(index, dict):
        n, index = len(index), {int(i): k for k, i in enumerate(index)}
    out = np.full((1, n), LIGHT_OFF, np.int8)
    for tl in msg.traffic_lights if msg is not None else ():
        k = index.get(int(tl.id))
        if k is not None:
            out[0, k] = min(int(tl.state), LIGHT_OFF)
    return out


def scene_lights(scene, light_ids: np.ndarray) -> np.ndarray:
    """(1, T) LightState in the lane graph's light order from a PerceivedScene's light_ids / light_states."""
    index = {int(i): k for k, i in enumerate(light_ids)}
    out = np.full((1, len(light_ids)), LIGHT_OFF, np.int8)
    for i, s in zip(scene.light_ids, scene.light_states):
        k = index.get(int(i))
        if k is not None:
            out[0, k] = min(int(s), LIGHT_OFF)
    return out


def route_positions(route, topic: str = "/carla/hero/global_plan") -> np.ndarray:
    """A carla_msgs/CarlaRoute's (the Leaderboard's downsampled global plan) pose positions (N, 3), ROS-handed, for
    `stack.leaderboard.route_from_plan` (upstream's orientations are wrong: not read). Raises InvalidMessage naming
    the topic for non-finite positions or fewer than 2 poses."""
    pts = np.array([[p.position.x, p.position.y, p.position.z] for p in route.poses], np.float64).reshape(-1, 3)
    finite(topic, poses=pts)
    if len(pts) < 2:
        raise InvalidMessage(f"{topic}: {len(pts)} pose(s); a route needs at least 2")
    return pts


def plan_path(m) -> np.ndarray:
    """A drive_stack_msgs/Plan's path (P, 2), CARLA-handed ego frame."""
    return np.array([[p.x, -p.y] for p in m.path], np.float64).reshape(-1, 2)


def plan_profile(m) -> np.ndarray:
    prof = np.asarray(m.speed_profile, np.float64)
    return prof if len(prof) == len(m.path) else np.full(len(m.path), m.target_speed, np.float64)
