"""The exported model: locating it, its metadata, and the runtimes that execute it.

A model is a folder ``models/<version>/`` holding ``model.onnx`` (plus ``metrics.json``,
``MODEL_CARD.md``, ``weights.pt``), or a path to an ``.onnx`` file. Ultralytics'
exporter writes the class names, input size and stride into the ONNX metadata; they
are read from there. Two backends run the same ``model.onnx``:

- ``onnxruntime``: ONNX Runtime's CPU execution provider (portable).
- ``openvino``: the OpenVINO runtime (``pip install openvino``), fastest on Intel and
  recent AMD CPUs; ``precision="bf16"`` uses bfloat16 where the CPU has it
  (AVX512-BF16 or AMX), else OpenVINO falls back to f32.
- ``auto`` (the default, :func:`choose_backend`): OpenVINO bf16 where the CPU has bf16
  units, else ONNX Runtime on the INT8 model where it is faster and within the accuracy
  budget, else ONNX Runtime fp32.

Both expose ``run(x: (B, 3, H, W) float32) -> np.ndarray`` with the raw model output.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "current"
BACKENDS = ("auto", "onnxruntime", "openvino")
INT8_FILE = "model_int8.onnx"
_ORT_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, or not a YOLO detection export."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path  # the .onnx file
    version: str  # model folder name (symlinks resolved), or the file stem
    sha256: str
    names: tuple[str, ...]
    imgsz: tuple[int, int]  # (H, W) the model was exported for
    stride: int
    dynamic_batch: bool
    dynamic_hw: bool
    end2end: bool
    input_name: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "version": self.version,
            "sha256": self.sha256,
            "names": list(self.names),
            "imgsz": list(self.imgsz),
            "stride": self.stride,
            "dynamic_batch": self.dynamic_batch,
            "dynamic_hw": self.dynamic_hw,
            "end2end": self.end2end,
        }


def resolve_model_path(model: str | os.PathLike | None = None) -> Path:
    """A model folder or ``.onnx`` path -> the ``.onnx`` file. ``None``: ``$PVWIND_MODEL`` or ``models/current``."""
    if model is None:
        model = os.environ.get("PVWIND_MODEL") or DEFAULT_MODEL_DIR
    p = Path(model)
    if p.is_dir():
        onnx = p / "model.onnx"
        if not onnx.is_file():
            raise ModelLoadError(f"model folder {p} has no model.onnx")
        return onnx.resolve()
    if p.is_file():
        if p.suffix.lower() != ".onnx":
            raise ModelLoadError(f"{p} is not an .onnx file (export the model to ONNX first)")
        return p.resolve()
    raise ModelLoadError(f"model not found: {p}")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_metadata(meta: dict[str, str], input_shape: list[Any], input_name: str, path: Path) -> ModelInfo:
    """Build :class:`ModelInfo` from ONNX ``metadata_props`` and the input's declared shape."""
    task = meta.get("task", "detect")
    if task != "detect":
        raise ModelLoadError(f"{path}: task is {task!r}, expected a 'detect' model")
    names_raw = meta.get("names")
    if not names_raw:
        raise ModelLoadError(f"{path}: no class names in the ONNX metadata (export it with Ultralytics)")
    try:
        names_obj = ast.literal_eval(names_raw)
    except (ValueError, SyntaxError):
        try:
            names_obj = json.loads(names_raw)
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{path}: cannot parse class names {names_raw[:80]!r}") from e
    if isinstance(names_obj, dict):
        names = tuple(str(names_obj[k]) for k in sorted(names_obj, key=int))
    else:
        names = tuple(str(n) for n in names_obj)
    if len(input_shape) != 4:
        raise ModelLoadError(f"{path}: expected a 4-D image input, got shape {input_shape}")
    dims_static = [isinstance(d, int) and d > 0 for d in input_shape]
    imgsz_meta = meta.get("imgsz")
    if imgsz_meta:
        v = ast.literal_eval(imgsz_meta)
        imgsz = (int(v[0]), int(v[1])) if isinstance(v, list | tuple) else (int(v), int(v))
    elif dims_static[2] and dims_static[3]:
        imgsz = (int(input_shape[2]), int(input_shape[3]))
    else:
        imgsz = (640, 640)
    if dims_static[2] and dims_static[3]:
        imgsz = (int(input_shape[2]), int(input_shape[3]))
    version = path.parent.resolve().name if path.name in ("model.onnx", INT8_FILE) else path.stem
    return ModelInfo(
        path=path,
        version=version,
        sha256=_file_sha256(path),
        names=names,
        imgsz=imgsz,
        stride=int(meta.get("stride", 32)),
        dynamic_batch=not dims_static[0],
        dynamic_hw=not (dims_static[2] and dims_static[3]),
        end2end=str(meta.get("end2end", "False")).lower() == "true",
        input_name=input_name,
        metadata=dict(meta),
    )


