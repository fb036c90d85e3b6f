"""The ego's position as a stack on the Leaderboard's sensors knows it: a GNSS fix with CARLA's noise, filtered.

Under Leaderboard 2.0 an agent may not read its pose (odometry is a bridge pseudo sensor outside the allowed list,
../shared/carla_lb2/CONTRACT.md); it has a GNSS, an IMU and a speedometer. The Leaderboard fixes the GNSS's
attributes (leaderboard-2.0 a87a341, leaderboard/autoagents/agent_wrapper.py:199-205): Gaussian noise of
5e-6 deg standard deviation on latitude, longitude and altitude, no bias: about 0.56 m on each axis. The IMU's
noise is on its accelerations and rates (agent_wrapper.py:212-218); its orientation, from the sensor's transform
in the bridge, is exact, and so is the speedometer.

- `GnssSensor`: the fixes of every env, one per tick, as CARLA draws them (the noise in degrees, on the
  geoReference's projection), from a generator per env seeded by (seed, env): the pseudo-simulator publishes them,
  the library loop in perception mode `sensors` feeds them to the same filter, so both see the same numbers.
- `GnssFilter`: a Kalman filter of the position per env (per axis): predicted along the IMU's heading at the
  speedometer's speed (the tick's mid-point), corrected by each fix. With the noise off it returns the fixes.
  Steady state with the Leaderboard's noise: about 0.16 m standard deviation (`tests/test_lb_emulation.py`).
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_EQUA = 6378137.0  # [m] route_manipulation._location_to_gps (and CARLA's own GNSS)


def geo_reference(xodr: str) -> tuple[float, float]:
    """(lat_0, lon_0) of an OpenDRIVE header's geoReference (`+lat_0=.. +lon_0=..`), as
    route_manipulation._get_latlon_ref reads it; 42.0, 2.0 when absent (its defaults)."""
    import re

    m = re.search(r"<geoReference>(.*?)</geoReference>", xodr, re.S)
    lat, lon = 42.0, 2.0
    if m:
        for item in m.group(1).replace("<![CDATA[", " ").replace("]]>", " ").split():
            if item.startswith("+lat_0="):
                lat = float(item.split("=", 1)[1])
            elif item.startswith("+lon_0="):
                lon = float(item.split("=", 1)[1])
    return lat, lon


def location_to_gps(x, y, ref: tuple[float, float]):
    """CARLA location (x, y) [m] -> (latitude, longitude) [deg], as CARLA's GNSS and the Leaderboard compute it."""
    lat_ref, lon_ref = ref
    scale = np.cos(np.radians(lat_ref))
    mx = scale * lon_ref * np.pi * EARTH_RADIUS_EQUA / 180.0 + np.asarray(x, np.float64)
    my = scale * EARTH_RADIUS_EQUA * np.log(np.tan((90.0 + lat_ref) * np.pi / 360.0)) - np.asarray(y, np.float64)
    lon = mx * 180.0 / (np.pi * EARTH_RADIUS_EQUA * scale)
    lat = 360.0 * np.arctan(np.exp(my / (EARTH_RADIUS_EQUA * scale))) / np.pi - 90.0
    return lat, lon


def gps_to_location(lat, lon, ref: tuple[float, float]):
    """The inverse of `location_to_gps`: (latitude, longitude) [deg] -> CARLA (x, y) [m]."""
    lat_ref, lon_ref = ref
    scale = np.cos(np.radians(lat_ref))
    mx0 = scale * lon_ref * np.pi * EARTH_RADIUS_EQUA / 180.0
    my0 = scale * EARTH_RADIUS_EQUA * np.log(np.tan((90.0 + lat_ref) * np.pi / 360.0))
    mx = np.asarray(lon, np.float64) * np.pi * EARTH_RADIUS_EQUA * scale / 180.0
    my = EARTH_RADIUS_EQUA * scale * np.log(np.tan((90.0 + np.asarray(lat, np.float64)) * np.pi / 360.0))
    return mx - mx0, -(my - my0)


GNSS_NOISE_DEG = 5e-6  # [deg] the Leaderboard's noise_{lat,lon,alt}_stddev (agent_wrapper.py:200-202), bias 0
PROCESS_NOISE = 0.05  # [m] the filter's prediction error per tick (the controller's step against a straight line)


def noise_metres(ref: tuple[float, float], noise_deg: float = GNSS_NOISE_DEG) -> np.ndarray:
    """(x, y) standard deviation [m] of a fix near the geoReference, for `noise_deg` on longitude and latitude."""
    lat_ref = ref[0]
    k = np.pi * EARTH_RADIUS_EQUA / 180.0 * noise_deg
    return np.array([k * np.cos(np.radians(lat_ref)), k])


