"""Deployment: the TensorRT engine cache (models/engine_cache.py) with a fake builder (no TensorRT, no GPU), the
`drive-stack export --tensorrt` command where TensorRT cannot run, the containers' entrypoint, and the Compose
files checked offline against the Compose specification's JSON schema (tests/data/compose-spec.json)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from drivesim.models import engine_cache as ec
from drivesim.models.engine_cache import EngineCache, EngineCacheWarning, EngineKey, engine_key

ROOT = Path(__file__).resolve().parents[1]
ONNX_A = b"onnx model A" * 50
ONNX_B = b"onnx model B" * 50


class FakeBuilder:
    """Stands in for TensorRT: `build()` serializes an 'engine' for the current ONNX bytes and key, `load(blob)`
    deserializes it (None when the bytes are not an engine, as deserialize_cuda_engine does)."""

    MAGIC = b"FAKEENG1"

    def __init__(self):
        self.builds = 0
        self.loads = 0
        self.onnx = ONNX_A
        self.fail_load = False

    def build(self) -> bytes:
        self.builds += 1
        return self.MAGIC + ec.sha256_bytes(self.onnx).encode() + bytes(range(256)) * 8

    def load(self, blob: bytes):
        self.loads += 1
        if self.fail_load or not blob.startswith(self.MAGIC):
            return None
        return {"engine_for": blob[8:72].decode()}


def key(onnx=ONNX_A, gpu="NVIDIA H200", trt="10.3.0", precision="fp16", calibration=""):
    return engine_key(onnx, gpu, trt, precision, calibration)


def start(cache: EngineCache, fb: FakeBuilder, k: EngineKey, name="planner"):
    """One container start: the engine of `k`, from the cache or built."""
    return cache.get_or_build(name, k, fb.build, fb.load)


def no_warnings(fn, *a):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineCacheWarning)
        return fn(*a)


def test_first_start_builds_second_start_loads(tmp_path):
    cache, fb = EngineCache(tmp_path / "trt"), FakeBuilder()
    r1 = no_warnings(start, cache, fb, key())
    assert (r1.action, r1.reason, fb.builds) == ("built", "no entry", 1)
    assert r1.engine == {"engine_for": ec.sha256_bytes(ONNX_A)}
    r2 = no_warnings(start, cache, fb, key())
    assert (r2.action, fb.builds) == ("loaded", 1)
    assert r2.blob == r1.blob and r2.path == r1.path
    # the engine bytes exactly as built, and a metadata file beside them with the key, size and sha256
    eng, meta = cache.paths("planner", key())
    assert eng.read_bytes() == r1.blob
    m = json.loads(meta.read_text())
    assert m["format"] == ec.FORMAT and m["size"] == len(r1.blob) and m["sha256"] == ec.sha256_bytes(r1.blob)
    assert m["key"] == {"onnx_sha256": ec.sha256_bytes(ONNX_A), "gpu": "NVIDIA H200", "trt_version": "10.3.0",
                        "precision": "fp16", "calibration": ""}
    assert sorted(p.name for p in cache.root.iterdir() if not p.name.endswith(".lock")) == sorted([eng.name, meta.name])


def test_changed_onnx_rebuilds_and_the_stale_entry_is_not_used(tmp_path):
    cache, fb = EngineCache(tmp_path), FakeBuilder()
    start(cache, fb, key(ONNX_A))
    fb.onnx = ONNX_B
    r = no_warnings(start, cache, fb, key(ONNX_B))
    assert (r.action, fb.builds) == ("rebuilt", 2)
    assert "onnx_sha256" in r.reason and "stale entries not used" in r.reason
    assert r.engine == {"engine_for": ec.sha256_bytes(ONNX_B)}  # the new model's engine, not the old one
    assert start(cache, fb, key(ONNX_B)).action == "loaded"
    assert start(cache, fb, key(ONNX_A)).action == "loaded"  # the other key's entry is left in place


@pytest.mark.parametrize("field,change", [("gpu", {"gpu": "Orin (nvgpu)"}), ("trt_version", {"trt": "10.7.0"}),
                                          ("precision", {"precision": "fp32"})])
def test_changed_gpu_tensorrt_or_precision_rebuilds(tmp_path, field, change):
    cache, fb = EngineCache(tmp_path), FakeBuilder()
    start(cache, fb, key())
    r = no_warnings(start, cache, fb, key(**change))
    assert (r.action, fb.builds) == ("rebuilt", 2)
    assert field in r.reason
    assert cache.paths("planner", key())[0] != cache.paths("planner", key(**change))[0]


def _truncate(eng, meta):
    eng.write_bytes(eng.read_bytes()[:100])


def _flip_bytes(eng, meta):  # same size, other bytes: only the checksum can tell
    b = bytearray(eng.read_bytes())
    b[200:210] = b"\x00" * 10
    eng.write_bytes(bytes(b))


def _wrong_magic(eng, meta):  # not an engine at all, with metadata made to match: deserialization refuses it
    blob = b"NOTANENG" + eng.read_bytes()[8:]
    eng.write_bytes(blob)
    m = json.loads(meta.read_text())
    m.update(size=len(blob), sha256=ec.sha256_bytes(blob))
    meta.write_text(json.dumps(m))


def _garbage_metadata(eng, meta):
    meta.write_text("{not json")


def _foreign_metadata(eng, meta):
    m = json.loads(meta.read_text())
    m["format"] = "something-else/9"
    meta.write_text(json.dumps(m))


def _no_metadata(eng, meta):  # an interrupted write: engine renamed into place, metadata not yet
    meta.unlink()


def _no_engine(eng, meta):
    eng.unlink()


CORRUPTIONS = {"truncated": (_truncate, "truncated"), "flipped bytes": (_flip_bytes, "sha256"),
               "wrong magic": (_wrong_magic, "deserialization failed"),
               "garbage metadata": (_garbage_metadata, "unreadable metadata"),
               "foreign metadata": (_foreign_metadata, "format"), "no metadata": (_no_metadata, "no metadata"),
               "no engine": (_no_engine, "missing")}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_entry_is_rebuilt_with_a_warning_never_used(tmp_path, kind):
    corrupt, says = CORRUPTIONS[kind]
    cache, fb = EngineCache(tmp_path), FakeBuilder()
    good = start(cache, fb, key()).blob
    corrupt(*cache.paths("planner", key()))
    with pytest.warns(EngineCacheWarning, match=says):
        r = start(cache, fb, key())
    assert (r.action, fb.builds) == ("rebuilt", 2) and says in r.reason
    assert r.blob == good and r.engine == {"engine_for": ec.sha256_bytes(ONNX_A)}
    assert no_warnings(start, cache, fb, key()).action == "loaded"  # and the cache is whole again


def test_an_engine_that_fails_to_deserialize_is_rebuilt(tmp_path):
    """The bytes are intact but this runtime rejects them (e.g. a TensorRT build that changed its format
    under the same version string): rebuilt, with a warning."""
    cache, fb = EngineCache(tmp_path), FakeBuilder()
    start(cache, fb, key())
    calls = []

    def load(blob):
        calls.append(blob)
        if len(calls) == 1:
            raise RuntimeError("Serialization assertion magicTagRead == kMAGIC_TAG failed")
        return fb.load(blob)

    with pytest.warns(EngineCacheWarning, match="deserialization failed.*magicTagRead"):
        r = cache.get_or_build("planner", key(), fb.build, load)
    assert r.action == "rebuilt" and fb.builds == 2 and len(calls) == 2


def test_a_stale_entry_renamed_onto_this_key_is_refused(tmp_path):
    """The file name is the key's digest; the metadata's key fields are checked as well."""
    cache, fb = EngineCache(tmp_path), FakeBuilder()
    start(cache, fb, key(gpu="NVIDIA A100"))
    for old, new in zip(cache.paths("planner", key(gpu="NVIDIA A100")), cache.paths("planner", key())):
        old.rename(new)
    with pytest.warns(EngineCacheWarning, match="another key.*gpu: 'NVIDIA A100' -> 'NVIDIA H200'"):
        r = start(cache, fb, key())
    assert r.action == "rebuilt" and fb.builds == 2


def test_a_failed_build_leaves_no_file_and_the_old_entry_stays(tmp_path):
    cache, fb = EngineCache(tmp_path), FakeBuilder()
    start(cache, fb, key())

    def broken():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get_or_build("planner", key(precision="fp32"), broken, fb.load)
    assert not cache.paths("planner", key(precision="fp32"))[0].exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert start(cache, fb, key()).action == "loaded"


def test_key_fields_are_checked():
    with pytest.raises(ValueError, match="precision"):
        key(precision="bf16")
    with pytest.raises(ValueError, match="calibration"):
        key(precision="int8")
    with pytest.raises(ValueError, match="calibration"):
        key(precision="fp16", calibration="abc")
    with pytest.raises(ValueError, match="gpu"):
        key(gpu="")
    k8 = key(precision="int8", calibration="c1")
    assert k8.digest() != key(precision="int8", calibration="c2").digest() != key().digest()
    assert len(k8.digest()) == 24 and k8.digest() == key(precision="int8", calibration="c1").digest()


def test_calibration_batches_from_dataset_features():
    rng = np.random.default_rng(0)
    S = 50
    samples = {"ego": rng.normal(size=(S, 9)), "agents": rng.normal(size=(S, 4, 3)),
               "ego_future": rng.normal(size=(S, 6, 3)), "speed": rng.normal(size=S)}
    shapes = {"ego": (8, 9), "agents": (8, 4, 3), "ego_plan": (8, 6, 3)}
    batches = ec.calibration_batches(samples, shapes, max_batches=4, aliases={"ego_plan": "ego_future"})
    assert len(batches) == 4
    for b in batches:
        assert {k: v.shape for k, v in b.items()} == shapes
        assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in b.values())
    rows = np.concatenate([b["ego"] for b in batches])
    assert len({r.tobytes() for r in rows}) == 32  # drawn without replacement
    assert ec.calibration_batches(samples, shapes, 4, aliases={"ego_plan": "ego_future"})[0]["ego"].tobytes() \
        == batches[0]["ego"].tobytes()  # seeded
    assert len(ec.calibration_batches(samples, shapes, 100, aliases={"ego_plan": "ego_future"})) == 6  # 50 // 8
    fp = ec.calibration_fingerprint(batches)
    assert fp == ec.calibration_fingerprint(batches) and len(fp) == 16
    assert fp != ec.calibration_fingerprint(batches[:3])
    with pytest.raises(ValueError, match="no 'ego_plan'"):
        ec.calibration_batches(samples, shapes)
    with pytest.raises(ValueError, match="rows have shape"):
        ec.calibration_batches(samples, {"ego": (8, 7)})
    with pytest.raises(ValueError, match="fewer than one batch"):
        ec.calibration_batches({"ego": samples["ego"][:5]}, {"ego": (8, 9)})


def test_onnx_input_shapes_of_the_committed_planner():
    shapes = ec.onnx_input_shapes(ROOT / "models" / "perlad" / "planner.onnx")
    man = json.loads((ROOT / "models" / "perlad" / "planner.manifest.json").read_text())
    assert {k: list(v) for k, v in shapes.items()} == {k: list(v) for k, v in man["inputs"].items()}


# ---------------------------------------------------------------- the real entry (build_cached_engine) and CLI
@pytest.fixture
def fake_tensorrt(monkeypatch):
    """A `tensorrt` module and a GPU that are not there: TensorRT's Runtime deserializes the fake engines, the
    builder is FakeBuilder (build_engine_tensorrt is replaced)."""
    fb = FakeBuilder()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"

    class Logger:
        WARNING = 2

        def __init__(self, *a):
            pass

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return fb.load(blob)

    trt.Logger, trt.Runtime = Logger, Runtime
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr("drivesim.models.runtime.nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(ec, "gpu_name", lambda device=0: "NVIDIA H200")

    def build(onnx_bytes, precision, calibration=None, calib_cache=None, **kw):
        fb.onnx = onnx_bytes
        return fb.build()

    monkeypatch.setattr(ec, "build_engine_tensorrt", build)
    return fb


def test_build_cached_engine_keys_by_the_file_and_the_environment(tmp_path, fake_tensorrt):
    onnx = tmp_path / "planner.onnx"
    onnx.write_bytes(ONNX_A)
    r1 = ec.build_cached_engine(onnx, tmp_path / "trt", "fp16")
    r2 = ec.build_cached_engine(onnx, tmp_path / "trt", "fp16")
    assert (r1.action, r2.action, fake_tensorrt.builds) == ("built", "loaded", 1)
    assert r1.path == EngineCache(tmp_path / "trt").paths("planner", key())[0]
    assert json.loads(r1.path.with_suffix(".json").read_text())["onnx"] == str(onnx)
    sys.modules["tensorrt"].__version__ = "10.8.0"  # an upgraded TensorRT in a new image
    assert ec.build_cached_engine(onnx, tmp_path / "trt", "fp16").action == "rebuilt"


def test_export_tensorrt_cli_builds_then_loads(tmp_path, fake_tensorrt, capsys):
    from drivesim.cli import main

    onnx = tmp_path / "planner.onnx"
    onnx.write_bytes(ONNX_A)
    argv = ["export", "--tensorrt", str(onnx), "--cache", str(tmp_path / "trt")]
    assert main(argv) == 0
    assert main(argv + ["--fp16"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[1].split()[0] for line in out if line.startswith(str(onnx))] == ["built", "loaded"]
    assert fake_tensorrt.builds == 1


def test_export_tensorrt_without_tensorrt_fails_in_one_line():
    """Here: no tensorrt package, no GPU. The real command, as a user types it."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    r = subprocess.run([sys.executable, "-m", "drivesim.cli", "export", "--tensorrt",
                        str(ROOT / "models" / "perlad" / "planner.onnx"), "--cache", "/nonexistent/trt"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drive-stack export: error: ") and "TensorRT" in lines[0]
    assert not Path("/nonexistent/trt").exists()


