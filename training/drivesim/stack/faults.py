"""Fault injection for tests and demos: ``KIND@T`` (sim time T in seconds), per node.

- ``stall@T``: from T on the node stops publishing its outputs (it keeps running).
- ``nan@T``: from T on the node publishes NaN in its numeric outputs.
- ``exit@T``: the node exits at T (exit code 3), as a crash would.
- ``raise@T`` (planner only): from T on its policy raises an exception (a bug in a policy): the node logs it,
  stays up and leaves the tick to the takeover monitor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

INJECTED_EXIT = 3  # the exit code of a node that exit@T ended (a launcher tells it from a real failure)


class FaultKind(enum.Enum):
    STALL = "stall"
    NAN = "nan"
    EXIT = "exit"
    RAISE = "raise"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    at: float  # [s] sim time

    @classmethod
    def parse(cls, text: str | None) -> Fault | None:
        """'' or None -> no fault; 'stall@12.0' -> Fault(STALL, 12.0). Raises ValueError naming the problem."""
        if not text:
            return None
        kind, sep, t = text.partition("@")
        try:
            return cls(FaultKind(kind.strip()), float(t)) if sep else cls(FaultKind(kind.strip()), 0.0)
        except ValueError as e:
            raise ValueError(f"fault {text!r}: expected KIND@T with KIND in {[k.value for k in FaultKind]} and T "
                             f"a sim time in seconds, e.g. stall@12.0") from e

    def active(self, t: float) -> bool:
        return t >= self.at - 1e-9


# What each node can be made to do, all through one mechanism (drive_stack.common.StackNode): it watches /clock
# and exits at T (EXIT), and wraps every publisher, which from T on publishes nothing (STALL) or NaN in every
# float (NAN); RAISE makes the planner's policy raise. The simulator (it stands for CARLA) and the recorder (no
# outputs on the wire) take EXIT only.
_OUTPUTS = frozenset({FaultKind.STALL, FaultKind.NAN, FaultKind.EXIT})
NODE_FAULTS: dict[str, frozenset[FaultKind]] = {
    "pseudo_sim": frozenset({FaultKind.EXIT}),
    "perception_input": _OUTPUTS,
    "planner": _OUTPUTS | {FaultKind.RAISE},
    "vla_reasoning": _OUTPUTS,
    "takeover_monitor": _OUTPUTS,
    "recorder": frozenset({FaultKind.EXIT}),
}


def parse_stack_fault(text: str) -> tuple[str, str]:
    """'planner:stall@12.0' -> ('planner', 'stall@12.0'), validated: the node exists and can take that kind of
    fault (NODE_FAULTS); anything else is refused, so a fault never silently does nothing."""
    node, sep, spec = text.partition(":")
    if not sep or not node:
        raise ValueError(f"--fault {text!r}: expected NODE:KIND@T, e.g. planner:stall@12.0")
    f = Fault.parse(spec)
    if node not in NODE_FAULTS:
        raise ValueError(f"--fault {text!r}: unknown node {node!r}; nodes: {sorted(NODE_FAULTS)}")
    if f.kind not in NODE_FAULTS[node]:
        raise ValueError(f"--fault {text!r}: {node} cannot take {f.kind.value}@T; it takes "
                         f"{sorted(k.value for k in NODE_FAULTS[node])}")
    return node, spec
