"""Parity with Ultralytics' own predictor on the same weights (needs the training extras).

Same images, same threshold: every Ultralytics detection has a detector/ detection of
the same class with IoU >= 0.98 and a confidence within 0.01, and vice versa (except
detections whose score is within 0.01 of the threshold, which may fall either side).
With no border the detector's geometry is Ultralytics'; with the shipped grey border it
equals Ultralytics' predictor on the frame padded with grey in image pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
from detector_fixtures import model_dir, real_images
from PIL import Image

from detector.detections import Detections
from detector.nms import box_iou

pytest.importorskip("torch")
ultralytics = pytest.importorskip("ultralytics")

CONF = 0.05


def _match(ref: Detections, got: Detections, conf: float, min_iou: float = 0.98, tol: float = 0.01) -> None:
    for a, b in ((ref, got), (got, ref)):
        for i in range(len(a)):
            if a.confidence[i] < conf + tol:
                continue  # borderline: its counterpart, within ``tol``, may fall under ``conf``
            same = b[b.class_id == a.class_id[i]]
            assert len(same), f"class {a.class_id[i]} box {a.xyxy[i]} ({a.confidence[i]:.3f}) has no match"
            ious = box_iou(a.xyxy[i : i + 1], same.xyxy)[0]
            j = int(ious.argmax())
            assert ious[j] >= min_iou, (a.xyxy[i], same.xyxy[j], ious[j])
            assert abs(float(same.confidence[j]) - float(a.confidence[i])) <= tol


def _weights():
    weights = model_dir() / "weights.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} not found: no PyTorch weights beside the ONNX model")
    return weights


def test_matches_ultralytics_predictor():
    from detector import Detector

    det = Detector(model_dir(), backend="onnxruntime", border=0)
    paths = real_images(9)
    model = ultralytics.YOLO(str(_weights()))
    imgsz = list(det.info.imgsz)
    total = 0
    for p in paths:
        res = model.predict(str(p), conf=CONF, iou=det.config.iou, imgsz=imgsz, device="cpu", verbose=False)[0]
        ref = Detections.from_ultralytics(res)
        got = det.predict(p, conf=CONF, tiling="off")[0]
        _match(ref, got, CONF)
        total += len(ref)
    assert total > 0, "no detections to compare: the parity check would be vacuous"


def test_border_is_ultralytics_on_a_grey_padded_frame():
    from detector import Detector

    det = Detector(model_dir(), backend="onnxruntime", border=32)
    size = max(det.info.imgsz)
    model = ultralytics.YOLO(str(_weights()))
    total = 0
    for p in real_images(9):
        rgb = np.asarray(Image.open(p).convert("RGB"))
        h, w = rgb.shape[:2]
        if h != w:
            continue  # square frames: the padded frame scales by the same gain
        pad = round(32 * w / size)  # 32 input pixels in image pixels
        padded = np.full((h + 2 * pad, w + 2 * pad, 3), 114, np.uint8)
        padded[pad : pad + h, pad : pad + w] = rgb
        res = model.predict(
            padded[:, :, ::-1], conf=CONF, iou=det.config.iou, imgsz=size + 64, device="cpu", verbose=False
        )[0]
        ref = Detections.from_ultralytics(res).shifted(-pad, -pad)
        got = det.predict(rgb, conf=CONF, tiling="off")[0]
        # resizing the padded frame blurs the image's outer pixel into the grey: near, not exact
        _match(ref, got, CONF, min_iou=0.9, tol=0.03)
        total += len(ref)
    assert total > 0, "no detections to compare: the check would be vacuous"
    # the border changes what the model sees: without it the same frames score differently
    plain = Detector(model_dir(), backend="onnxruntime", border=0)
    p = real_images(1)[0]
    a, b = det.predict(p, conf=CONF, tiling="off")[0], plain.predict(p, conf=CONF, tiling="off")[0]
    assert len(a) != len(b) or not np.allclose(a.confidence, b.confidence, atol=1e-4)


def test_from_ultralytics_keeps_columns():
    res = ultralytics.YOLO(str(_weights())).predict(str(real_images(1)[0]), conf=0.001, device="cpu", verbose=False)[0]
    d = Detections.from_ultralytics(res)
    assert len(d) == len(res.boxes) and np.allclose(d.xyxy, res.boxes.xyxy.numpy())
