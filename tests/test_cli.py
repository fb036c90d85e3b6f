"""The two CLIs: `drive-stack` (the library's) never imports ROS code, and the commands that run the ROS 2 stack
are `drive-stack-ros`'s (the drive_stack package's); the demo finds ../shared as `make demo` passes it; every
option explains itself; `eval-table` refuses a label given twice."""

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from drivesim import cli
from drivesim.cli import build_parser, main, parse_runs, shared_defaults
from drivesim.policies import POLICIES

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "training" / "drivesim"
ROS_PKG = ROOT / "ros2_ws" / "src" / "drive_stack"
FORBIDDEN = ("drive_stack", "rclpy")


# ------------------------------------------------------------------------------------ 1. the library imports no ROS
def ros_imports(tree: Path) -> list[str]:
    """Every place under `tree` (a package's source) that imports drive_stack or rclpy: import statements anywhere
    (function level too) and importlib.import_module / __import__ calls with a literal name."""

    def bad(name: str | None) -> bool:
        return bool(name) and name.split(".")[0] in FORBIDDEN

    found = []
    for f in sorted(tree.rglob("*.py")):
        for n in ast.walk(ast.parse(f.read_text(), str(f))):
            names: list[str | None] = []
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and not n.level:
                names = [n.module]
            elif isinstance(n, ast.Call) and n.args and isinstance(n.args[0], ast.Constant) \
                    and isinstance(n.args[0].value, str):
                fn = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
                if fn in ("import_module", "__import__"):
                    names = [n.args[0].value]
            found += [f"{f.relative_to(tree.parent)}:{n.lineno}: {x}" for x in names if bad(x)]
    return found


def test_the_library_never_imports_ros_code():
    assert ros_imports(LIB) == []
    assert "drive_stack" not in (LIB / "cli.py").read_text()  # not even a guarded import or a hint of one


def test_the_import_checker_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "drivesim"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from drive_stack import launcher\n    import rclpy.node\n")
    (pkg / "b.py").write_text("import importlib\nx = importlib.import_module('drive_stack.cli')\n"
                              "y = __import__('rclpy')\nfrom .drive_stack import z\nimport drive_stack_msgs\n")
    got = ros_imports(pkg)
    assert [g.split(": ")[1] for g in got] == ["drive_stack", "rclpy.node", "drive_stack.cli", "rclpy"], got


