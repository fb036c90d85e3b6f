# issue 18, session 17: the rollout of every speed from the stopped states of the blocked Proc3 Accident and
# ParkedObstacleTwoWays routes (diag_ds: collect --routes results/perlad/suite_val_p3.xml --route-ids Accident_0,ParkedObstacleTwoWays_0
# --driver perlad --driver-model <perlad from il_dagger, --off-route 0>). `python diag.py S`: the same with --replan S seconds.
import sys

import numpy as np
import torch
from drivesim.learn.configs import RLConfig
from drivesim.learn.data import DataConfig, build_samples
from drivesim.learn.rl import Rollouts
from drivesim.learn.train import batch
from drivesim.models.checkpoint import load_model
from drivesim.models.features import SPEED_SCALE
from drivesim.models.nets import INPUT_NAMES

pol, _ = load_model('/work/e19/rl_offroute0/ckpt.pt')
ref, _ = load_model('/work/e19/ildag/ckpt.pt')
wm, _ = load_model('/work/e18/x1/wm/ckpt.pt')
data = build_samples(DataConfig('/work/e19/diag_ds', None, 1, None), pol.fcfg, lambda *a: None)
v = data['ego'][:, 0] * SPEED_SCALE
ep = data['episode'] if 'episode' in data else None
print({k: data[k].shape for k in ('ego','speed','path')})
stopped = np.flatnonzero((v < 0.2) & (data['speed'] > 2.0))
print('stopped with expert label > 2 m/s:', len(stopped), 'of', len(v))
idx = stopped[::max(1, len(stopped)//12)][:12]
keys = (*INPUT_NAMES, "path", "roll_ego", "roll_ego_mask", "roll_agents", "roll_agents_mask", "agent_kind", "roll_unseen", "roll_unseen_mask", "unseen_kind")
b = batch(data, idx, keys)
cfg = RLConfig(off_route=0.0, replan=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
sim = Rollouts(cfg, pol.fcfg, pol.ncfg, wm, ref if cfg.replan else None)
speeds = pol.ncfg.speeds()
with torch.no_grad():
    tok, mask = pol.scene(*[b[k] for k in INPUT_NAMES])
    logits, paths = pol.lateral(tok[:, 0])
    B = len(idx)
    path = paths[torch.arange(B), logits.argmax(1)]
    sl = pol.speed_logits(tok, mask, path[:, None])[:, 0]
    rtok, rmask = ref.scene(*[b[k] for k in INPUT_NAMES])
    rl_, rp = ref.lateral(rtok[:, 0])
    rpath = rp[torch.arange(B), rl_.argmax(1)]
    rsl = ref.speed_logits(rtok, rmask, rpath[:, None])[:, 0]
G = len(speeds)
act = np.tile(np.arange(G), (B, 1))
r = sim({k: v for k, v in b.items() if k != 'path'}, path.numpy(), act, np.zeros(B, bool))
np.set_printoptions(precision=1, suppress=True, linewidth=200)
print('speeds', speeds)
for i in range(B):
    print(f'state {idx[i]} expert label {data["speed"][idx[i]]:.1f} pol argmax {speeds[sl[i].argmax()]:.0f} ref argmax {speeds[rsl[i].argmax()]:.0f} path end {path[i,-1].numpy()} expert path end {b["path"][i,-1].numpy()}')
    for k in ('total','collision','progress','imitation','ttc','red_light'):
        print('  ', k.ljust(10), r[k][i])
