"""One model-resolution rule: explicit file, then $DRIVE_STACK_MODELS, then the committed models/; never a path
relative to where a command runs. The resolved file and its hash are printed and recorded; a file that is not a
planner is refused before the first route, naming the file, what was expected and what was found."""

import json
import shutil

import pytest
from drivesim.policies import ModelError, check_policy, resolve_model
from drivesim.policies.learned import REPO_MODELS


def test_a_results_models_folder_in_the_working_directory_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("DRIVE_STACK_MODELS", raising=False)
    (tmp_path / "results" / "models" / "perlad").mkdir(parents=True)
    shutil.copy(REPO_MODELS / "il" / "planner.onnx", tmp_path / "results" / "models" / "perlad" / "planner.onnx")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("perlad") == (REPO_MODELS / "perlad" / "planner.onnx").resolve()
    monkeypatch.setenv("DRIVE_STACK_MODELS", str(tmp_path / "results" / "models"))  # said explicitly: used
    assert resolve_model("perlad") == (tmp_path / "results" / "models" / "perlad" / "planner.onnx").resolve()
    own = tmp_path / "mine.onnx"
    shutil.copy(REPO_MODELS / "il" / "planner.onnx", own)
    assert resolve_model("perlad", str(own)) == own.resolve()  # --model wins over everything


def test_wrong_or_broken_model_files_are_refused_naming_the_file(tmp_path):
    ident = check_policy("perlad")
    assert ident["path"].endswith("models/perlad/planner.onnx") and len(ident["sha256"]) == 64
    assert check_policy("rule") is None
    wm = REPO_MODELS / "world_model" / "world_model.onnx"
    with pytest.raises(ModelError, match=r"world_model.onnx: not a planner: expected inputs .* outputs "
                                         r"\['anchor_logits', 'paths', 'speed_logits'\], found"):
        check_policy("perlad", str(wm))
    cut = tmp_path / "planner.onnx"
    cut.write_bytes((REPO_MODELS / "perlad" / "planner.onnx").read_bytes()[:5000])
    with pytest.raises(ModelError, match="planner.onnx: not a readable ONNX model"):
        check_policy("perlad", str(cut))
    whole = tmp_path / "copy" / "planner.onnx"
    whole.parent.mkdir()
    shutil.copy(REPO_MODELS / "perlad" / "planner.onnx", whole)
    with pytest.raises(ModelError, match="no manifest planner.manifest.json"):
        check_policy("perlad", str(whole))
    with pytest.raises(ValueError, match="--model is for the learned policies"):
        check_policy("rule", str(whole))


def test_eval_refuses_a_bad_model_before_the_first_route_and_records_the_one_it_used(tmp_path, proc_town):
    import subprocess
    import sys

    from drivesim.routes.generate import random_routes
    from drivesim.routes.xml import write_routes

    routes = tmp_path / "r.xml"
    write_routes(random_routes(proc_town, 1, seed=0, min_length=60.0), routes)
    cmd = [sys.executable, "-m", "drivesim.cli", "eval", "--routes", str(routes), "--policy", "perlad",
           "--out", str(tmp_path / "bad"), "--model", str(REPO_MODELS / "world_model" / "world_model.onnx")]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "not a planner" in bad.stderr and "world_model.onnx" in bad.stderr
    assert not (tmp_path / "bad" / "results.json").exists()  # refused before the first route
    good = subprocess.run(cmd[:-2] + ["--out", str(tmp_path / "good")], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    sha = check_policy("perlad")["sha256"]
    assert f"sha256 {sha[:16]}" in good.stdout
    summary = json.loads((tmp_path / "good" / "summary.json").read_text())
    rec = json.loads((tmp_path / "good" / "results.json").read_text())["_checkpoint"]["records"][0]
    assert summary["model"]["sha256"] == rec["meta"]["model"]["sha256"] == sha