class GnssSensor:
    """One GNSS per env at the ego's origin: `read(x, y)` draws this tick's fixes (latitude, longitude [deg], with
    the noise) and returns them; `lat`, `lon` and `xy` (the fix back in map metres, as the stack computes it) hold
    the last ones."""

    def __init__(self, ref: tuple[float, float], num_envs: int, seed: int = 0, noise_deg: float = GNSS_NOISE_DEG):
        self.ref, self.noise = (float(ref[0]), float(ref[1])), float(noise_deg)
        self.rngs = [np.random.default_rng([int(seed), 0x6E55, e]) for e in range(num_envs)]
        self.lat = self.lon = self.xy = None

    def read(self, x: np.ndarray, y: np.ndarray, envs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This tick's fixes of the ego positions x, y (E,) (only of `envs`, a mask, when given: the others keep
        theirs)."""
        E = len(self.rngs)
        envs = np.ones(E, bool) if envs is None else np.asarray(envs, bool)
        if self.lat is None:
            self.lat, self.lon, self.xy = np.zeros(E), np.zeros(E), np.zeros((E, 2))
        lat, lon = location_to_gps(np.asarray(x, np.float64)[envs], np.asarray(y, np.float64)[envs], self.ref)
        d = np.stack([self.rngs[e].normal(0.0, 1.0, 3) for e in np.flatnonzero(envs)])  # latitude, longitude, altitude
        self.lat[envs] = lat + self.noise * d[:, 0]
        self.lon[envs] = lon + self.noise * d[:, 1]
        self.xy[envs] = np.stack(gps_to_location(self.lat[envs], self.lon[envs], self.ref), -1)
        return self.lat, self.lon


def wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


class GnssFilter:
    """The ego's position per env (map metres) from GNSS fixes, the IMU's heading and the speedometer."""

    def __init__(self, num_envs: int, fix_sigma, process: float = PROCESS_NOISE):
        self.r = np.broadcast_to(np.asarray(fix_sigma, np.float64) ** 2, (2,)).copy()  # a fix's variance per axis
        self.q = float(process) ** 2
        self.p = np.zeros((num_envs, 2))
        self.var = np.zeros((num_envs, 2))
        self.speed = np.zeros(num_envs)
        self.yaw = np.zeros(num_envs)
        self.fresh = np.ones(num_envs, bool)  # no fix yet: the next one is taken as it is

    def reset(self, mask) -> None:
        self.fresh |= np.asarray(mask, bool)

    def update(self, fix: np.ndarray, speed: np.ndarray, yaw: np.ndarray, dt, envs: np.ndarray | None = None
               ) -> np.ndarray:
        """fix (E, 2) [m], speed (E,) [m/s, signed], yaw (E,) [rad], dt [s] since the last update -> the estimates
        (E, 2); with `envs` (a mask) only those envs are updated."""
        if envs is not None:
            envs = np.asarray(envs, bool)
            keep = (self.p.copy(), self.var.copy(), self.speed.copy(), self.yaw.copy(), self.fresh.copy())
            est = self.update(fix, speed, yaw, dt)
            for name, old in zip(("p", "var", "speed", "yaw", "fresh"), keep):
                getattr(self, name)[~envs] = old[~envs]
            return np.where(envs[:, None], est, keep[0])
        fix = np.asarray(fix, np.float64).reshape(-1, 2)
        speed, yaw = np.asarray(speed, np.float64).reshape(-1), np.asarray(yaw, np.float64).reshape(-1)
        v = 0.5 * (speed + self.speed)
        h = self.yaw + 0.5 * wrap(yaw - self.yaw)
        pred = self.p + (np.asarray(dt, np.float64).reshape(-1, 1) * v[:, None]) * np.stack([np.cos(h), np.sin(h)], -1)
        var = self.var + self.q
        gain = np.divide(var, var + self.r, out=np.ones_like(var), where=(var + self.r) > 0)
        est = pred + gain * (fix - pred)
        new = self.fresh
        est[new], var[new] = fix[new], self.r
        self.p, self.var = est, (1.0 - gain) * var
        self.var[new] = self.r
        self.speed, self.yaw, self.fresh = speed, yaw, np.zeros_like(self.fresh)
        return est.copy()


__all__ = ["EARTH_RADIUS_EQUA", "GNSS_NOISE_DEG", "GnssFilter", "GnssSensor", "geo_reference", "gps_to_location",
           "location_to_gps", "noise_metres"]
