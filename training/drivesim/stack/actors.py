"""CARLA actor ids at the ROS boundary (../shared/carla_lb2/CONTRACT.md section 6): the bridge's objects and
traffic lights carry CARLA actor ids, large integers that say nothing about array slots.

- `ActorIds` (the pseudo-simulator's side): every agent slot's occupant gets an actor id when it appears (a slot
  whose agent is replaced gets a new one), counted up from FIRST_ACTOR_ID as CARLA counts spawned actors; traffic
  lights get ids of their own (`light_actor_ids`), in no particular order.
- `SlotMap` (the stack's side): actor ids -> the agent slots of the stack's one-env state, stable while an actor
  stays (its history is tracked by slot), the nearest ones first when there are more actors than slots (CARLA's
  objects list holds every vehicle and walker of the world), a freed slot reused last (least recently freed
  first), so a new actor does not inherit a departed one's history.
"""

from __future__ import annotations

import numpy as np

FIRST_ACTOR_ID = 181  # the first id a spawned vehicle or walker gets (a CARLA town's own actors come before)
FIRST_LIGHT_ID = 30  # traffic-light actors: spawned with the town, ids among the first


class ActorIds:
    """Slot -> actor id for one env, a new id whenever a slot's occupant appears."""

    def __init__(self, slots: int, first: int = FIRST_ACTOR_ID):
        self.ids = np.zeros(slots, np.int64)
        self.valid = np.zeros(slots, bool)
        self.next = first

    def update(self, valid: np.ndarray) -> np.ndarray:
        """valid (slots,) this tick -> actor id per slot (0 where invalid)."""
        valid = np.asarray(valid, bool)
        new = np.flatnonzero(valid & ~self.valid)
        self.ids[new] = self.next + np.arange(len(new))
        self.next += len(new)
        self.ids[~valid] = 0
        self.valid = valid.copy()
        return self.ids.copy()


def light_actor_ids(n: int, seed: int = 0) -> np.ndarray:
    """Actor ids of a map's n traffic lights: distinct, from FIRST_LIGHT_ID, in a shuffled order (the stack must
    match them by position through /carla/traffic_lights/info, never by order)."""
    return FIRST_LIGHT_ID + np.random.default_rng(seed).permutation(n).astype(np.int64)


POLE_OFFSET = 2.0  # [m] a light pole's distance beyond the outer end of the stop lines it governs


def light_actor_poses(g) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where CARLA puts a town's traffic-light actors, for /carla/traffic_lights/info (CARLA-handed, metres and
    radians): the actor (the pole) stands at the roadside, POLE_OFFSET beyond the outer end of the stop lines it
    governs, turned across the road; its trigger volume covers those stop lines, its centre given in the actor's
    frame (CARLA's `trigger_volume.location` is relative to the actor's transform, rotation included).
    Returns pole (T, 2), yaw (T,), trigger centre in the actor's frame (T, 2), trigger size (T, 2) = 2 x extent."""
    T = len(g.light_id)
    pole, yaw = np.asarray(g.light_pos, np.float64).copy(), np.zeros(T)
    centre, size = np.zeros((T, 2)), np.tile([2.0, 3.5], (T, 1))
    for k in range(T):
        sl = np.flatnonzero(g.stopline_light == k)
        if not len(sl):
            continue
        pts = np.concatenate([g.stopline_p0[sl], g.stopline_p1[sl]])
        u = g.stopline_p1[sl[0]] - g.stopline_p0[sl[0]]
        u = u / max(float(np.hypot(*u)), 1e-9)  # across the approach
        mid = np.asarray(g.light_pos[k], np.float64)
        reach = float(np.max((pts - mid) @ u))  # the stop lines' outer end, from their mean
        pole[k] = mid + u * (reach + POLE_OFFSET)
        yaw[k] = float(np.arctan2(u[1], u[0]))
        d = mid - pole[k]
        c, s = np.cos(yaw[k]), np.sin(yaw[k])
        centre[k] = (c * d[0] + s * d[1], -s * d[0] + c * d[1])
        size[k] = (2.0, max(2.0 * float(np.max(np.abs((pts - mid) @ u))), 2.0))
    return pole, yaw, centre, size


class SlotMap:
    """Actor id -> agent slot (1..slots-1; slot 0 is the ego) of the stack's state."""

    def __init__(self, slots: int):
        self.capacity = slots - 1
        self.slot_of: dict[int, int] = {}
        self.freed_at = {s: -1 for s in range(1, slots)}  # free slots -> the call they were freed at
        self.calls = 0

    def assign(self, ids: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """This tick's actor ids (N,) and their distances to the ego (N,) -> slot per actor (N,), -1 for the ones
        left out (farther than the `capacity` nearest)."""
        self.calls += 1
        ids = np.asarray(ids, np.int64)
        order = np.argsort(np.asarray(dist, np.float64), kind="stable")
        keep = {int(i) for i in ids[order[: self.capacity]]}
        for i in [i for i in self.slot_of if i not in keep]:
            self.freed_at[self.slot_of.pop(i)] = self.calls
        out = np.full(len(ids), -1, np.int64)
        for n in order[: self.capacity]:
            i = int(ids[n])
            s = self.slot_of.get(i)
            if s is None:
                s = min(self.freed_at, key=lambda k: (self.freed_at[k], k))
                del self.freed_at[s]
                self.slot_of[i] = s
            out[n] = s
        return out


__all__ = ["FIRST_ACTOR_ID", "FIRST_LIGHT_ID", "ActorIds", "SlotMap", "light_actor_ids"]
