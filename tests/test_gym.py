import numpy as np
import pytest
from drivesim.gym_env import DriveVectorEnv
from drivesim.sim.control import PIDController


def test_vector_env_spaces_and_progress(proc_town):
    env = DriveVectorEnv(proc_town, num_envs=3, max_agents=16, seed=0)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    ctl = PIDController(3)
    total = np.zeros(3)
    for _ in range(200):
        th, st, br = ctl(obs["route"].astype(np.float64), np.full(3, 6.0), obs["ego"][:, 0].astype(np.float64))
        obs, rew, term, trunc, info = env.step(np.stack([th, st, br], 1).astype(np.float32))
        total += rew
    assert np.all(total > 10)  # following the route earns route completion
    assert env.action_space.shape == (3, 3)


def test_path_speed_actions_drive_through_the_deployed_controller(proc_town):
    """PATH_SPEED mode: handing back the observed route ahead with a target speed follows the route at that
    speed; a zero target speed holds the car."""
    from drivesim.gym_env import PATH_POINTS, ActionMode

    env = DriveVectorEnv(proc_town, num_envs=2, max_agents=8, seed=0, action_mode=ActionMode.PATH_SPEED)
    obs, _ = env.reset(seed=3)
    assert env.single_action_space.shape == (2 * PATH_POINTS + 1,)
    env.state.valid[:, 1:] = False  # empty roads: speed is the policy's alone
    total = np.zeros(2)
    for _ in range(160):
        path = obs["route"][:, :PATH_POINTS].reshape(2, -1)
        act = np.concatenate([path, np.array([[6.0], [0.0]])], 1).astype(np.float32)
        obs, rew, term, trunc, info = env.step(act)
        total += rew
    assert abs(obs["ego"][0, 0] - 6.0) < 0.5  # env 0 cruises at its target
    assert obs["ego"][1, 0] < 0.1  # env 1 was told to stand still
    assert total[0] > 5 and abs(total[1]) < 1e-6
    with pytest.raises(ValueError, match="path_speed"):
        env.step(np.zeros((2, 3), np.float32))
