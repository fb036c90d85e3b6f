"""Shadow-mode collection (TakeAD's takeovers, offline, no ROS): the learned planner drives, the expert watches
through the same takeover gate as the stack's takeover monitor, takes over when the plan is about to fail, and
every frame records who drove and what the driver wanted; the labels stay the expert's."""

import numpy as np
import pytest
from conftest import B2D, MAPS, need_shared
from drivesim.dataset.collect import CONTROLLER_CODES, CollectConfig, collect, read_episode


def test_the_expert_takes_over_from_perlad_before_the_pedestrian_and_the_frames_say_so(tmp_path):
    need_shared()
    idx = collect(CollectConfig(routes=str(B2D), maps_dir=str(MAPS), out=str(tmp_path), route_ids=["24211"], b2d=False,
                                driver="perlad", takeover=True, branches=0), log=lambda *_: None)
    e = idx["episodes"][0]
    # measured: perlad alone hits the walker (DS 50); one PREDICTED_COLLISION takeover at 6.65 s, the expert
    # drives 2.0 s (20 frames at 10 Hz), the route is Perfect
    assert e["driving_score"] == pytest.approx(100.0)
    tk = e["takeovers"]
    assert tk["count"] == 1 and tk["causes"] == {"PREDICTED_COLLISION": 1}
    assert tk["events"][0]["t"] == pytest.approx(6.65, abs=0.051) and tk["seconds"]["expert"] == pytest.approx(2.0)
    arr = read_episode(tmp_path / "episodes" / e["episode"])
    c = arr["controller"]
    expert = np.flatnonzero(c == CONTROLLER_CODES["expert"])
    assert len(expert) == 20 and np.all(np.diff(expert) == 1)  # one contiguous 2 s stretch
    assert arr["t"][expert[0]] == pytest.approx(6.7, abs=0.051)
    assert np.all(c[: expert[0]] == CONTROLLER_CODES["planner"]) and np.all(c[expert[-1] + 1:] == 0)
    # at the disengagement the driver barely brakes; the expert's label is a full stop
    k = expert[0]
    assert arr["policy_ctl"][k, 2] < 0.1 and arr["ego"][k, 7] == pytest.approx(1.0)
    # the driver's own controls are recorded every frame (the DPO 'rejected' side), the expert's as the labels
    assert arr["policy_ctl"].shape == (len(c), 3)
    with pytest.raises(ValueError, match="needs a --driver"):
        collect(CollectConfig(routes=str(B2D), out=str(tmp_path / "x"), takeover=True), log=lambda *_: None)
