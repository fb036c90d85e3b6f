"""Driving policies behind one interface: ``act(scene) -> (Controls, Plan)``. Names are stable CLI values."""

from __future__ import annotations

from .expert import ExpertConfig, ExpertPolicy
from .rule import Plan, RulePolicy

POLICIES = {"rule": RulePolicy, "expert": ExpertPolicy}
PLANNED = {"il": "the PerlAD issue", "perlad": "the PerlAD issue",
           "perlad_logreplay": "the PerlAD issue"}


class UnknownPolicy(ValueError):
    pass


def make_policy(name: str, num_envs: int = 1, **kw):
    """Create a policy by its stable name."""
    if name in POLICIES:
        return POLICIES[name](num_envs, **kw)
    if name in PLANNED:
        raise UnknownPolicy(f"policy {name!r} is not available yet (it arrives with {PLANNED[name]}); "
                            f"available: {', '.join(POLICIES)}")
    raise UnknownPolicy(f"unknown policy {name!r}; available: {', '.join(POLICIES)}")


__all__ = ["ExpertConfig", "ExpertPolicy", "POLICIES", "Plan", "RulePolicy", "UnknownPolicy", "make_policy"]
