"""ONNX export of a trained checkpoint, the PyTorch/ONNX Runtime parity check, and
optional INT8 post-training quantisation with ONNX Runtime."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from detector.detections import Detections
from detector.letterbox import letterbox, to_tensor
from detector.nms import box_iou


def export_onnx(weights: Path, out: Path, imgsz: int, opset: int | None = None) -> Path:
    """Export ``weights`` (.pt) to ``out`` (model.onnx) with a dynamic batch axis and
    Ultralytics' metadata (class names, imgsz, stride) in the ONNX properties."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    tmp = out.parent / f".export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    local = tmp / "model.pt"
    shutil.copyfile(weights, local)
    plain_checkpoint(local)
    kwargs = dict(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, verbose=False)
    if opset:
        kwargs["opset"] = opset
    produced = Path(YOLO(str(local)).export(**kwargs))
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(produced), out)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def plain_checkpoint(path: Path) -> bool:
    """Unwrap in place a knowledge-distillation checkpoint (``distill_model``: the student inside a
    wrapper with the training-only projector), as Ultralytics does to ``best.pt`` / ``last.pt`` at the
    end of a run but not to the per-epoch checkpoints. True when it was one; others are left as they are."""
    import torch
    from ultralytics.nn.distill_model import DistillationModel
    from ultralytics.utils.torch_utils import strip_optimizer

    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict):
        return False
    net = ck["ema"] if ck.get("ema") is not None else ck.get("model")
    if not isinstance(net, DistillationModel):
        return False
    strip_optimizer(str(path))
    return True


def load_tensor(paths: Sequence[Path], imgsz: int) -> np.ndarray:
    """Letterboxed (B, 3, imgsz, imgsz) float32 batch, as the detector builds it."""
    batch = []
    for p in paths:
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB"))
        batch.append(letterbox(rgb, (imgsz, imgsz))[0])
    return to_tensor(np.stack(batch))


def check_parity(
    weights: Path, onnx_path: Path, images: Sequence[Path], imgsz: int, conf: float = 0.25, iou: float = 0.7
) -> dict:
    """Run the same letterboxed batch through PyTorch and ONNX Runtime.

    Reports the max abs difference of the raw head outputs (boxes in input pixels
    and class scores), and whether the decoded detections match (same count and
    classes, boxes within IoU 0.99, confidences within 1e-3)."""
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    x = load_tensor(images, imgsz)
    model = YOLO(str(weights)).model.float().eval()
    model = model.fuse() if hasattr(model, "fuse") else model
    with torch.inference_mode():
        y = model(torch.from_numpy(x))
    pt = (y[0] if isinstance(y, list | tuple) else y).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ox = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    diff = np.abs(pt - ox)
    match = True
    worst_iou = 1.0
    for a, b in zip(pt, ox, strict=True):
        da = Detections.from_yolo_output(a, conf=conf, iou=iou)
        db = Detections.from_yolo_output(b, conf=conf, iou=iou)
        if len(da) != len(db) or not np.array_equal(da.class_id, db.class_id):
            match = False
            continue
        if len(da):
            ious = np.diag(box_iou(da.xyxy, db.xyxy))
            worst_iou = min(worst_iou, float(ious.min()))
            if ious.min() < 0.99 or np.abs(da.confidence - db.confidence).max() > 1e-3:
                match = False
    import onnx

    return {
        "images": len(images),
        "max_abs_diff": float(diff.max()),
        "max_abs_diff_scores": float(diff[:, 4:].max()),
        "max_abs_diff_boxes_px": float(diff[:, :4].max()),
        "detections_match": match,
        "worst_box_iou": worst_iou,
        "opset": int(onnx.load(str(onnx_path), load_external_data=False).opset_import[0].version),
    }