def test_drive_stack_help_runs_without_ros():
    """`drive-stack --help` works, and building the whole parser loads no ROS module (a fresh interpreter)."""
    exe = Path(sys.executable).parent / "drive-stack"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "drivesim.cli"]
    r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "eval-table" in r.stdout and "check, generate, suite" in r.stdout
    probe = ("import sys\nfrom drivesim.cli import build_parser, main\nbuild_parser()\n"
             "assert main(['stack', 'run']) == 2 and main(['demo']) == 2\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('drive_stack', 'rclpy')))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("argv,use", [
    (["stack", "run", "--routes", "r.xml", "--route-id", "1"], "drive-stack-ros stack run"),
    (["stack", "--help"], "drive-stack-ros stack run"),
    (["bench", "stack", "--json", "x.json"], "drive-stack-ros bench stack"),
    (["demo"], "drive-stack-ros demo"),
    (["demo", "--policy", "rule"], "drive-stack-ros demo"),
])
def test_ros_commands_name_the_command_to_use(argv, use, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and use in err, err


def test_drive_stack_ros_has_the_stack_commands():
    """The ROS package declares the drive-stack-ros entry point, and its parser has stack run, bench stack, demo;
    the Makefile and the README call those through it."""
    assert '"drive-stack-ros = drive_stack.cli:main"' in (ROS_PKG / "setup.py").read_text()
    from importlib.metadata import entry_points

    eps = [e.value for e in entry_points(group="console_scripts", name="drive-stack-ros")]
    assert eps == ["drive_stack.cli:main"], "reinstall: pip install --no-deps -e ros2_ws/src/drive_stack"
    ros_cli = pytest.importorskip("drive_stack.cli")
    p = ros_cli.build_parser()
    a = p.parse_args(["stack", "run", "--fault", "planner:exit@5.0"])
    assert (a.fn, a.routes, a.policy, a.fault) == (ros_cli.cmd_stack_run, None, "rule", ["planner:exit@5.0"])
    assert p.parse_args(["bench", "stack", "--record"]).fn is ros_cli.cmd_bench_stack
    a = p.parse_args(["demo"])
    assert (a.fn, a.b2d_routes, a.maps_dir, a.policy) == (ros_cli.cmd_demo, None, None, "perlad")
    for doc in ((ROOT / "Makefile").read_text(), (ROOT / "README.md").read_text()):
        assert not re.search(r"drive-stack (stack run|bench stack|demo(?! --no-stack))", doc)
    assert "drive-stack-ros demo" in (ROOT / "Makefile").read_text()


# ------------------------------------------------------------------------------ 2. the demo's Bench2Drive defaults
def _shared(base: Path) -> tuple[Path, Path]:
    routes = base / "bench2drive" / "bench2drive220.xml"
    routes.parent.mkdir(parents=True)
    routes.write_text("<routes/>")
    (base / "carla_maps").mkdir()
    return routes, base / "carla_maps"


@pytest.fixture
def no_env(monkeypatch):
    for k in ("DRIVE_STACK_MAPS", "CARLA_ROOT", "DRIVE_STACK_SHARED"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_shared_defaults_find_shared_beside_the_repository(tmp_path, no_env):
    routes, maps = _shared(tmp_path / "shared")
    d = shared_defaults(root=tmp_path / "repo")
    assert (d.routes, d.maps_dir, d.missing()) == (routes, maps, None)


def test_shared_defaults_options_and_environment_come_first(tmp_path, no_env):
    _shared(tmp_path / "shared")
    mine = tmp_path / "mine.xml"
    mine.write_text("<routes/>")
    d = shared_defaults(str(mine), str(tmp_path), root=tmp_path / "repo")
    assert (d.routes, d.maps_dir) == (mine, tmp_path)
    other, other_maps = _shared(tmp_path / "elsewhere")
    no_env.setenv("DRIVE_STACK_SHARED", str(tmp_path / "elsewhere"))
    d = shared_defaults(root=tmp_path / "repo")
    assert (d.routes, d.maps_dir) == (other, other_maps)
    no_env.setenv("DRIVE_STACK_MAPS", str(tmp_path / "env_maps"))
    d = shared_defaults(root=tmp_path / "repo")
    assert d.maps_dir == tmp_path / "env_maps"
    assert d.missing() == f"no Bench2Drive maps (looked at: $DRIVE_STACK_MAPS / $CARLA_ROOT: {tmp_path / 'env_maps'})"


def test_shared_defaults_say_what_is_missing(tmp_path, no_env):
    d = shared_defaults(root=tmp_path / "repo")
    assert (d.routes, d.maps_dir) == (None, None)
    msg = d.missing()
    assert str(tmp_path / "shared" / "bench2drive" / "bench2drive220.xml") in msg
    assert "$DRIVE_STACK_MAPS / $CARLA_ROOT (unset)" in msg and str(tmp_path / "shared" / "carla_maps") in msg
    d = shared_defaults(str(tmp_path / "gone.xml"), None, root=tmp_path / "repo")  # given but absent: kept, and said
    assert d.routes == tmp_path / "gone.xml" and f"--b2d-routes {tmp_path / 'gone.xml'}" in d.missing()


def test_shared_defaults_are_the_makefile_demo_paths(no_env):
    mk = (ROOT / "Makefile").read_text()
    assert re.search(r"^SHARED \?= \.\./shared$", mk, re.M)
    routes, maps = re.search(r"demo --out \S+ --b2d-routes \$\(SHARED\)/(\S+) --maps-dir \$\(SHARED\)/(\S+)", mk).groups()
    assert (Path(routes), Path(maps)) == (cli.B2D_ROUTES, cli.B2D_MAPS)
    assert cli.repo_root() == ROOT
    shared = ROOT.parent / "shared"
    if not (shared / routes).exists():
        pytest.skip("no ../shared beside this checkout")
    d = shared_defaults()
    assert (d.routes, d.maps_dir, d.missing()) == (shared / routes, shared / maps, None)


# ------------------------------------------------------------------------------------- 3. every option explains itself
def parsers(p: argparse.ArgumentParser, path=()):
    """(command path, parser) for p and every subcommand below it."""
    yield path, p
    for act in p._actions:
        if isinstance(act, argparse._SubParsersAction):
            for name, q in act.choices.items():
                yield from parsers(q, (*path, name))


def expand(p: argparse.ArgumentParser, act: argparse.Action) -> str:
    return p._get_formatter()._expand_help(act)


HIDDEN = {(("eval",), "--fault")}  # testing aids, hidden on purpose


def test_every_option_has_a_meaning_and_its_default():
    top = build_parser()
    checked = 0
    for path, p in parsers(top):
        p.format_help()  # a stray % in a help text fails here
        for act in p._actions:
            if isinstance(act, argparse._HelpAction):
                continue
            if isinstance(act, argparse._SubParsersAction):
                for c in act._choices_actions:
                    assert c.help, f"{' '.join(path)} {c.dest}: no help"
                continue
            flag = act.option_strings[0] if act.option_strings else act.dest
            if (path, flag) in HIDDEN:
                assert act.help == argparse.SUPPRESS
                continue
            text = expand(p, act)
            assert act.help and text.strip(), f"{' '.join(path)} {flag}: no help"
            checked += 1
            takes_value = act.option_strings and act.nargs != 0 and not act.required
            if takes_value or isinstance(act, argparse.BooleanOptionalAction):
                assert "default" in text, f"{' '.join(path)} {flag}: the help does not say its default: {text!r}"
            if path[:1] == ("train",):  # the config field's documentation, not only its default
                assert text.split("(default")[0].strip(), f"{' '.join(path)} {flag}: no meaning: {text!r}"
    assert checked > 200  # every subcommand walked (the train stages alone have ~150 options)


def test_group_helps_list_their_subcommands():
    """`routes: check, generate, suite`: a group's help that lists its subcommands lists all of them."""
    for _path, p in parsers(build_parser()):
        for act in p._actions:
            if not isinstance(act, argparse._SubParsersAction):
                continue
            for c in act._choices_actions:
                sub = act.choices[c.dest]
                kids = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                if not kids or ":" not in c.help:
                    continue
                listed = {x.strip() for x in c.help.split(":", 1)[1].split(",")}
                live = {k.dest for k in kids[0]._choices_actions if not k.help.startswith("moved")}
                assert listed == live, (c.dest, listed, live)


def test_eval_policy_help_lists_the_policies_and_its_default():
    p = dict((path, q) for path, q in parsers(build_parser()))[("eval",)]
    act = next(a for a in p._actions if "--policy" in a.option_strings)
    text = expand(p, act)
    assert all(name in text for name in POLICIES), text
    assert act.default == "rule" and "(default: rule)" in text and "later" not in text


def test_train_help_shows_the_field_docs():
    ps = dict(parsers(build_parser()))
    acts = {a.dest: a for a in ps[("train", "rl")]._actions}
    text = expand(ps[("train", "rl")], acts["kl_ref"])
    assert "KL(pi || pi_imitation)" in text and "(default: 0.03)" in text
    assert acts["algo"].choices == ("grpo", "ppo")
    pipe = {a.dest: a for a in ps[("train", "pipeline")]._actions}
    assert "rl.kl_ref" in pipe and "--rl.kl-ref" in pipe["rl.kl_ref"].option_strings
    assert "rl.init" not in pipe and "il.data" not in pipe  # set by the pipeline itself
    from drivesim.learn.pipeline import PipelineConfig
    from drivesim.learn.train import config_from_args

    a = build_parser().parse_args(["train", "pipeline", "--rl.kl-ref", "0.1", "--il.epochs", "3", "--seed", "4",
                                   "--rl.algo", "ppo", "--no-resume"])
    cfg = config_from_args(PipelineConfig, a)
    assert (cfg.rl.kl_ref, cfg.il.epochs, cfg.seed, cfg.rl.algo, cfg.resume, cfg.wm.epochs) == (0.1, 3, 4, "ppo", False, 12)


# ------------------------------------------------------------------------------------------------- 4. eval-table
def test_training_on_a_town_without_its_map_is_a_clear_error(tmp_path, no_env, capsys):
    """A dataset whose episodes drove a CARLA town that no maps directory holds: every episode fails, and the
    command says so in one line with the fix (--maps-dir), exit 2, no traceback (session 33: a TakeVLA run given
    Town04 takeover collections without --maps-dir ended in a FrameError traceback)."""
    data = tmp_path / "shadow_t04"
    (data / "episodes" / "Town04_Accident_0_s1000").mkdir(parents=True)
    (data / "index.json").write_text(json.dumps({"episodes": [
        {"episode": "Town04_Accident_0_s1000", "town": "Town04", "frames": 12}]}))
    rc = main(["train", "il", "--data", str(data), "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("drive-stack: error: ") and "Traceback" not in err
    assert "no usable episodes (1 failed)" in err and "Town04.xodr not found" in err and "--maps-dir" in err


def test_eval_table_refuses_a_label_given_twice(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"label 'rule' is given twice .*rule=a\+b"):
        parse_runs("rule=a,expert=c,rule=b")
    with pytest.raises(ValueError, match="is not label=eval_out_dir"):
        parse_runs("rule=a,expert")
    assert main(["eval-table", "--runs", f"rule={tmp_path},rule={tmp_path}"]) == 2
    assert "given twice" in capsys.readouterr().err
    assert parse_runs("rule=a+b, expert = c") == {"rule": "a+b", "expert": "c"}


def test_eval_table_rows_in_the_order_given(tmp_path, capsys):
    for name, ds in (("r", 70.0), ("e", 95.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"driving_score": ds, "success_rate": 50.0, "efficiency": 100.0, "comfortness": 60.0,
             "multi_ability": {}, "routes_evaluated": 4}))
    assert main(["eval-table", "--runs", f"rule={tmp_path / 'r'},expert={tmp_path / 'e'}",
                 "--out", str(tmp_path / "t.md")]) == 0
    rows = [r for r in (tmp_path / "t.md").read_text().splitlines() if r.startswith("| ") and "DS" not in r]
    assert [r.split("|")[1:3] for r in rows] == [[" rule ", " 70.0 "], [" expert ", " 95.0 "]]
