"""Control loss (Bench2Drive's ControlLoss): at a few points along the route the ego's steering and throttle
are perturbed for a short time, whatever the policy commands. Vectorised over (E, P) events.

Event p of env e fires when the ego's centre comes within `radius` of (x, y); for `duration` seconds the
applied steer is the commanded one plus `steer`, and the throttle is scaled by `throttle` (then clipped).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass
class Perturbations:
    where: np.ndarray  # (E, P, 3) x, y, radius [m]; radius < 0: no event
    duration: np.ndarray  # (E, P) [s]
    steer: np.ndarray  # (E, P) added to the commanded steer (normalised, -1..1)
    throttle: np.ndarray  # (E, P) factor on the commanded throttle
    t_fire: np.ndarray  # (E, P) [s], inf = not yet

    @classmethod
    def empty(cls, E: int, P: int = 3) -> Perturbations:
        return cls(where=np.full((E, P, 3), -1.0, np.float32), duration=np.zeros((E, P), np.float32),
                   steer=np.zeros((E, P), np.float32), throttle=np.ones((E, P), np.float32),
                   t_fire=np.full((E, P), np.inf, np.float32))

    def copy(self) -> Perturbations:
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})


def perturb_controls(p: Perturbations, ex: np.ndarray, ey: np.ndarray, t: np.ndarray, throttle: np.ndarray,
                     steer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(throttle, steer) applied to the ego (E,), and the updated fire times (E, P)."""
    d = np.hypot(p.where[..., 0] - ex[:, None], p.where[..., 1] - ey[:, None])
    fire = ~np.isfinite(p.t_fire) & (p.where[..., 2] >= 0) & (d <= p.where[..., 2])
    t_fire = np.where(fire, t[:, None], p.t_fire)
    on = np.isfinite(t_fire) & (t[:, None] - t_fire < p.duration)  # (E, P)
    ds = np.where(on, p.steer, 0.0).sum(-1)
    k = np.where(on, p.throttle, 1.0).prod(-1)
    return np.clip(throttle * k, 0.0, 1.0), np.clip(steer + ds, -1.0, 1.0), t_fire.astype(np.float32)