class Backend(Protocol):
    name: str
    info: ModelInfo
    parallel: int  # how many batches it can usefully run at once (run_many keeps that many in flight)

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def run_many(self, xs: Iterable[np.ndarray]) -> list[np.ndarray]: ...


def default_threads() -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, n)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        threads: int = 0,
        optimization: str = "all",
        providers: list[str] | None = None,
        spin_wait: bool = False,
    ) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or default_threads()
        so.inter_op_num_threads = 1
        # busy-waiting worker threads win a little on an idle machine but lose badly when the
        # CPU is shared (decode threads, the web server, other processes)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if optimization not in _ORT_OPT_LEVELS:
            raise ValueError(f"graph optimisation must be one of {sorted(_ORT_OPT_LEVELS)}, got {optimization!r}")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _ORT_OPT_LEVELS[optimization])
        so.log_severity_level = 3
        available = ort.get_available_providers()
        providers = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelLoadError(f"ONNX Runtime cannot load {path}: {e}") from e
        inp = self.session.get_inputs()[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = parse_metadata(meta, list(inp.shape), inp.name, path)
        self.providers = self.session.get_providers()
        self.threads = so.intra_op_num_threads
        self._output = self.session.get_outputs()[0].name

    parallel = 1

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self._output], {self.info.input_name: x})[0]

    def run_many(self, xs: Iterable[np.ndarray]) -> list[np.ndarray]:
        return [self.run(x) for x in xs]


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, path: Path, threads: int = 0, precision: str = "bf16", hint: str = "throughput") -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise ModelLoadError("the openvino backend needs the 'openvino' package: pip install openvino") from e
        import onnxruntime as ort

        # metadata via ONNX Runtime's light model reader keeps one parser for both backends
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        try:
            meta_sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelLoadError(f"cannot load {path}: {e}") from e
        inp = meta_sess.get_inputs()[0]
        self.info = parse_metadata(meta_sess.get_modelmeta().custom_metadata_map, list(inp.shape), inp.name, path)
        del meta_sess
        precision = {"fp32": "f32", "float32": "f32", "fp16": "f16", "bfloat16": "bf16"}.get(precision, precision)
        if precision not in ("f32", "bf16", "f16"):
            raise ValueError(f"openvino precision must be f32, bf16 or f16, got {precision!r}")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            if hint.upper() not in ("LATENCY", "THROUGHPUT"):
                raise ValueError(f"openvino hint must be latency or throughput, got {hint!r}")
            config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": hint.upper()}
            if threads:
                config["INFERENCE_NUM_THREADS"] = int(threads)
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"OpenVINO cannot load {path}: {e}") from e
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self.hint = hint.lower()
        self.parallel = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.providers = [f"openvino-CPU-{self.precision}-{self.hint}x{self.parallel}"]
        self._requests = [self.compiled.create_infer_request() for _ in range(self.parallel)]
        self._lock = threading.Lock()

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            r = self._requests[0]
            r.infer({0: x})
            return r.get_output_tensor(0).data.copy()

    def run_many(self, xs: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Keep ``parallel`` batches in flight (one per OpenVINO stream); outputs in input order.

        Requests are used round-robin and collected in this thread (no callbacks, which would
        need the GIL inside OpenVINO's worker threads)."""
        with self._lock:
            outs: list[np.ndarray] = []
            inflight: deque = deque()
            for i, x in enumerate(xs):
                r = self._requests[i % self.parallel]
                if len(inflight) == self.parallel:
                    done, _ = inflight.popleft()
                    done.wait()
                    outs.append(done.get_output_tensor(0).data.copy())
                r.start_async({0: x}, share_inputs=True)
                inflight.append((r, x))  # keep x alive while the request reads it
            while inflight:
                done, _ = inflight.popleft()
                done.wait()
                outs.append(done.get_output_tensor(0).data.copy())
            return outs


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic units (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if flags:
        return " avx512_bf16" in flags or " amx_bf16" in flags
    try:  # not Linux: ask OpenVINO
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001
        return False


def cpu_has_int8_dot() -> bool:
    """Whether this CPU has 8-bit dot-product units (AVX512-VNNI, AVX-VNNI or AMX-INT8). Without them
    ONNX Runtime's INT8 kernels emulate the dot products and run slower than fp32: measured on an
    AVX2-only AMD EPYC, 9.6 vs 11.7 img/s end to end (bench/inference.py, README)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {f}" in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def _openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # onnxruntime | openvino
    path: Path  # the .onnx file it runs
    precision: str  # OpenVINO inference precision (bf16 | f32 | f16); "int8" / "f32" for ONNX Runtime
    reason: str


def int8_verdict(onnx_path: Path, max_map50_drop: float) -> tuple[bool, str]:
    """Whether the INT8 model beside ``onnx_path`` may be used: it exists, and the model folder's
    metrics.json (written at export) shows it faster than fp32 and within ``max_map50_drop``
    mAP50 of fp32 on the test split."""
    q = onnx_path.with_name(INT8_FILE)
    if not q.is_file():
        return False, "no INT8 model"
    try:
        m = json.loads((onnx_path.parent / "metrics.json").read_text())
        int8, fp32 = m["int8"], m["evaluation"]
        drop = float(fp32["map50"]) - float(int8["map50"])
        faster = float(int8["ms_int8"]) < float(int8["ms_fp32"])
    except (OSError, ValueError, KeyError, TypeError):
        return False, "INT8 model without accuracy/speed figures in metrics.json"
    if drop > max_map50_drop:
        return False, f"INT8 loses {drop:.3f} mAP50 (> budget {max_map50_drop:.3f})"
    if not faster:
        return False, "INT8 not faster than fp32 at export"
    return True, f"INT8 within budget ({drop:.3f} <= {max_map50_drop:.3f} mAP50) and faster"


def choose_backend(
    model: str | os.PathLike | None = None,
    backend: str = "auto",
    precision: str = "bf16",
    int8_max_map50_drop: float = 0.01,
) -> BackendChoice:
    """The runtime, model file and precision ``backend`` stands for on this machine.

    ``auto``: OpenVINO at ``precision`` (bf16) where the CPU has bf16 units and openvino is
    installed (2x ONNX Runtime fp32 on this project's model); else ONNX Runtime on the INT8
    model where :func:`int8_verdict` allows it and the CPU has VNNI (:func:`cpu_has_int8_dot`; the
    export's speed figure comes from the machine that exported); else ONNX Runtime fp32. On a bf16 CPU the INT8
    model is not chosen: ONNX Runtime INT8 is slower there than OpenVINO bf16 (docs/detector.md)."""
    path = resolve_model_path(model)
    backend = {"ort": "onnxruntime", "ov": "openvino"}.get(backend, backend)
    if backend == "onnxruntime":
        return BackendChoice("onnxruntime", path, "int8" if path.name == INT8_FILE else "f32", "configured")
    if backend == "openvino":
        return BackendChoice("openvino", path, precision, "configured")
    if backend != "auto":
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if path.name == INT8_FILE:  # an INT8 file named explicitly
        return BackendChoice("onnxruntime", path, "int8", "INT8 model named")
    bf16 = cpu_has_bf16()
    if bf16 and _openvino_available():
        return BackendChoice("openvino", path, precision, "CPU has bf16 units")
    ok, why = int8_verdict(path, int8_max_map50_drop)
    if ok and not cpu_has_int8_dot():
        ok, why = False, "no 8-bit dot-product units (VNNI) on this CPU: INT8 would be slower than fp32"
    if ok:
        return BackendChoice("onnxruntime", path.with_name(INT8_FILE), "int8", why)
    lead = "openvino not installed" if bf16 else "no bf16 units"
    return BackendChoice("onnxruntime", path, "f32", f"{lead}; {why}")


def load_backend(
    model: str | os.PathLike | None = None,
    backend: str = "auto",
    threads: int = 0,
    optimization: str = "all",
    precision: str = "bf16",
    warmup: int = 1,
    spin_wait: bool = False,
    openvino_hint: str = "throughput",
    int8_max_map50_drop: float = 0.01,
) -> Backend:
    """Open a model with the chosen runtime (``auto``: :func:`choose_backend`) and warm it up
    (the first runs allocate and tune). The backend's ``choice`` says what was picked and why."""
    choice = choose_backend(model, backend, precision, int8_max_map50_drop)
    path = choice.path
    if choice.backend == "onnxruntime":
        be: Backend = OnnxRuntimeBackend(path, threads=threads, optimization=optimization, spin_wait=spin_wait)
    else:
        be = OpenVinoBackend(path, threads=threads, precision=choice.precision, hint=openvino_hint)
    be.choice = choice  # type: ignore[attr-defined]
    info = be.info
    if len(info.names) == 0:
        raise ModelLoadError(f"{path}: model has no classes")
    t0 = time.perf_counter()
    x = np.full((1, 3, *info.imgsz), 114 / 255, np.float32)
    for _ in range(max(0, warmup)):
        out = be.run(x)
    if warmup:
        _check_output(out, info)
    be.warmup_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    return be


def _check_output(out: np.ndarray, info: ModelInfo) -> None:
    if info.end2end:
        if out.ndim != 3 or out.shape[2] < 6:
            raise ModelLoadError(f"{info.path}: end-to-end output must be (B, N, 6), got {out.shape}")
    elif out.ndim != 3 or out.shape[1] != 4 + info.num_classes:
        raise ModelLoadError(
            f"{info.path}: output shape {out.shape} does not fit a detect head with {info.num_classes} classes"
        )
