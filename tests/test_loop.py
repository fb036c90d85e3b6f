"""The one closed loop: what each policy may see, and the masked autoreset."""

import numpy as np
import pytest
from drivesim.loop import ClosedLoop, drive, is_privileged
from drivesim.policies import make_policy
from drivesim.routes.generate import random_routes
from drivesim.routes.planner import plan_route
from drivesim.sim.perception import PERCEPTION_RANGE
from drivesim.sim.world import Controls


def test_observe_gives_the_truth_only_to_a_policy_that_declares_itself_privileged(proc_town):
    spec = random_routes(proc_town, 1, seed=2, min_length=120.0)[0]
    loop = ClosedLoop.for_route(proc_town, spec, seed=0)
    rule, expert = make_policy("rule", 1), make_policy("expert", 1)
    scene, truth = loop.observe(rule)
    assert truth is None
    seen = scene.agents[0][scene.agents_valid[0]]
    assert len(seen) and np.all(np.hypot(seen[:, 0], seen[:, 1]) <= PERCEPTION_RANGE + 1e-6)
    full, truth = loop.observe(expert)
    assert truth is not None and truth.state is loop.state
    assert full.agents_valid[0].sum() > scene.agents_valid[0].sum()  # everything, beyond range and occlusion
    assert loop.observe(rule)[0] is scene  # one view per step, computed once

    class NoFlag:
        def act(self, scene, truth=None): ...

    with pytest.raises(TypeError, match="NoFlag: a policy must declare `privileged"):
        loop.observe(NoFlag())
    assert is_privileged(expert) and not is_privileged(rule)


def test_masked_autoreset_restarts_only_the_finished_envs(proc_town):
    specs = random_routes(proc_town, 3, seed=4, min_length=120.0)
    routes = [plan_route(proc_town, s) for s in specs]
    loop = ClosedLoop(proc_town, routes, seed=1, log_trajectory=False)
    out = drive(loop, make_policy("rule", 3), max_steps=40)
    assert out["steps"] == 40
    before = loop.state.copy()
    idx = loop.monitor.idx.copy()
    mask = np.array([False, True, False])
    fresh = [plan_route(proc_town, s) for s in random_routes(proc_town, 3, seed=9, min_length=120.0)]
    loop.reset_envs(mask, fresh, seed=5)
    assert loop.routes[1] is fresh[1] and loop.routes[0] is routes[0] and loop.routes[2] is routes[2]
    for f in ("x", "y", "speed", "valid", "t"):
        np.testing.assert_array_equal(getattr(loop.state, f)[~mask], getattr(before, f)[~mask])
    assert loop.state.t[1] == 0.0 and loop.state.t[0] == pytest.approx(2.0)
    assert loop.monitor.idx[1] == 0 and np.all(loop.monitor.idx[~mask] == idx[~mask])
    loop.step(Controls.zeros(3))  # and it goes on
    assert loop.state.t[1] == pytest.approx(0.05)
