import numpy as np
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
