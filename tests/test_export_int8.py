"""INT8 post-training quantisation (``training.export.quantize_int8``), on the shipped model and real
mirror images: the quantised graph is QDQ with the decoding tail left in float, each calibration image is
fed through the ``tensor`` hook once, and the INT8 model served by ``detector/`` finds what fp32 finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from detector_fixtures import model_dir, real_images

from detector import Detector
from detector.nms import box_iou

pytest.importorskip("onnxruntime.quantization")
from training.export import _head_nodes, load_tensor, quantize_int8  # noqa: E402


@pytest.fixture(scope="module")
def quantised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    fp32 = model_dir() / "model.onnx"
    calib = real_images(6)
    fed: list[Path] = []

    def feed(p: Path) -> np.ndarray:
        fed.append(p)
        return load_tensor([p], 416)

    out = quantize_int8(fp32, tmp_path_factory.mktemp("int8") / "model_int8.onnx", calib, 416, tensor=feed)
    assert sorted(fed) == sorted(calib), "every calibration image fed exactly once through the hook"
    return fp32, out, calib


def test_graph_is_qdq_with_the_decoding_tail_in_float(quantised: tuple[Path, Path, list[Path]]) -> None:
    fp32, q, _ = quantised
    g = onnx.load(str(q)).graph
    ops = [n.op_type for n in g.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50
    # the excluded head nodes (DFL, anchors, final sigmoid/concat) are there, as float ops, and their
    # outputs are never re-quantised; every convolution but none of them reads dequantised int8
    head = set(_head_nodes(q)) - {n.name for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert head & set(_head_nodes(fp32)), "the float tail keeps the exported model's node names"
    assert {"Sigmoid", "Softmax"} <= {n.op_type for n in g.node if n.name in head}
    head_outputs = {o for n in g.node if n.name in head for o in n.output}
    requantised = [n.name for n in g.node if n.op_type == "QuantizeLinear" and set(n.input) & head_outputs]
    assert not requantised, f"head outputs quantised: {requantised[:3]}"
    produced_by = {o: n for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv" and n.name not in head]
    assert len(convs) > 50
    assert all(produced_by[n.input[1]].op_type == "DequantizeLinear" for n in convs), "a float backbone conv"


def test_int8_model_finds_what_fp32_finds(quantised: tuple[Path, Path, list[Path]]) -> None:
    fp32, q, _ = quantised
    images = real_images(9)
    ref = Detector(fp32, backend="onnxruntime", conf=0.3, tiling="off").predict(images, conf=0.3)
    got = Detector(q, backend="onnxruntime", conf=0.2, tiling="off").predict(images, conf=0.2)
    n_ref = matched = 0
    for r, g in zip(ref, got, strict=True):
        for i in range(len(r)):
            n_ref += 1
            same = g.class_id == r.class_id[i]
            if same.any() and box_iou(r.xyxy[i : i + 1], g.xyxy[same]).max() >= 0.7:
                matched += 1
    assert n_ref >= 3, "the shipped model finds something on the mirror images at conf 0.3"
    assert matched / n_ref >= 0.8, f"INT8 found {matched} of fp32's {n_ref} confident boxes"
