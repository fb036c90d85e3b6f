"""Driving policies behind one interface: ``act(scene) -> (Controls, Plan)``. Names are stable CLI values."""

from __future__ import annotations

from .expert import ExpertConfig, ExpertPolicy
from .learned import LEARNED, LearnedPolicy, find_model
from .rule import Plan, RulePolicy

POLICIES = {"rule": RulePolicy, "expert": ExpertPolicy, **{n: LearnedPolicy for n in LEARNED}}
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


def check_policy(name: str) -> None:
    """Raise UnknownPolicy / FileNotFoundError now rather than in every route's worker."""
    if name not in POLICIES:
        raise UnknownPolicy(f"unknown policy {name!r}; available: {', '.join(POLICIES)}")
    if name in LEARNED:
        find_model(name)


__all__ = ["ExpertConfig", "ExpertPolicy", "LEARNED", "LearnedPolicy", "POLICIES", "Plan", "RulePolicy", "UnknownPolicy",
           "check_policy", "find_model", "make_policy"]
