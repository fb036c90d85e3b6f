"""The Leaderboard 2.0 ROS agent's side of the ROS boundary, as numbers (no ROS): what its `leaderboard_node`
publishes and applies (../shared/carla_lb2/CONTRACT.md sections 2-4, from leaderboard-2.0 @ a87a3419e9d2), so that
the pseudo-simulator emulates it and the stack reads what it sends.

- The global plan: the route densified at 1 m (GlobalRoutePlanner, hop 1.0; our `routes.planner.plan_route` with
  its CARLA RoadOption commands) and downsampled as `route_manipulation.downsample_route(route, 200)` does
  (`downsample_route`); published once, after the stack said it is up on /carla/hero/status, as
  `carla_msgs/CarlaRoute` (`global_plan`): positions (x, -y, z), the first raised by 0.5 m (the ego spawn edits
  the route's first transform in place), orientations from `transforms3d.euler.euler2quat(roll, -pitch, -yaw)`
  fed with *degrees* (upstream's quirk: wrong unless the angles are 0; a consumer must not read them), an empty
  header; and `CarlaGnssRoute` with its coordinates empty and the road options filled (upstream's bug).
- A stack gets a route back from those poses (`route_from_plan`): their positions, CARLA-handed, densified again
  over the map (what the Leaderboard's own GlobalRoutePlanner did with the route file's keypoints), the direction
  of travel at each pose chosen as the one whose lane paths are shortest (`routes.planner.sparse_lanes`).
- A tick without a valid command within COMMAND_TIMEOUT seconds of wall time gets `carla.VehicleControl()`:
  throttle, steer and brake 0 (`ZERO_CONTROL`; the car coasts), not the previous command.
"""

from __future__ import annotations

import numpy as np

from ..maps.lanegraph import Command

SAMPLE_FACTOR = 200.0  # [m] route_manipulation.downsample_route's sample_factor in autonomous_agent.set_global_plan
COMMAND_TIMEOUT = 1.0  # [s wall] ros_base_agent.run_step waits this long for a command, then applies ZERO_CONTROL
SPAWN_Z_OFFSET = 0.5  # [m] route_scenario raises the first route transform (the ego's spawn) in place
ZERO_CONTROL = (0.0, 0.0, 0.0)  # throttle, steer, brake of carla.VehicleControl()
LANE_CHANGES = (int(Command.CHANGELANELEFT), int(Command.CHANGELANERIGHT))


def downsample_route(xy: np.ndarray, options: np.ndarray, sample_factor: float = SAMPLE_FACTOR) -> np.ndarray:
    """Indices of the dense route (xy (N, 2), RoadOption values (N,)) the Leaderboard keeps, in its order of
    tests: every lane-change point; a point whose option differs from the previous one, unless that one was a
    lane change; the next point once more than `sample_factor` metres accumulated since the last kept one (only
    the steps onto points not kept count); the last point."""
    keep, prev, dist = [], None, 0.0
    n = len(options)
    for i in range(n):
        cur = int(options[i])
        if cur in LANE_CHANGES:
            keep.append(i)
            dist = 0.0
        elif prev != cur and prev not in LANE_CHANGES:
            keep.append(i)
            dist = 0.0
        elif dist > sample_factor:
            keep.append(i)
            dist = 0.0
        elif i == n - 1:
            keep.append(i)
            dist = 0.0
        else:
            dist += float(np.hypot(*(xy[i] - xy[i - 1])))
        prev = cur
    return np.asarray(keep, np.int64)


def euler2quat_sxyz(ai, aj, ak) -> np.ndarray:
    """transforms3d.euler.euler2quat(ai, aj, ak) with its default axes 'sxyz', as (w, x, y, z); angles in radians
    (the Leaderboard passes degrees)."""
    ai, aj, ak = np.asarray(ai, np.float64) / 2, np.asarray(aj, np.float64) / 2, np.asarray(ak, np.float64) / 2
    ci, si, cj, sj, ck, sk = np.cos(ai), np.sin(ai), np.cos(aj), np.sin(aj), np.cos(ak), np.sin(ak)
    cc, cs, sc, ss = ci * ck, ci * sk, si * ck, si * sk
    return np.stack([cj * cc + sj * ss, cj * sc - sj * cs, cj * ss + sj * cc, cj * cs - sj * sc], -1)


def global_plan(xy: np.ndarray, yaw: np.ndarray, options: np.ndarray, z: np.ndarray | None = None,
                sample_factor: float = SAMPLE_FACTOR) -> tuple[np.ndarray, np.ndarray]:
    """The CarlaRoute the Leaderboard publishes for a dense route (CARLA frame: xy (N, 2) [m], yaw (N,) [rad],
    RoadOption values (N,), z (N,) [m] or 0): poses (K, 7) x, y, z, qx, qy, qz, qw (ROS-handed, with upstream's
    orientation quirk) and road_options (K,) int8."""
    idx = downsample_route(xy, options, sample_factor)
    zz = np.zeros(len(xy)) if z is None else np.asarray(z, np.float64)
    zz = zz.copy()
    zz[0] += SPAWN_Z_OFFSET
    yaw_deg = np.degrees(np.asarray(yaw, np.float64)[idx])
    q = euler2quat_sxyz(np.zeros(len(idx)), -np.zeros(len(idx)), -yaw_deg)  # degrees, read as radians (the quirk)
    poses = np.column_stack([xy[idx, 0], -xy[idx, 1], zz[idx], q[:, 1], q[:, 2], q[:, 3], q[:, 0]])
    return poses, np.asarray(options, np.int8)[idx]


def route_from_plan(g, positions: np.ndarray, name: str = "global_plan", source: str = "/carla/hero/global_plan"):
    """The dense route a stack drives, from the CarlaRoute's pose positions (K, 3) ROS-handed: the keypoints
    densified over the map, each keypoint's direction of travel chosen by `routes.planner.sparse_lanes` (the
    poses are up to 200 m apart with turns between them; their orientations are unusable)."""
    from ..routes.planner import plan_route, sparse_lanes
    from ..routes.xml import RouteSpec

    kp = route_keypoints(positions)
    spec = RouteSpec(name, g.name, kp, source=source)
    return plan_route(g, spec, lanes=sparse_lanes(g, kp, f"{source}: route {name} ({g.name})"))


def route_keypoints(positions: np.ndarray) -> np.ndarray:
    """A CarlaRoute's pose positions (K, 3) ROS-handed -> route keypoints (K, 3), CARLA-handed, for
    `routes.planner.plan_route` (orientations are not read: upstream's are wrong)."""
    p = np.asarray(positions, np.float64).reshape(-1, 3)
    return np.column_stack([p[:, 0], -p[:, 1], p[:, 2]])


__all__ = ["COMMAND_TIMEOUT", "SAMPLE_FACTOR", "ZERO_CONTROL", "downsample_route", "euler2quat_sxyz", "global_plan",
           "route_from_plan", "route_keypoints"]


# ------------------------------------------------------------------------------------------------ GNSS
from ..sim.localization import EARTH_RADIUS_EQUA, geo_reference, gps_to_location, location_to_gps  # noqa: E402,F401 - here since upstream computes them for the route