def test_export_tensorrt_without_a_gpu_fails_in_one_line(monkeypatch, capsys):
    from drivesim.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr("drivesim.models.runtime.nvidia_gpu_present", lambda: False)
    assert main(["export", "--tensorrt", str(ROOT / "models" / "perlad" / "planner.onnx")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no NVIDIA GPU" in err[0]


@pytest.mark.parametrize("argv,says", [(["--int8"], "--int8 needs --calib"), (["--calib", "x"], "--int8 needs"),
                                       ([], None)])
def test_export_tensorrt_usage_errors(argv, says, capsys, tmp_path):
    from drivesim.cli import main

    if says is None:  # a missing ONNX file is named
        assert main(["export", "--tensorrt", str(tmp_path / "nope.onnx")]) == 2
        assert "nope.onnx: no such ONNX file" in capsys.readouterr().err
        return
    assert main(["export", "--tensorrt", str(ROOT / "models" / "perlad" / "planner.onnx"), *argv]) == 2
    assert says in capsys.readouterr().err


# ---------------------------------------------------------------- the containers' entrypoint
def _stub(bin_dir: Path, name: str, body: str) -> None:
    p = bin_dir / name
    p.write_text("#!/usr/bin/env bash\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


def run_entrypoint(tmp_path, args, export_rc=0, env=None):
    """docker/entrypoint.sh with `drive-stack` and `ros2` stubbed: what it exports, then what it launches."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(parents=True, exist_ok=True)
    _stub(bin_dir, "drive-stack", f'echo "drive-stack $*" >> {log}\nexit {export_rc}\n')
    _stub(bin_dir, "ros2", f'echo "ros2 $*" >> {log}\n')
    (tmp_path / "ros_setup.bash").write_text("export FROM_ROS_SETUP=1\n")
    models = tmp_path / "models"
    for m in ("perlad", "il"):
        (models / m).mkdir(parents=True, exist_ok=True)
        (models / m / "planner.onnx").write_bytes(b"x")
    e = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ROS_SETUP": str(tmp_path / "ros_setup.bash"),
         "DRIVE_STACK_WS": str(tmp_path / "no_ws"), "DRIVE_STACK_MODELS": str(models),
         "DRIVE_STACK_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path), **(env or {})}
    r = subprocess.run(["bash", str(ROOT / "docker" / "entrypoint.sh"), *args], env=e, capture_output=True,
                       text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return r, calls


def test_entrypoint_builds_the_policys_engine_then_launches(tmp_path):
    r, calls = run_entrypoint(tmp_path, ["policy:=perlad", "sim:=carla"])
    assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache" / "trt"
    assert calls == [f"drive-stack export --tensorrt {tmp_path}/models/perlad/planner.onnx --cache {cache} --fp16",
                     "ros2 launch drive_stack bench2drive.launch.py policy:=perlad sim:=carla"]


def test_entrypoint_without_a_learned_policy_builds_nothing(tmp_path):
    r, calls = run_entrypoint(tmp_path, ["policy:=rule"])
    assert r.returncode == 0, r.stderr
    assert calls == ["ros2 launch drive_stack bench2drive.launch.py policy:=rule"]


def test_entrypoint_falls_back_when_tensorrt_cannot_run_unless_required(tmp_path):
    r, calls = run_entrypoint(tmp_path, ["policy:=il"], export_rc=3)
    assert r.returncode == 0 and "ONNX Runtime" in r.stderr
    assert calls[-1] == "ros2 launch drive_stack bench2drive.launch.py policy:=il"
    r, calls = run_entrypoint(tmp_path / "req", ["policy:=il"], export_rc=3, env={"DRIVE_STACK_TRT": "required"})
    assert r.returncode == 3 and not any(c.startswith("ros2") for c in calls)


def test_entrypoint_stops_when_an_engine_build_fails(tmp_path):
    r, calls = run_entrypoint(tmp_path, ["policy:=perlad"], export_rc=1)
    assert r.returncode == 1 and not any(c.startswith("ros2") for c in calls)


# ---------------------------------------------------------------- images and Compose files, offline
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
COMPOSE_FILES = sorted(DOCKER.glob("compose.*.yaml"))


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, cur = [], ""
    for line in path.read_text().splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        cur += (" " if cur else "") + s.rstrip("\\").strip()
        if not s.endswith("\\"):
            word, _, rest = cur.partition(" ")
            out.append((word.upper(), rest))
            cur = ""
    return out


def dockerignored(rel: str) -> bool:
    import fnmatch

    pats = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    for p in pats:
        p = p.lstrip("/")
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, p) or (p.startswith("**/") and fnmatch.fnmatch(parts[i - 1], p[3:])):
                return True
    return False


def test_the_four_images_exist():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.carla-eval", "Dockerfile.cpu", "Dockerfile.gpu",
                                             "Dockerfile.jetson"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_conventions(dockerfile):
    """Multi-stage, a non-root numeric USER in the final stage, a HEALTHCHECK, OCI labels (the vehicle images also
    the committed models' sha256, checked in the build by models.sh), every COPY source in the build context and
    not dockerignored, and every `hadolint ignore` with its reason."""
    ins = dockerfile_instructions(dockerfile)
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    final = ins[froms[-1]:]
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert any(w == "HEALTHCHECK" for w, _ in final)
    labels = " ".join(a for w, a in final if w == "LABEL")
    for k in ("org.opencontainers.image.title", "org.opencontainers.image.version", "org.opencontainers.image.revision",
              "org.opencontainers.image.licenses"):
        assert k in labels
    if dockerfile.name != "Dockerfile.carla-eval":
        for m in ("il", "perlad", "perlad_logreplay", "takead", "world_model"):
            assert f'io.drive-stack.model.{m}.sha256="${{MODEL_SHA256_{m.upper()}}}"' in labels
        assert any(w == "RUN" and "models.sh verify" in a for w, a in final)
    for w, a in ins:
        if w != "COPY" or "--from=" in a:
            continue
        srcs = [s for s in a.split() if not s.startswith("--")][:-1]
        for s in srcs:
            assert (ROOT / s).exists(), f"{dockerfile.name}: COPY {s}: not in the build context"
            assert not dockerignored(s.rstrip("/")), f"{dockerfile.name}: COPY {s}: excluded by .dockerignore"
    text = dockerfile.read_text()
    comments = [line for line in text.splitlines() if line.strip().startswith("#") and "hadolint ignore" not in line]
    for line in text.splitlines():
        if "hadolint ignore=" in line:
            for code in line.split("=", 1)[1].split(","):
                assert any(code.strip() in c for c in comments), f"{dockerfile.name}: {code} ignored without a reason"


def test_the_gpu_image_never_builds_the_compat_messages():
    """colcon in the vehicle images sees ros2_ws/src (and the bridge's carla_msgs), never ros2_ws/compat."""
    for name in ("Dockerfile.gpu", "Dockerfile.jetson"):
        ins = dockerfile_instructions(DOCKER / name)
        assert not any("compat" in a for w, a in ins if w in ("COPY", "ADD"))
        assert any(w == "ARG" and a.startswith("CARLA_ROS_BRIDGE_REF=") and len(a.split("=")[1]) == 40 for w, a in ins)


def load_compose(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose_validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_specification(path, compose_validator):
    errors = sorted(compose_validator.iter_errors(load_compose(path)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_can_fail(compose_validator):
    doc = load_compose(DOCKER / "compose.carla.yaml")
    doc["services"]["stack"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] = "gpu"
    doc["services"]["stack"]["gpu_count"] = 1
    msgs = [e.message for e in compose_validator.iter_errors(doc)]
    assert any("'gpu' is not of type 'array'" in m for m in msgs) and any("gpu_count" in m for m in msgs)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_services_builds_volumes_and_networks(path):
    doc = load_compose(path)
    services = doc["services"]
    declared_vols, declared_nets = set(doc.get("volumes") or {}), set(doc.get("networks") or {})
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            ctx = (path.parent / svc["build"]["context"]).resolve()
            assert ctx.is_dir(), f"{name}: build context {ctx}"
            assert (ctx / svc["build"]["dockerfile"]).is_file(), f"{name}: {svc['build']['dockerfile']}"
            args = svc["build"].get("args", {})
            df = (ctx / svc["build"]["dockerfile"]).read_text()
            for a in args:
                assert f"ARG {a}" in df, f"{name}: build arg {a} is not an ARG of its Dockerfile"
        for v in svc.get("volumes", []):
            if isinstance(v, str):
                src = v.split(":")[0]
                if not src.startswith((".", "/", "$", "~")):
                    assert src in declared_vols, f"{name}: volume {src} is not declared"
            elif v.get("type", "volume") == "volume":
                assert v["source"] in declared_vols, f"{name}: volume {v['source']} is not declared"
        for n in svc.get("networks", []):
            assert n in declared_nets, f"{name}: network {n} is not declared"
        for d in svc.get("depends_on", {}):
            assert d in services, f"{name}: depends on unknown {d}"
    used = {v.split(":")[0] if isinstance(v, str) else v.get("source") for s in services.values()
            for v in s.get("volumes", [])}
    assert declared_vols <= used, f"declared but unused volumes: {declared_vols - used}"


def gpu_reservations(svc: dict) -> list[dict]:
    return [d for d in svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
            if "gpu" in d.get("capabilities", [])]


def test_carla_compose_runs_carla_0915_the_evaluator_and_the_stack_on_gpus():
    doc = load_compose(DOCKER / "compose.carla.yaml")
    s = doc["services"]
    assert set(s) == {"carla", "evaluator", "stack"}
    assert s["carla"]["image"] == "carlasim/carla:0.9.15"
    for name in ("carla", "stack"):
        (dev,) = gpu_reservations(s[name])
        assert dev["driver"] == "nvidia" and (dev.get("count") == "all" or isinstance(dev.get("count"), int))
    assert s["evaluator"]["depends_on"]["carla"]["condition"] == "service_healthy"
    assert s["stack"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    mounts = {(v.split(":")[1] if isinstance(v, str) else v["target"]) for v in s["stack"]["volumes"]}
    assert {"/var/cache/drive-stack", "/var/lib/drive-stack/results/stack/bags"} <= mounts
    assert {"engine-cache", "takeover-bags", "results"} <= set(doc["volumes"])
    evaluator_df = (ROOT / "docker" / "Dockerfile.carla-eval").read_text()
    assert "carla==0.9.15" in evaluator_df and "ros:humble" in evaluator_df


def test_embedded_compose_is_the_cpu_demo_without_carla_or_gpu():
    doc = load_compose(DOCKER / "compose.embedded.yaml")
    (svc,) = doc["services"].values()
    assert svc["build"]["dockerfile"] == "docker/Dockerfile.cpu" and svc["command"][0] == "demo"
    assert not gpu_reservations(svc) and "carla" not in json.dumps(doc).lower()


# ---------------------------------------------------------------- the scripts the images run
def test_models_sh_labels_are_the_committed_files(tmp_path):
    args = subprocess.run(["bash", str(DOCKER / "models.sh"), "env"], capture_output=True, text=True, check=True)
    env = dict(line.split("=", 1) for line in args.stdout.split())
    for m in ("il", "perlad", "perlad_logreplay", "takead"):
        assert env[f"MODEL_SHA256_{m.upper()}"] == ec.sha256_bytes((ROOT / "models" / m / "planner.onnx").read_bytes())
    ok = subprocess.run(["bash", str(DOCKER / "models.sh"), "verify", str(ROOT / "models")],
                        env={**os.environ, **env}, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["bash", str(DOCKER / "models.sh"), "verify", str(ROOT / "models")],
                         env={**os.environ, **env, "MODEL_SHA256_PERLAD": "0" * 64}, capture_output=True, text=True)
    assert bad.returncode == 1 and "perlad/planner.onnx" in bad.stderr
    unset = {k: v for k, v in env.items() if k != "MODEL_SHA256_IL"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_SHA256_")}
    r = subprocess.run(["bash", str(DOCKER / "models.sh"), "verify", str(ROOT / "models")],
                       env={**base, **unset}, capture_output=True, text=True)
    assert r.returncode == 1 and "MODEL_SHA256_IL is not set" in r.stderr


def test_healthcheck_sees_a_missing_node(tmp_path):
    proc = tmp_path / "proc"
    nodes = ["perception_input", "planner", "vla_reasoning", "takeover_monitor", "recorder"]
    for pid, n in enumerate(nodes, start=100):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(f"/opt/venv/bin/python\0/ws/install/lib/drive_stack/{n}\0"
                                                  "--ros-args\0".encode())

    def check():
        return subprocess.run(["bash", str(DOCKER / "healthcheck.sh"), "nodes"], capture_output=True, text=True,
                              env={**os.environ, "HEALTH_PROC": str(proc)})

    assert check().returncode == 0
    (proc / "101" / "cmdline").write_bytes(b"/ws/install/lib/drive_stack/planner_helper\0")  # not the planner
    r = check()
    assert r.returncode == 1 and "planner is not running" in r.stdout


def test_the_leaderboard_side_watcher_waits_then_sees_a_silent_node():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "watch", DOCKER / "carla" / "drive_stack_remote" / "drive_stack_remote" / "watch.py")
    watch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(watch)
    heard = {n: 100.0 for n in watch.EXPECTED[:-1]}
    assert watch.silent_nodes(heard, 1000.0) == []  # not all up yet (engines building): wait
    heard[watch.EXPECTED[-1]] = 100.0
    assert watch.silent_nodes(heard, 104.0) == []
    heard.update({n: 104.0 for n in watch.EXPECTED if n != "planner"})
    assert watch.silent_nodes(heard, 106.0) == ["planner"]


def test_distro_installs_carry_the_ros_extras_non_ros_packages():
    """Where ROS comes from a distro and the stack runs (the bare-metal Bench2Drive recipe of the README, the GPU and
    Jetson images: a ROS base image and the ros2_ws packages),
    the `ros` extra cannot be installed (its ros-* wheels would shadow the distro's), so its other packages
    (rosbags, mcap: the recorder imports them at start) must be installed by name, with the extra's pins."""
    import re

    import tomllib

    root = Path(__file__).resolve().parents[1]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ros"]
    own = [r for r in extra if not re.match(r"(ros-|catkin-pkg)", r)]
    assert {re.split(r"[<>=\[]", r)[0] for r in own} == {"rosbags", "mcap"}
    readme = (root / "README.md").read_text()
    recipe = readme[readme.index("### With Bench2Drive's leaderboard"):readme.index("### The stack")]
    for where, text in [("README recipe", recipe), *((f.name, f.read_text()) for f in
                                                     (root / "docker").glob("Dockerfile.*")
                                                     if "/opt/ros/" in f.read_text() and "ros2_ws" in f.read_text())]:
        for r in own:
            assert f'"{r}"' in text, f"{where} does not install {r} (the ros extra's pin)"
