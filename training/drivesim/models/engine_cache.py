"""TensorRT engine cache: which engine file may be used, built and written, without TensorRT in the picture.

An engine is valid only for the ONNX file, the GPU, the TensorRT version and the precision it was built with
(and, for INT8, the calibration data). `EngineKey` holds exactly those; `EngineCache` keeps one engine per key
under its root:

    <root>/<name>-<digest>.engine   the serialized engine, exactly as TensorRT wrote it
    <root>/<name>-<digest>.json     its metadata: FORMAT, the key's fields, size [bytes] and sha256 of the engine

`EngineCache.get_or_build(name, key, build, load)` returns a usable engine: it loads the entry when the metadata
matches the key and the file has the recorded size and sha256 and `load` (deserialization) accepts it;
otherwise it calls `build`, writes the engine and then its metadata, each to a temporary file renamed into
place (a reader never sees half a file; a crash between the two leaves an engine without metadata, which is
rebuilt), and loads that. A corrupt entry (truncated, other bytes, unreadable metadata, rejected by `load`) is
never used: it is rebuilt and a `EngineCacheWarning` says why. A stale entry (another ONNX hash, GPU,
TensorRT version or precision) has another digest, so it is not even looked at; if its file were renamed onto
this key's name, the key fields in its metadata would still refuse it. Entries of other keys are left alone
(one cache volume may serve several GPUs).

`build` and `load` are injected: the runtime and `drive-stack export --tensorrt` pass TensorRT's builder and
`deserialize_cuda_engine` (`build_engine_tensorrt`, below), the tests pass fakes. TensorRT is imported only
inside the functions that need it. Concurrent starts on one cache (two containers sharing a volume) build a
key once: the build runs under an exclusive lock file per key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "drive-stack-trt-engine/1"  # the metadata's format tag: anything else is not our metadata
PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_BYTES = 1 << 30  # TensorRT builder workspace pool [bytes]


class EngineCacheWarning(UserWarning):
    """An engine cache entry was unusable (corrupt or inconsistent) and is rebuilt."""


class TensorRTUnavailable(RuntimeError):
    """TensorRT or an NVIDIA GPU is missing: the message is one line saying which and what to do."""


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str  # sha256 of the ONNX file's bytes
    gpu: str  # the GPU's name as CUDA reports it, e.g. "NVIDIA H200", "Orin (nvgpu)"
    trt_version: str  # tensorrt.__version__, e.g. "10.3.0"
    precision: str  # fp32 | fp16 | int8
    calibration: str = ""  # int8 only: a fingerprint of the calibration batches ("" otherwise)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if (self.precision == "int8") != bool(self.calibration):
            raise ValueError("calibration: a fingerprint is required for int8 and only for int8")
        for f in ("onnx_sha256", "gpu", "trt_version"):
            if not getattr(self, f):
                raise ValueError(f"{f}: empty")

    def digest(self) -> str:
        """24 hex digits over every field: the file name part of this key."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """The fields on which a metadata record differs from this key, as 'field: theirs -> ours'."""
        return [f"{f.name}: {other.get(f.name)!r} -> {getattr(self, f.name)!r}" for f in fields(self)
                if other.get(f.name) != getattr(self, f.name)]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def engine_key(onnx_bytes: bytes, gpu: str, trt_version: str, precision: str, calibration: str = "") -> EngineKey:
    return EngineKey(sha256_bytes(onnx_bytes), gpu, trt_version, precision, calibration)


@dataclass
class EngineResult:
    engine: Any  # what `load` returned (a tensorrt.ICudaEngine on the real path)
    blob: bytes  # the serialized engine
    path: Path  # the engine file
    action: str  # "loaded" (a valid entry), "built" (there was none), "rebuilt" (there was an unusable one)
    reason: str  # why it was built or rebuilt ("" when loaded)


class EngineCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def paths(self, name: str, key: EngineKey) -> tuple[Path, Path]:
        stem = f"{name}-{key.digest()}"
        return self.root / f"{stem}.engine", self.root / f"{stem}.json"

    def check(self, name: str, key: EngineKey) -> tuple[bytes | None, str]:
        """(engine bytes, "") when the entry of `key` is there and intact; (None, why not) otherwise. Pure: reads
        files, changes nothing, never deserializes (that is `load`'s part in `get_or_build`)."""
        eng, meta_path = self.paths(name, key)
        if not eng.exists() and not meta_path.exists():
            return None, "no entry"
        if not meta_path.exists():
            return None, f"{eng.name}: no metadata beside it (an interrupted write?)"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            return None, f"{meta_path.name}: unreadable metadata ({e})"
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            return None, f"{meta_path.name}: format {got!r}, expected {FORMAT!r}"
        diff = key.differences(meta.get("key", {}))
        if diff:
            return None, f"{meta_path.name}: built for another key ({'; '.join(diff)})"
        if not eng.exists():
            return None, f"{eng.name}: missing (metadata without engine)"
        blob = eng.read_bytes()
        if len(blob) != meta.get("size"):
            return None, f"{eng.name}: {len(blob)} bytes, {meta.get('size')} recorded (truncated or overwritten)"
        if sha256_bytes(blob) != meta.get("sha256"):
            return None, f"{eng.name}: sha256 differs from the recorded one (corrupt)"
        return blob, ""

    def stale(self, name: str, key: EngineKey) -> list[str]:
        """Entries of model `name` for other keys (another ONNX, GPU, TensorRT version or precision), each as
        'file: field: theirs -> ours; ...'. They are never used for `key`, and left in place."""
        own = self.paths(name, key)[1]
        out = []
        for meta_path in sorted(self.root.glob(f"{name}-*.json")):
            if meta_path == own or meta_path.stem.rsplit("-", 1)[0] != name:
                continue
            try:
                meta = json.loads(meta_path.read_text())
                diff = key.differences(meta.get("key", {}))
            except (OSError, ValueError, AttributeError):
                diff = ["unreadable metadata"]
            out.append(f"{meta_path.name}: {'; '.join(diff)}")
        return out

    def write(self, name: str, key: EngineKey, blob: bytes, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the engine, then its metadata, each atomically (temporary file in the same folder, fsync,
        rename). Returns the engine's path."""
        if not blob:
            raise ValueError("an empty engine is not written")
        eng, meta_path = self.paths(name, key)
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "name": name, "key": asdict(key), "size": len(blob), "sha256": sha256_bytes(blob),
                **(dict(extra) if extra else {})}
        _atomic_write(eng, blob)
        _atomic_write(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        return eng

    def get_or_build(self, name: str, key: EngineKey, build: Callable[[], bytes],
                     load: Callable[[bytes], Any] | None = None, extra: Mapping[str, Any] | None = None,
                     log: Callable[[str], None] | None = None) -> EngineResult:
        """The engine of `key`: the cached one when intact and `load` accepts it, else built, written and loaded.
        `load(blob)` returns the deserialized engine, or None / raises when it cannot (then the entry is
        rebuilt); without `load` the bytes are returned as they are. `build()` returns the serialized engine."""
        load = load or (lambda b: b)
        eng, _ = self.paths(name, key)
        self.root.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.root / f"{eng.stem}.lock"):
            blob, reason = self.check(name, key)
            if blob is not None:
                try:
                    engine = load(blob)
                except Exception as e:  # noqa: BLE001 - any deserialization failure means: rebuild
                    engine, reason = None, f"{eng.name}: deserialization failed ({type(e).__name__}: {e})"
                if engine is not None:
                    return EngineResult(engine, blob, eng, "loaded", "")
                reason = reason or f"{eng.name}: deserialization failed (the runtime returned no engine)"
            if reason == "no entry":
                stale = self.stale(name, key)
                action = "rebuilt" if stale else "built"
                reason = (f"no entry for this key; stale entries not used: {' | '.join(stale)}" if stale
                          else "no entry")
            else:  # an entry of this key that cannot be used: corrupt
                action = "rebuilt"
                warnings.warn(f"TensorRT engine cache: {reason}; rebuilding", EngineCacheWarning, stacklevel=2)
            if log:
                log(f"{name}: building the TensorRT engine ({key.precision}, {key.gpu}, TensorRT {key.trt_version})"
                    + ("" if action == "built" else f": {reason}"))
            blob = bytes(build())
            path = self.write(name, key, blob, extra)
            engine = load(blob)
            if engine is None:
                raise TensorRTUnavailable(f"{path}: the engine just built does not deserialize")
            return EngineResult(engine, blob, path, action, reason)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, the atomic renames still keep files whole
        yield
        return
    with open(lock_path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ INT8 calibration
def calibration_batches(samples: Mapping[str, np.ndarray], input_shapes: Mapping[str, tuple[int, ...]],
                        max_batches: int = 32, seed: int = 0,
                        aliases: Mapping[str, str] | None = None) -> list[dict[str, np.ndarray]]:
    """Calibration feeds for a static-shape engine: up to `max_batches` batches of the engine's batch size B,
    drawn without replacement (seeded) from the rows of `samples` (features of a collected dataset,
    `learn.data.build_samples`). `aliases` maps an engine input to the sample key that holds it (the world
    model's `ego_plan` is the logged `ego_future`). Every input must be there with the per-row shape the engine
    takes; float32, C-contiguous."""
    aliases = dict(aliases or {})
    if not input_shapes:
        raise ValueError("the engine has no inputs")
    batch = {int(s[0]) for s in input_shapes.values()}
    if len(batch) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sorted(batch)}")
    B = batch.pop()
    rows = None
    for name, shape in input_shapes.items():
        src = aliases.get(name, name)
        if src not in samples:
            raise ValueError(f"calibration data has no {src!r} for input {name!r} (has: {', '.join(sorted(samples))})")
        arr = samples[src]
        if tuple(arr.shape[1:]) != tuple(shape[1:]):
            raise ValueError(f"calibration {src!r} rows have shape {tuple(arr.shape[1:])}, input {name!r} takes "
                             f"{tuple(shape[1:])} (features built with another FeatureConfig?)")
        rows = len(arr) if rows is None else min(rows, len(arr))
    n = min(max_batches, rows // B)
    if n < 1:
        raise ValueError(f"calibration data has {rows} rows, fewer than one batch of {B}")
    order = np.random.default_rng(seed).permutation(rows)[: n * B].reshape(n, B)
    return [{name: np.ascontiguousarray(samples[aliases.get(name, name)][idx], np.float32) for name in input_shapes}
            for idx in order]


def calibration_fingerprint(batches: list[Mapping[str, np.ndarray]]) -> str:
    """16 hex digits over the calibration batches' names, shapes and bytes: part of an INT8 engine's key."""
    h = hashlib.sha256()
    for b in batches:
        for k in sorted(b):
            h.update(k.encode())
            h.update(repr(b[k].shape).encode())
            h.update(np.ascontiguousarray(b[k], np.float32).tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ TensorRT (GPU only)
def tensorrt_environment() -> tuple[Any, str, str]:
    """(the tensorrt module, GPU name, TensorRT version), or TensorRTUnavailable with a one-line reason."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(f"TensorRT is not installed ({e.__class__.__name__}: {e}); install the `gpu` "
                                  "extra (tensorrt-cu12) or run in the GPU/Jetson image") from None
    from .runtime import nvidia_gpu_present

    if not nvidia_gpu_present():
        raise TensorRTUnavailable("no NVIDIA GPU found (/dev/nvidiactl, /proc/driver/nvidia/version); TensorRT "
                                  "engines are built on the GPU that runs them")
    return trt, gpu_name(), str(trt.__version__)


def gpu_name(device: int = 0) -> str:  # pragma: no cover - needs an NVIDIA GPU
    """CUDA's name of the GPU (torch when it has CUDA, else nvidia-smi, else the Jetson model file)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(device)
    except ImportError:
        pass
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", str(device)],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip()
        if out:
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    model = Path("/proc/device-tree/model")  # Jetson: no nvidia-smi; the board names the GPU
    if model.exists():
        return model.read_text().strip("\x00\n ")
    raise TensorRTUnavailable("cannot tell the GPU's name (no CUDA torch, no nvidia-smi, no Jetson model file)")


def build_engine_tensorrt(onnx_bytes: bytes, precision: str, calibration: list[dict[str, np.ndarray]] | None = None,
                          calib_cache: Path | None = None, workspace: int = WORKSPACE_BYTES,
                          log_severity: str = "WARNING") -> bytes:  # pragma: no cover - needs TensorRT and a GPU
    """Serialize an engine from ONNX with the TensorRT 10 API (explicit batch is the only mode: network flags 0).
    fp16: FP16 kernels allowed. int8: INT8 with FP16 fallback, calibrated by IInt8EntropyCalibrator2 on
    `calibration` batches (implicit quantization: TensorRT 10 still runs it but deprecates it in favour of
    explicit Q/DQ nodes in the ONNX, which this project does not export yet). Untested here: no GPU."""
    trt, _, _ = tensorrt_environment()
    logger = trt.Logger(getattr(trt.Logger, log_severity))
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTUnavailable(f"TensorRT could not parse the ONNX file: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if precision == "int8":
        if not calibration:
            raise TensorRTUnavailable("int8 needs calibration batches (--calib DATASET)")
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = make_entropy_calibrator(trt, calibration, calib_cache)
        config.int8_calibrator = calibrator
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise TensorRTUnavailable("TensorRT engine build failed (see the TensorRT log above)")
    return bytes(blob)


def make_entropy_calibrator(trt, batches: list[dict[str, np.ndarray]],
                            cache_file: Path | None = None):  # pragma: no cover - needs TensorRT and a GPU
    """An IInt8EntropyCalibrator2 over `batches` (feeds by input name), device buffers in CUDA torch tensors as
    the runtime keeps them. The calibration table is written to `cache_file` (and read back from it, so a
    rebuild of the same key skips the calibration pass). Untested here: no GPU."""

    import torch

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # pragma: no cover - needs TensorRT and a GPU
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = iter(batches)
            first = batches[0]
            self.batch_size = int(next(iter(first.values())).shape[0])
            self.device = {k: torch.empty(v.shape, dtype=torch.float32, device="cuda") for k, v in first.items()}

        def get_batch_size(self):
            return self.batch_size

        def get_batch(self, names):
            try:
                feed = next(self.batches)
            except StopIteration:
                return None
            for k in names:
                self.device[k].copy_(torch.from_numpy(feed[k]))
            torch.cuda.synchronize()
            return [int(self.device[k].data_ptr()) for k in names]

        def read_calibration_cache(self):
            if cache_file is not None and Path(cache_file).exists():
                return Path(cache_file).read_bytes()
            return None

        def write_calibration_cache(self, cache):
            if cache_file is not None:
                Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
                _atomic_write(Path(cache_file), bytes(cache))

    return _EntropyCalibrator()


def onnx_input_shapes(onnx_path: str | Path) -> dict[str, tuple[int, ...]]:
    """The static input shapes of an ONNX file (onnx's graph inputs minus initializers)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    out = {}
    for i in m.graph.input:
        if i.name in inits:
            continue
        dims = i.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            raise ValueError(f"{onnx_path}: input {i.name!r} has a dynamic dimension; engines here are static-shape")
        out[i.name] = tuple(int(d.dim_value) for d in dims)
    return out


def build_cached_engine(onnx_path: str | Path, cache_dir: str | Path, precision: str = "fp16",
                        calibration: list[dict[str, np.ndarray]] | None = None,
                        log: Callable[[str], None] | None = None) -> EngineResult:  # pragma: no cover - GPU
    """The TensorRT engine of an ONNX file from the cache at `cache_dir`, built if needed: what the runtime
    and `drive-stack export --tensorrt` call. Raises TensorRTUnavailable (one line) without TensorRT or a GPU."""
    trt, gpu, version = tensorrt_environment()
    onnx_path = Path(onnx_path)
    onnx_bytes = onnx_path.read_bytes()
    fp = calibration_fingerprint(calibration) if precision == "int8" and calibration else ""
    key = engine_key(onnx_bytes, gpu, version, precision, fp)
    cache = EngineCache(cache_dir)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    calib_cache = Path(cache_dir) / f"{onnx_path.stem}-{key.digest()}.calib" if precision == "int8" else None
    return cache.get_or_build(
        onnx_path.stem, key,
        build=lambda: build_engine_tensorrt(onnx_bytes, precision, calibration, calib_cache),
        load=runtime.deserialize_cuda_engine,
        extra={"onnx": str(onnx_path)}, log=log)
