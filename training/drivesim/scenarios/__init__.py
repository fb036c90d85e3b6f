"""Bench2Drive scenario types in vector space: builders that turn a route's scenario (trigger point + typed
parameters) into actors of the pseudo-simulator (static obstacles, scripted actors; sim/script.py).

`SCENARIO_BUILDERS` maps a type name to its builder; `place_scenario` writes the actors into an env of a state.
Types without a builder yet run with background traffic only, and `SIMULATED_TYPES` says which are simulated.
"""

from .builders import (
    SCENARIO_BUILDERS,
    SIMULATED_TYPES,
    WRONG_WAY_ALLOWED,
    ActorSpec,
    build_actors,
    lanes_test_window,
    place_scenario,
    wrong_way_window,
)

__all__ = ["SCENARIO_BUILDERS", "SIMULATED_TYPES", "WRONG_WAY_ALLOWED", "ActorSpec", "build_actors", "place_scenario",
           "lanes_test_window", "wrong_way_window"]
