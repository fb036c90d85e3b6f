"""The library's layering, checked on the source: no import cycle between its packages, and the deploy runtime
(networks, feature builders, path extension and control, ONNX export and the inference runtime, the policies the
stack runs, the takeover gate) imports nothing from training (datasets, algorithms, pipelines, the closed loop,
evaluation, the CLI): training depends on it, never the reverse. Function-level imports count too."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "training"
DEPLOY = ("drivesim.models", "drivesim.policies.learned", "drivesim.policies.rule", "drivesim.sim.control",
          "drivesim.stack.takeover", "drivesim.stack.reasoner", "drivesim.stack.bev")
TRAINING = ("drivesim.learn", "drivesim.dataset", "drivesim.evaluation", "drivesim.loop", "drivesim.cli",
            "drivesim.bench", "drivesim.gym_env", "drivesim.render")


def module_imports() -> dict[str, set[str]]:
    """module -> the drivesim modules it imports (anywhere in its body), resolved to module names."""
    out = {}
    mods = {}
    for f in (ROOT / "drivesim").rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = f
    for name, f in mods.items():
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom):
                if n.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                    tgt = ".".join(base + ([n.module] if n.module else []))
                elif n.module and n.module.split(".")[0] == "drivesim":
                    tgt = n.module
                else:
                    continue
                cands = [tgt] + [f"{tgt}.{a.name}" for a in n.names]
                deps |= {c for c in cands if c in mods}
            elif isinstance(n, ast.Import):
                deps |= {a.name for a in n.names if a.name in mods}
        out[name] = deps - {name}
    return out


def unit(m: str) -> str:
    """The package a module belongs to for the cycle check (drivesim.sim.state -> drivesim.sim)."""
    return ".".join(m.split(".")[:2])


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for m, deps in module_imports().items():
        graph.setdefault(unit(m), set()).update(unit(d) for d in deps if unit(d) != unit(m))
    cycles = []

    def visit(start, node, path):
        for nxt in graph.get(node, ()):
            if nxt == start:
                cycles.append(" -> ".join(path + [start]))
            elif nxt not in path and nxt > start:
                visit(start, nxt, path + [nxt])

    for s in graph:
        visit(s, s, [s])
    assert cycles == [], "import cycles between packages:\n" + "\n".join(cycles)


def test_deploy_runtime_imports_nothing_from_training():
    imports = module_imports()
    bad = []
    for root in [m for m in imports if any(m == d or m.startswith(d + ".") for d in DEPLOY)]:
        seen, todo = {root}, [root]
        while todo:
            m = todo.pop()
            for d in imports.get(m, ()):
                if any(d == t or d.startswith(t + ".") for t in TRAINING):
                    bad.append(f"{root} -> ... -> {m} -> {d}")
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
    assert bad == [], "deploy-time code reaches training code:\n" + "\n".join(sorted(set(bad)))
    assert "drivesim.models.features" in imports and "drivesim.learn.features" not in imports


def test_the_checker_sees_a_cycle_and_a_training_import(tmp_path, monkeypatch):
    """The two checks can fail: a fake package tree with a cycle and a deploy module importing training code."""
    pkg = tmp_path / "drivesim"
    for sub in ("models", "learn", "sim"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "nets.py").write_text("def f():\n    from ..learn.data import x\n")
    (pkg / "learn" / "data.py").write_text("from ..models.nets import f\nx = 1\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    import pytest

    with pytest.raises(AssertionError, match="drivesim.learn -> drivesim.models -> drivesim.learn"):
        test_no_import_cycle_between_packages()
    with pytest.raises(AssertionError, match="drivesim.models.nets -> drivesim.learn.data"):
        test_deploy_runtime_imports_nothing_from_training()
