"""The inference runtime: one ONNX model, the fastest backend this machine has, and it says which.

Order (`backend="auto"`): TensorRT where the `tensorrt` package and an NVIDIA GPU are present (an FP16 engine
built from the ONNX file, cached under DRIVE_STACK_CACHE/trt by ONNX sha256 + GPU name + TensorRT version +
precision: `engine_cache.py`, where the key, the validity checks and the atomic writes are, tested without a GPU);
else ONNX Runtime with CUDAExecutionProvider; else ONNX Runtime on the CPU. `backend=` forces one
("tensorrt", "ort-cuda", "ort-cpu") and fails with a clear message where it is missing.

TensorRT is imported only on the TensorRT path, after a GPU was found, so CPU machines never import it. Its
buffers live in torch CUDA tensors (the GPU container has CUDA torch); the code follows the TensorRT 10 API
(`set_tensor_address`, `execute_async_v3`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .engine_cache import TensorRTUnavailable, build_cached_engine

BACKENDS = ("tensorrt", "ort-cuda", "ort-cpu")


class BackendUnavailable(RuntimeError):
    pass


def nvidia_gpu_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def default_engine_cache() -> Path:
    """Where TensorRT engines are cached: $DRIVE_STACK_CACHE/trt (~/.cache/drive-stack/trt without it)."""
    return Path(os.environ.get("DRIVE_STACK_CACHE") or Path.home() / ".cache" / "drive-stack") / "trt"



class _OrtModel:
    def __init__(self, path: Path, cuda: bool, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self.sess = ort.InferenceSession(str(path), so, providers=providers)
        if cuda and "CUDAExecutionProvider" not in self.sess.get_providers():
            raise BackendUnavailable(f"{path}: ONNX Runtime did not take the CUDA provider")
        self.inputs = {i.name: tuple(i.shape) for i in self.sess.get_inputs()}
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.sess.run(self.outputs, feeds)))


class _TrtModel:  # pragma: no cover - needs an NVIDIA GPU and TensorRT (exercised when a GPU is lent)
    def __init__(self, path: Path, fp16: bool = True):
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("TensorRT needs CUDA buffers: install a CUDA build of torch")
        self.torch, self.trt = torch, trt
        try:
            res = build_cached_engine(path, default_engine_cache(), "fp16" if fp16 else "fp32", log=print)
        except TensorRTUnavailable as e:
            raise BackendUnavailable(f"{path}: {e}") from e
        engine = res.engine
        self.engine, self.cache = engine, res.path
        self.ctx = engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.inputs, self.outputs, self.buffers = {}, [], {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            buf = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.buffers[name] = buf
            self.ctx.set_tensor_address(name, buf.data_ptr())
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs[name] = shape
            else:
                self.outputs.append(name)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            for k, v in feeds.items():
                self.buffers[k].copy_(torch.from_numpy(np.ascontiguousarray(v, np.float32)), non_blocking=True)
            self.ctx.execute_async_v3(self.stream.cuda_stream)
            out = {k: self.buffers[k].cpu().numpy() for k in self.outputs}
        self.stream.synchronize()
        return out


class InferenceModel:
    """`model(inputs) -> outputs` (dicts of float32 arrays by name) on the chosen backend (`.backend`)."""

    def __init__(self, onnx_path: str | Path, backend: str = "auto", threads: int = 1, log=None):
        path = Path(onnx_path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such ONNX model; train and export one (`drive-stack train ...`) "
                                    "or point to a committed default under models/")
        if backend not in ("auto", *BACKENDS):
            raise ValueError(f"backend {backend!r}: use auto or one of {', '.join(BACKENDS)}")
        self.path, self.reasons = path, []
        self.manifest = self._manifest(path)
        self.impl, self.backend = None, None
        order = BACKENDS if backend == "auto" else (backend,)
        for b in order:
            try:
                self.impl = self._open(b, threads)
                self.backend = b
                break
            except (BackendUnavailable, ImportError, OSError) as e:
                self.reasons.append(f"{b}: {e}")
                if backend != "auto":
                    raise BackendUnavailable(f"{path}: backend {b} unavailable ({e})") from e
        if self.impl is None:
            raise BackendUnavailable(f"{path}: no backend: " + "; ".join(self.reasons))
        self.inputs = self.impl.inputs
        if log is not None:
            log(self.describe())

    @staticmethod
    def _manifest(path: Path) -> dict | None:
        m = path.with_name(path.stem + ".manifest.json")
        return json.loads(m.read_text()) if m.exists() else None

    def _open(self, backend: str, threads: int):
        if backend == "tensorrt":
            if not nvidia_gpu_present():
                raise BackendUnavailable("no NVIDIA GPU")
            return _TrtModel(self.path)
        if backend == "ort-cuda":
            if not nvidia_gpu_present():
                raise BackendUnavailable("no NVIDIA GPU")
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
            return _OrtModel(self.path, True, threads)
        return _OrtModel(self.path, False, threads)

    def describe(self) -> str:
        skipped = f" (skipped: {'; '.join(self.reasons)})" if self.reasons else ""
        return f"{self.path.name}: backend {self.backend}{skipped}"

    def check_inputs(self, feeds: dict[str, np.ndarray]) -> None:
        for k, shp in self.inputs.items():
            if k not in feeds:
                raise ValueError(f"{self.path}: input {k!r} missing")
            if tuple(feeds[k].shape) != tuple(shp):
                raise ValueError(f"{self.path}: input {k!r} has shape {tuple(feeds[k].shape)}, the model takes {tuple(shp)} "
                                 "(features built with another FeatureConfig, or a model exported for another batch)")

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_inputs(feeds)
        return self.impl({k: np.asarray(feeds[k], np.float32) for k in self.inputs})

    def warmup(self, calls: int = 3) -> None:
        """Run a few calls on zeros, so the first real call is not the slow one (allocation, engine load):
        a deployed node does this before it reports ready, or its first tick misses the deadline."""
        zeros = {k: np.zeros(shp, np.float32) for k, shp in self.inputs.items()}
        for _ in range(calls):
            self.impl(zeros)
