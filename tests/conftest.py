import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRIVE_STACK_SHARED", ROOT.parent / "shared"))
MAPS = SHARED / "carla_maps"
B2D = SHARED / "bench2drive" / "bench2drive220.xml"

os.environ.setdefault("DRIVE_STACK_CACHE", str(ROOT / ".cache"))


def need_shared():
    if not B2D.exists() or not MAPS.exists():
        pytest.skip("../shared (Bench2Drive routes, CARLA maps) not present")


@pytest.fixture(scope="session")
def proc_town():
    from drivesim.maps import TownLoader

    return TownLoader().load("Proc0")


@pytest.fixture(scope="session")
def shadow_data(tmp_path_factory, proc_town):
    """A shadow-mode collection: the committed perlad drives 2 random Proc0 routes, the expert takes over when
    it steers more than 0.05 away (root/shadow, root/routes.xml)."""
    from drivesim.dataset import CollectConfig, collect
    from drivesim.routes.generate import random_routes
    from drivesim.routes.xml import write_routes

    root = tmp_path_factory.mktemp("shadow")
    write_routes(random_routes(proc_town, 2, seed=8, min_length=150.0), root / "routes.xml")
    idx = collect(CollectConfig(routes=str(root / "routes.xml"), out=str(root / "shadow"), workers=1, b2d=False,
                                driver="perlad", takeover=True, takeover_steer=0.05), log=lambda *_: None)
    assert sum((e.get("takeovers") or {}).get("count", 0) for e in idx["episodes"]) > 0
    return root


@pytest.fixture(scope="session")
def learn_dataset(tmp_path_factory, proc_town):
    """A small collected dataset for the training tests: the expert on 3 random Proc0 routes of >= 150 m
    (root/ds; tests write their runs beside it, each in its own folder)."""
    from drivesim.dataset import CollectConfig, collect
    from drivesim.routes.generate import random_routes
    from drivesim.routes.xml import write_routes

    root = tmp_path_factory.mktemp("learn")
    routes = root / "routes.xml"
    write_routes(random_routes(proc_town, 3, seed=5, min_length=150.0), routes)
    idx = collect(CollectConfig(routes=str(routes), out=str(root / "ds"), workers=1, b2d=False), log=lambda *_: None)
    assert len(idx["episodes"]) == 3
    return root


@pytest.fixture(scope="session")
def town01():
    need_shared()
    from drivesim.maps import TownLoader

    return TownLoader(MAPS).load("Town01")


def drive(g, dense, speed=8.0, objects=(), lights=None, steps=None, policy=None, max_agents=8):
    """Drive the ego along `dense` with the deployed controller at a constant target speed (or a policy),
    with hand-placed objects [(kind, behavior, x, y, yaw, length, width, speed)], through a RouteMonitor.
    `lights` overrides every traffic light's state. Returns the monitor."""
    from drivesim.metrics.monitor import RouteMonitor
    from drivesim.scenarios.scene import route_scene
    from drivesim.sim.control import PIDController
    from drivesim.sim.perception import ScenePerceiver
    from drivesim.sim.world import Controls, Simulator

    state = route_scene(g, [dense], max_agents=max_agents, seed=0, background=False)
    for k, (kind, beh, x, y, yaw, ln, wd, v) in enumerate(objects, start=1):
        state.kind[0, k], state.behavior[0, k], state.valid[0, k] = kind, beh, True
        state.x[0, k], state.y[0, k], state.yaw[0, k] = x, y, yaw
        state.length[0, k], state.width[0, k], state.desired_speed[0, k], state.speed[0, k] = ln, wd, v, v
    sim = Simulator(g)
    mon = RouteMonitor(g, [dense])
    per = ScenePerceiver(g, [dense])
    ctl = PIDController(1)
    steps = steps or int(3 * dense.length / max(speed, 1.0) / 0.05) + 200
    for _ in range(steps):
        lt = sim.lights(state) if lights is None else np.full((1, g.num_lights), lights, np.int8)
        scene = per(state, lt)
        if policy is None:
            th, st, br = ctl(scene.route, np.array([speed]), scene.ego_speed)
            controls = Controls(th, st, br)
        else:
            controls, _ = policy.act(scene)
        new = sim.step(state, controls)
        lt2 = sim.lights(new) if lights is None else np.full((1, g.num_lights), lights, np.int8)
        done = mon.update(state, new, lt2)
        state = new
        if done[0]:
            break
    mon.final_state = state
    return mon