def backend_parity(onnx_path: Path, images: Sequence[Path], imgsz: int, conf: float = 0.25, iou: float = 0.7) -> dict:
    """Each runtime ``backend: auto`` can pick against ONNX Runtime fp32 on the same letterboxed
    images: max abs difference of the class scores and the share of fp32's detections found
    again (same class, IoU >= 0.9). Keys: ``openvino-f32``, ``openvino-bf16`` and, with a
    ``model_int8.onnx`` beside the model, ``onnxruntime-int8``; ``cpu_bf16``: whether this CPU has bf16
    units (without them the ``openvino-bf16`` row measured f32). For the model card."""
    from detector.model import INT8_FILE, cpu_has_bf16, load_backend

    x = load_tensor(images, imgsz)
    ref_be = load_backend(onnx_path, backend="onnxruntime")
    ref = ref_be.run(x)
    runs = {"openvino-f32": ("openvino", onnx_path, "f32"), "openvino-bf16": ("openvino", onnx_path, "bf16")}
    if (onnx_path.parent / INT8_FILE).is_file():
        runs["onnxruntime-int8"] = ("onnxruntime", onnx_path.parent / INT8_FILE, "f32")
    # without bf16 units OpenVINO silently runs a bf16 request in f32: the row then says nothing of bf16
    out: dict = {"images": len(images), "reference": "onnxruntime-f32", "cpu_bf16": cpu_has_bf16()}
    for name, (backend, path, precision) in runs.items():
        try:
            y = load_backend(path, backend=backend, precision=precision).run(x)
        except Exception as e:  # noqa: BLE001 - a runtime missing here is reported, not fatal
            out[name] = {"error": str(e)[:200]}
            continue
        found = total = 0
        for a, b in zip(ref, y, strict=True):
            da = Detections.from_yolo_output(a, conf=conf, iou=iou)
            db = Detections.from_yolo_output(b, conf=conf, iou=iou)
            total += len(da)
            if len(da) and len(db):
                m = box_iou(da.xyxy, db.xyxy) * (da.class_id[:, None] == db.class_id[None, :])
                found += int((m.max(1) >= 0.9).sum())
        out[name] = {
            "max_abs_diff_scores": float(np.abs(ref[:, 4:] - y[:, 4:]).max()),
            "detections_found": found,
            "detections_reference": total,
        }
    return out


def quantize_int8(
    onnx_path: Path,
    out: Path,
    calib_images: Sequence[Path],
    imgsz: int,
    tensor: Callable[[Path], np.ndarray] | None = None,
) -> Path:
    """Static INT8 (QDQ) quantisation, calibrated on ``calib_images``, each fed as ``tensor(path)``
    (default: the 416 square letterbox; `bench/int8_calibration.py` measured it against the
    detector's bordered rectangles on val, docs/experiments.md)."""
    tensor = tensor or (lambda p: load_tensor([p], imgsz))
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.paths = list(calib_images)
            import onnxruntime as ort

            self.name = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name

        def get_next(self):
            if not self.paths:
                return None
            return {self.name: tensor(self.paths.pop())}

    pre = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=_head_nodes(pre),
    )
    pre.unlink(missing_ok=True)
    return out


def _head_nodes(path: Path) -> list[str]:
    """The detect head's decoding tail (DFL, anchor arithmetic, the final sigmoid and concats),
    kept in float: quantising it costs accuracy and saves no time. Its convolutions (``cv2``,
    ``cv3``) are quantised like the rest."""
    import onnx

    g = onnx.load(str(path)).graph
    head = max((n.name.split("/")[1] for n in g.node if n.name.startswith("/model.")), key=lambda s: int(s[6:]))
    return [n.name for n in g.node if n.name.startswith(f"/{head}/") and "/cv" not in n.name]


def time_session(onnx_path: Path, imgsz: int, runs: int = 20) -> float:
    """Median ms of a batch-1 session run."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def model_flops(onnx_path: Path, input_hw: tuple[int, int]) -> float | None:
    """FLOPs (2 x multiply-accumulates) of Conv/MatMul/Gemm for one image at ``input_hw``."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        return None
    m = onnx.load(str(onnx_path))
    inp = m.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 3, *input_hw), strict=True):
        d.ClearField("dim_param")
        d.dim_value = v
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0.0
    for node in m.graph.node:
        if node.op_type == "Conv":
            w = shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if not w or not out:
                continue
            # weight (Cout, Cin/groups, kh, kw); out (N, Cout, H, W)
            total += 2.0 * np.prod(out) * np.prod(w[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            if a and out:
                total += 2.0 * np.prod(out) * a[-1]
    return float(total)


def model_gflops(onnx_path: Path) -> float | None:
    """GFLOPs per image at the model's own input size (the ``imgsz`` of its metadata), None when unknown."""
    import ast

    try:
        import onnx
    except ImportError:
        return None
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    try:
        imgsz = ast.literal_eval(meta["imgsz"])
    except (KeyError, ValueError, SyntaxError):
        return None
    hw = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    flops = model_flops(Path(onnx_path), hw)
    return None if flops is None else flops / 1e9
