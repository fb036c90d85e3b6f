"""TakeAD: the DPO loss over the planner's heads (hand-built batches with known answers), the disengagement
states, and one tiny round end to end (shadow collection -> DAgger -> DPO -> ONNX -> report)."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from drivesim.learn.takead import TakeADConfig, action_logp, disengagement_mask, dpo_loss
from drivesim.models.export import random_inputs
from drivesim.models.nets import INPUT_NAMES, NetConfig, Planner


def _batch(model, n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = random_inputs(model, n)
    b = {k: torch.as_tensor(np.asarray(x[k], np.float32)) for k in INPUT_NAMES}
    # the expert's actions: anchor 1's path exactly, speed 6 m/s (bin 6 of 0..12 in 1 m/s steps)
    b["path"] = model.anchors[1][None].repeat(n, 1, 1).clone()
    b["speed"] = torch.full((n,), 6.0)
    del rng
    return b


def test_action_logp_factorises_over_the_two_heads():
    logits = torch.log(torch.tensor([[0.25, 0.75]]))
    speed = torch.log(torch.tensor([[[0.5, 0.5], [0.1, 0.9]]]))
    lp = action_logp(logits, speed, torch.tensor([1]), torch.tensor([1]))
    assert float(lp) == pytest.approx(math.log(0.75 * 0.9), abs=1e-6)


def test_dpo_starts_at_log2_and_learns_to_prefer_the_experts_action():
    torch.manual_seed(0)
    model = Planner(ncfg=NetConfig(d_model=32, layers=1, ff=64))
    ref = copy.deepcopy(model).eval()
    b = _batch(model)
    out = dpo_loss(model, ref, b, beta=0.1)
    # policy == reference: every margin is 0, so each pair's loss is -log sigma(0) = log 2
    assert float(out["dpo"]) == pytest.approx(math.log(2), abs=1e-5) and float(out["reward_margin"]) == 0.0
    assert out["pairs"] > 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(30):
        out = dpo_loss(model, ref, b, beta=0.1)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = dpo_loss(model, ref, b, beta=0.1)
    assert float(after["dpo"]) < 0.6 * math.log(2)  # fell well below log 2
    assert float(after["preference_acc"]) == 1.0 and float(after["reward_margin"]) > 0.3
    assert float(after["chosen_logp"]) > float(after["rejected_logp"])
    assert sum(not torch.equal(v, before[k]) for k, v in model.state_dict().items()) > 10  # parameters moved
    # a state where the policy's top-1 already is the expert's action is no pair
    with torch.no_grad():
        logits, paths, speed_logits = ref(*(b[k] for k in INPUT_NAMES))
    k = logits.argmax(1)
    b2 = dict(b, path=ref.anchors[k].clone(), speed=speed_logits[torch.arange(len(k)), k].argmax(-1).float())
    assert float(dpo_loss(model, ref, b2)["pairs"]) == 0.0


def test_disengagement_states_are_the_takeover_and_the_seconds_before_it():
    ctl = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0], np.int8)
    ep = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    m = disengagement_mask(ctl, ep, frame_dt=0.1, pre=0.2)
    # episode 0: frames 2-3 (0.2 s before), 4-5 (the takeover); episode 1: frame 8 before 9 (not episode 0's 7)
    assert m.tolist() == [False, False, True, True, True, True, False, False, True, True, False]


def test_one_round_collects_takeovers_trains_exports_and_reports(tmp_path, proc_town, monkeypatch):
    from drivesim.dataset import CollectConfig, collect
    from drivesim.learn.configs import ILConfig
    from drivesim.learn.takead import run_takead
    from drivesim.learn.train import ILStage
    from drivesim.models.checkpoint import load_model
    from drivesim.routes.generate import random_routes
    from drivesim.routes.xml import write_routes

    routes = tmp_path / "routes.xml"
    specs = random_routes(proc_town, 2, seed=5, min_length=150.0)
    write_routes(specs, routes)
    suites = [tmp_path / "suite_a.xml", tmp_path / "suite_b.xml"]  # the training suites: one route each
    for spec, suite in zip(specs, suites, strict=True):
        write_routes([spec], suite)
    collect(CollectConfig(routes=str(routes), out=str(tmp_path / "ds"), workers=1, b2d=False, branches=0),
            log=lambda *_: None)
    ILStage(ILConfig(data=str(tmp_path / "ds"), out=str(tmp_path / "il"), workers=1, d_model=32, layers=1,
                     epochs=2, batch_size=128, lr=3e-3), log=lambda *_: None).run()
    init, _ = load_model(tmp_path / "il" / "ckpt.pt")
    cfg = TakeADConfig(data=str(tmp_path / "ds"), init=str(tmp_path / "il" / "ckpt.pt"),
                       routes=",".join(str(x) for x in suites),
                       out=str(tmp_path / "takead"), rounds=1, workers=1, dpo_epochs=2, batch_size=128,
                       eval_routes=str(routes), dagger_scope="latest", kl_initial=0.1, keep_best=True,
                       eval_seeds=2)
    rep = run_takead(cfg, log=lambda *_: None)
    row0, row = sorted(rep["rounds"], key=lambda r: r["round"])
    # keep_best: the final policy is the better validated of round 0 and round 1 (ties: round 1)
    best = 1 if row["eval"]["driving_score"] >= row0["eval"]["driving_score"] else 0
    assert rep["best_round"] == best and row["accepted"] == (best == 1) and rep["final"]["policy_round"] == best
    assert row0["round"] == 0 and 0 <= row0["eval"]["driving_score"] <= 100  # the starting policy, evaluated
    # eval_seeds 2: two evaluations (seeds 0 and 1) per round, their DS averaged
    for r_ in (row0, row):
        assert len(r_["eval"]["driving_scores"]) == 2
        assert r_["eval"]["driving_score"] == pytest.approx(np.mean(r_["eval"]["driving_scores"]))
    assert (tmp_path / "takead" / "round_1" / "eval_s1" / "summary.json").exists()
    assert 0 <= row["eval"]["driving_score"] <= 100
    # the final policy drove the training routes once more: its own takeover rate
    assert rep["final"]["round"] == 1 and rep["final"]["km"] > 0.2 and rep["final"]["takeovers_per_km"] is not None
    assert (tmp_path / "takead" / "curves.png").stat().st_size > 1000
    assert row["episodes"] == 2 and row["km"] > 0.2  # both suites driven, each into its own collection
    for i in (0, 1):
        assert len(json.loads((tmp_path / "takead" / "round_1" / f"data_{i}" / "index.json").read_text())["episodes"]) == 1
    # the tiny planner (2 epochs) drives badly: the expert takes over, and those frames feed DAgger and DPO
    assert row["takeovers"] > 0 and row["disengagement_states"] >= 20 * row["takeovers"] * 0.5
    assert row["updates"] == ["dagger", "dpo"]
    assert row["dpo"]["pairs"] > 0 and np.isfinite(row["dpo"]["dpo"]) and np.isfinite(row["dagger"]["loss"])
    assert row["dagger"]["kl_initial"] >= 0 and row["dpo"]["kl_initial"] > 0  # the anchor to the start was on
    trained, _ = load_model(tmp_path / "takead" / "round_1" / "ckpt.pt")
    moved = [k for k, v in trained.state_dict().items() if not torch.equal(v, init.state_dict()[k])]
    assert len(moved) > 10
    assert (tmp_path / "takead" / "round_1" / "model" / "planner.onnx").exists()
    assert {r["round"] for r in json.loads((tmp_path / "takead" / "takead.json").read_text())["rounds"]} == {0, 1}
    # resume: the finished round is not run again
    rep2 = run_takead(TakeADConfig(**{**cfg.__dict__, "resume": True}), log=lambda *_: None)
    assert rep2["rounds"] == rep["rounds"]
    # a second round with train_from initial: driven by round 1's choice, trained from the starting checkpoint
    import drivesim.models.checkpoint as ckmod
    loaded, real_load = [], ckmod.load_model

    def spy(path, *a, **k):
        loaded.append(Path(path))
        return real_load(path, *a, **k)

    monkeypatch.setattr(ckmod, "load_model", spy)
    rep3 = run_takead(TakeADConfig(**{**cfg.__dict__, "resume": True, "rounds": 2, "train_from": "initial",
                                      "eval_seeds": 1, "measure_final": False}), log=lambda *_: None)
    monkeypatch.undo()
    # loads: the run's pi_0; round 2's driver (keep_best's choice, exported to drive); round 2's training start
    # (the starting checkpoint, not the driver); round 2's result (exported)
    driver = Path(cfg.init) if best == 0 else tmp_path / "takead" / "round_1" / "ckpt.pt"
    assert loaded == [Path(cfg.init), driver, Path(cfg.init), tmp_path / "takead" / "round_2" / "ckpt.pt"]
    r2 = next(x for x in rep3["rounds"] if x["round"] == 2)
    assert r2["episodes"] == 2 and "dagger" in r2
    trained2, _ = load_model(tmp_path / "takead" / "round_2" / "ckpt.pt")
    assert any(not torch.equal(v, trained.state_dict()[k]) for k, v in trained2.state_dict().items())
    with pytest.raises(ValueError, match="needs --routes"):
        run_takead(TakeADConfig(routes=""), log=lambda *_: None)


def test_dpo_rounds_limits_dpo_to_the_first_rounds():
    """`--dpo-rounds N`: DAgger every round, DPO in rounds 1..N only; 0 keeps DPO in every round."""
    from drivesim.learn.takead import round_updates

    def plan(**kw):
        cfg = TakeADConfig(routes="a.xml", **kw)
        return [round_updates(cfg, r) for r in range(1, 5)]

    both = ("dagger", "dpo")
    assert plan() == [both] * 4
    assert plan(dpo_rounds=1) == [both, ("dagger",), ("dagger",), ("dagger",)]
    assert plan(dpo_rounds=2) == [both, both, ("dagger",), ("dagger",)]
    assert plan(ablation="dagger") == [("dagger",)] * 4 and plan(ablation="dpo") == [("dpo",)] * 4
    with pytest.raises(ValueError, match="dpo-rounds 1"):
        TakeADConfig(routes="a.xml", ablation="dagger", dpo_rounds=1)
    with pytest.raises(ValueError, match="eval-seeds 0"):
        TakeADConfig(routes="a.xml", eval_seeds=0)
    with pytest.raises(ValueError, match="dpo-rounds -1"):
        TakeADConfig(routes="a.xml", dpo_rounds=-1)


def test_keep_best_starts_each_round_from_the_best_validated_policy():
    """`--keep-best`: a round that lowers the validation DS is not built on; ties go to the later round."""
    from drivesim.learn.takead import best_round

    def rows(*ds):
        return [{"round": r, "eval": {"driving_score": d}} for r, d in enumerate(ds)]

    assert best_round(rows(71.3)) == 0
    assert best_round(rows(71.3, 83.2)) == 1
    assert best_round(rows(71.3, 83.2, 77.9)) == 1  # round 3 starts from round 1's policy
    assert best_round(rows(71.3, 83.2, 77.9, 85.8)) == 3
    assert best_round(rows(71.3, 71.3)) == 1
    assert best_round([{"round": 0}, *rows(50.0, 60.0)[1:]]) == 1  # a row without an evaluation is skipped
    with pytest.raises(ValueError, match="eval-routes"):
        TakeADConfig(routes="a.xml", keep_best=True)


def test_a_committed_planner_onnx_loads_back_into_torch(tmp_path):
    """`train takead --init models/perlad/planner.onnx`: the weights recovered from the exported file reproduce it
    (checked inside against ONNX Runtime; here again, on other inputs), and a file that is not one of our
    planners is refused with what to pass instead."""
    import shutil

    import onnxruntime as ort
    from drivesim.models.checkpoint import load_model
    from drivesim.models.export import random_inputs
    from drivesim.models.nets import INPUT_NAMES
    from drivesim.policies import find_model

    path = find_model("perlad")
    model, ck = load_model(path)
    x = random_inputs(model, 1, seed=7)
    with torch.no_grad():
        ref = model(*(torch.as_tensor(x[k]) for k in INPUT_NAMES))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {k: x[k] for k in INPUT_NAMES})
    assert max(float(np.abs(r.numpy() - g).max()) for r, g in zip(ref, got)) < 1e-4
    assert ck["onnx_sha256"] and ck["net"]["d_model"] == model.ncfg.d_model
    # a planner.onnx without its manifest, and a world model, are refused
    lone = tmp_path / "planner.onnx"
    shutil.copy(path, lone)
    with pytest.raises(ValueError, match="manifest"):
        load_model(lone)
    with pytest.raises(ValueError, match="only planners load from ONNX"):
        load_model(find_model("world_model", kind="world_model"))


def test_policy_kl_is_the_joint_kl_and_anchors_training():
    """policy_kl is the exact KL of the joint (anchor, speed) distribution; with_anchor adds it to a loss, and
    with its weight an update stays nearer the starting policy than without."""
    from drivesim.learn.takead import policy_kl, with_anchor

    p_k, q_k = torch.tensor([[0.25, 0.75]]), torch.tensor([[0.5, 0.5]])
    p_v = torch.tensor([[[0.5, 0.5], [0.1, 0.9]]])
    q_v = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    kl = policy_kl(p_k.log(), p_v.log(), q_k.log(), q_v.log())
    joint_p, joint_q = (p_k[0, :, None] * p_v[0]).flatten(), (q_k[0, :, None] * q_v[0]).flatten()
    assert float(kl) == pytest.approx(float((joint_p * (joint_p / joint_q).log()).sum()), abs=1e-6)
    assert float(policy_kl(p_k.log(), p_v.log(), p_k.log(), p_v.log())) == pytest.approx(0.0, abs=1e-7)

    torch.manual_seed(0)
    start = Planner(ncfg=NetConfig(d_model=32, layers=1, ff=64)).eval()
    b = _batch(start)

    def drift(weight):
        model = copy.deepcopy(start)
        ref = copy.deepcopy(start).eval()
        fn = with_anchor(lambda bb: dpo_loss(model, ref, bb, beta=0.1), model, start, weight)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(20):
            out = fn(b)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        assert ("kl_initial" in out) == (weight > 0)
        with torch.no_grad():
            x = [b[k] for k in INPUT_NAMES]
            a, _, s = model(*x)
            r, _, rs = start(*x)
            return float(policy_kl(a, s, r, rs))

    free, anchored = drift(0.0), drift(10.0)
    assert free > 0.05 and anchored < 0.5 * free, (free, anchored)


def test_resume_keeps_the_runs_triggers_and_reads_old_configs_with_the_values_they_ran_with(tmp_path):
    """A config.json written before takeover_stall_speed / takeover_steer_min_speed existed was made with the old
    triggers (0, 0): `saved_config` fills them so; `--resume` under other triggers (today's defaults) is refused,
    naming the field and the flag that continues the run; changing an ablation setting (--train-from) is not."""
    from dataclasses import asdict

    from drivesim.learn.takead import check_resume, saved_config

    old = {k: v for k, v in asdict(TakeADConfig(routes="a.xml", takeover_stall=2.0)).items()
           if k not in ("takeover_stall_speed", "takeover_steer_min_speed")}
    (tmp_path / "config.json").write_text(json.dumps({**old, "no_longer_a_field": 1}))
    saved = saved_config(tmp_path / "config.json")
    assert saved["takeover_stall_speed"] == 0.0 and saved["takeover_steer_min_speed"] == 0.0
    assert "no_longer_a_field" not in saved and TakeADConfig(**saved).takeover_stall == 2.0
    with pytest.raises(ValueError, match=r"takeover_steer_min_speed=0.0.*takeover_stall_speed=0.0.*"
                                         r"--takeover-steer-min-speed 0.0 --takeover-stall-speed 0.0"):
        check_resume(saved, TakeADConfig(routes="a.xml", takeover_stall=2.0, resume=True), tmp_path)
    check_resume(saved, TakeADConfig(**{**saved, "resume": True, "rounds": 6, "train_from": "initial"}), tmp_path)
    with pytest.raises(ValueError, match="seed=0"):
        check_resume(saved, TakeADConfig(**{**saved, "seed": 1}), tmp_path)
