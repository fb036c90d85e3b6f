"""Driving policies behind one interface: ``act(scene) -> (Controls, Plan)``. Names are stable CLI values."""

from __future__ import annotations

from .expert import ExpertConfig, ExpertPolicy
from .learned import LEARNED, LearnedPolicy, ModelError, find_model, model_id, resolve_model, verify_planner
from .rule import Plan, RulePolicy
from .vla import VLAPolicy, resolve_vla, verify_vla

POLICIES = {"rule": RulePolicy, "expert": ExpertPolicy, **{n: LearnedPolicy for n in LEARNED}, "takevla": VLAPolicy}
MODEL_POLICIES = (*LEARNED, "takevla")  # the policies that load an ONNX model (--model)
PLANNED: dict[str, str] = {}


class UnknownPolicy(ValueError):
    pass


def make_policy(name: str, num_envs: int = 1, g=None, **kw):
    """Create a policy by its stable name. `g` (the map) goes to the policies that need it (learned ones)."""
    if name in POLICIES:
        cls = POLICIES[name]
        if getattr(cls, "needs_map", False):
            return cls(num_envs, g=g, name=name, **kw)
        return cls(num_envs, **kw)
    if name in PLANNED:
        raise UnknownPolicy(f"policy {name!r} is not available yet (it arrives with {PLANNED[name]}); "
                            f"available: {', '.join(POLICIES)}")
    raise UnknownPolicy(f"unknown policy {name!r}; available: {', '.join(POLICIES)}")


def warmup(policy) -> None:
    """Run a non-privileged policy once on a synthetic scene (a straight empty road, one car ahead), then reset it:
    its compiled kernels are loaded (or compiled, on a fresh checkout) and its models allocated before the first
    real tick. A deployed planner does this before it reports ready, or its first tick misses the deadline."""
    import numpy as np

    from ..maps.lanegraph import Command
    from ..sim.perception import ROUTE_POINTS, PerceivedScene

    E, P = policy.E, ROUTE_POINTS
    route = np.zeros((E, P, 2))
    route[..., 0] = np.arange(P)
    agents = np.zeros((E, 1, 7))
    agents[:, 0] = [20.0, 0.0, 0.0, 5.0, 4.5, 1.9, 0.0]
    scene = PerceivedScene(
        ego_speed=np.full(E, 5.0), route=route, route_valid=np.ones((E, P), bool), command=np.full((E, P), Command.LANEFOLLOW, np.int8),
        speed_limit=np.full(E, 10.0), agents=agents, agents_valid=np.ones((E, 1), bool), light_dist=np.full(E, np.inf),
        light_state=np.full(E, -1), stop_dist=np.full(E, np.inf), stop_id=np.full(E, -1),
        ego_pose=np.zeros((E, 3)), ego_accel=np.zeros(E), lights=np.zeros((E, 0), np.int8), agent_ids=np.array([1]),
        t=np.zeros(E))
    policy.act(scene)
    policy.reset()


def check_policy(name: str, model: str | None = None) -> dict | None:
    """Raise UnknownPolicy / FileNotFoundError / ModelError now rather than in every route's worker; returns the
    learned policy's model_id (path + sha256), None for the rule-based ones."""
    if name not in POLICIES:
        raise UnknownPolicy(f"unknown policy {name!r}; available: {', '.join(POLICIES)}")
    if model and name not in MODEL_POLICIES:
        raise UnknownPolicy(f"--model is for the learned policies ({', '.join(MODEL_POLICIES)}), not {name!r}")
    if name == "takevla":
        return verify_vla(resolve_vla(model, name))
    if name in LEARNED:
        return verify_planner(resolve_model(name, model))
    return None


__all__ = ["ExpertConfig", "ExpertPolicy", "LEARNED", "LearnedPolicy", "MODEL_POLICIES", "ModelError", "POLICIES",
           "Plan", "RulePolicy", "UnknownPolicy", "VLAPolicy", "check_policy", "find_model", "make_policy", "model_id",
           "resolve_model", "resolve_vla", "verify_planner", "verify_vla", "warmup"]
