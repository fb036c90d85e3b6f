"""Typed configuration: Literal/typed fields validated with the field named, the pipeline reaching every stage
field, field documentation read from the source, and each ROS node's params-file section holding exactly the
fields of its typed config (with values the config accepts)."""

import dataclasses
import pathlib

import pytest
import yaml
from drivesim.learn.configs import ILConfig, RLConfig
from drivesim.learn.pipeline import PipelineConfig
from drivesim.typed import build, field_docs, options

WS = pathlib.Path(__file__).resolve().parents[1] / "ros2_ws"


def test_typed_fields_are_validated_with_the_field_named():
    with pytest.raises(ValueError, match=r"RLConfig.algo = 'sgd': expected one of 'grpo', 'ppo'"):
        RLConfig(algo="sgd")
    with pytest.raises(ValueError, match="RLConfig.agents"):
        RLConfig(agents="replay")
    with pytest.raises(ValueError, match="ILConfig.epochs = 2.5: expected int"):
        ILConfig(epochs=2.5)
    with pytest.raises(ValueError, match="ILConfig.lr is NaN"):
        ILConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="ILConfig.resume = 'yes': expected true or false"):
        ILConfig(resume="yes")
    assert RLConfig(algo="ppo", epochs=3.0).epochs == 3  # a whole float is taken as the int it is


def test_the_pipeline_reaches_every_stage_field():
    paths = {o.path for o in options(PipelineConfig)}
    for stage, cls in (("il", ILConfig), ("rl", RLConfig)):
        for f in dataclasses.fields(cls):
            if f.name != "notes":
                assert f"{stage}.{f.name}" in paths
    assert {"rl.kl_ref", "rl.ttc", "rl.ttc_horizon", "wm.w_react", "il.w_speed_change"} <= paths
    cfg = build(PipelineConfig, {"seed": 3, "rl.kl_ref": 0.1, "rl.ttc": 0.0, "il.epochs": 4})
    assert (cfg.seed, cfg.rl.kl_ref, cfg.rl.ttc, cfg.il.epochs) == (3, 0.1, 0.0, 4)
    assert cfg.rl.updates == 200 and cfg.wm.epochs == 12  # the pipeline's own stage defaults stay
    with pytest.raises(ValueError, match="unknown field 'rl.kl'"):
        build(PipelineConfig, {"rl.kl": 0.1})
    with pytest.raises(ValueError, match="RLConfig.algo"):
        build(PipelineConfig, {"rl.algo": "adam"})


def test_field_docs_come_from_the_source():
    docs = field_docs(RLConfig)
    assert "KL(pi || pi_imitation)" in docs["kl_ref"] and "Proc3 validation suite" in docs["kl_ref"]  # + continuation
    assert docs["val_fraction"] == "of episodes, held out"  # inherited from TrainConfig
    assert all(o.doc for o in options(PipelineConfig) if o.path.startswith("rl."))


def test_each_node_section_has_exactly_its_typed_config():
    from drive_stack.node_table import NODES
    from drive_stack.params import PARAMS

    params = yaml.safe_load((WS / "src" / "drive_stack" / "config" / "stack.yaml").read_text())
    assert sorted(PARAMS) == sorted(n.name for n in NODES)
    for name, cls in PARAMS.items():
        section = params[f"/{name}"]["ros__parameters"]
        declared = {f.name for f in dataclasses.fields(cls)}
        assert set(section) == declared, (name, sorted(set(section) ^ declared))
        cfg = cls(**section)  # every documented value is one the node accepts
        docs = field_docs(cls)
        assert all(docs.get(f) for f in declared), (name, sorted(f for f in declared if not docs.get(f)))
        assert cfg == cls(**{**dataclasses.asdict(cls()), **section})
    with pytest.raises(ValueError, match="RecorderParams.mode = 'always'"):
        PARAMS["recorder"](mode="always")
    with pytest.raises(ValueError, match="TakeoverConfig.deadline"):
        PARAMS["takeover_monitor"](deadline=-1.0)


def test_stack_run_set_options_are_typed_and_validated():
    """`drive-stack-ros stack run --set NODE.PARAM=VALUE`: converted to the field's type, checked by the node's
    config; an unknown node or parameter and a bad value are refused with what was wrong."""
    from drive_stack.params import parse_set

    got = parse_set(["takeover_monitor.steer_threshold=0.2", "recorder.mode=both", "pseudo_sim.offer_expert=false",
                     "planner.wait_for=perception_input,recorder", "pseudo_sim.max_agents=32"])
    assert got == {"takeover_monitor": {"steer_threshold": 0.2}, "recorder": {"mode": "both"},
                   "pseudo_sim": {"offer_expert": False, "max_agents": 32},
                   "planner": {"wait_for": ["perception_input", "recorder"]}}
    with pytest.raises(ValueError, match="unknown node 'monitor'"):
        parse_set(["monitor.steer_threshold=0.2"])
    with pytest.raises(ValueError, match="has no parameter 'steer'"):
        parse_set(["takeover_monitor.steer=0.2"])
    with pytest.raises(ValueError, match="expected a non-negative number"):
        parse_set(["takeover_monitor.steer_threshold=-1"])
    with pytest.raises(ValueError, match="expected one of 'takeover', 'continuous', 'both'"):
        parse_set(["recorder.mode=always"])
    with pytest.raises(ValueError, match="expected NODE.PARAM=VALUE"):
        parse_set(["steer_threshold=0.2"])
