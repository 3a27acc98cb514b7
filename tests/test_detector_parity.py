"""Parity with Ultralytics' own predictor on the same weights (needs the training extras).

Same images, same threshold: every Ultralytics detection has a detector/ detection of
the same class with IoU >= 0.98 and a confidence within 0.01, and vice versa (except
detections whose score is within 0.01 of the threshold, which may fall either side).
"""

from __future__ import annotations

import numpy as np
import pytest
from detector_fixtures import get_detector, model_dir, real_images

from detector.detections import Detections
from detector.nms import box_iou

pytest.importorskip("torch")
ultralytics = pytest.importorskip("ultralytics")

CONF = 0.05


def _match(ref: Detections, got: Detections, conf: float) -> None:
    for a, b in ((ref, got), (got, ref)):
        for i in range(len(a)):
            if a.confidence[i] < conf + 0.01:
                continue  # borderline: may be missing on the other side
            same = b[b.class_id == a.class_id[i]]
            assert len(same), f"class {a.class_id[i]} box {a.xyxy[i]} ({a.confidence[i]:.3f}) has no match"
            ious = box_iou(a.xyxy[i : i + 1], same.xyxy)[0]
            j = int(ious.argmax())
            assert ious[j] >= 0.98, (a.xyxy[i], same.xyxy[j], ious[j])
            assert abs(float(same.confidence[j]) - float(a.confidence[i])) <= 0.01


def test_matches_ultralytics_predictor():
    weights = model_dir() / "weights.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} not found: no PyTorch weights beside the ONNX model")
    det = get_detector("onnxruntime")
    paths = real_images(9)
    model = ultralytics.YOLO(str(weights))
    imgsz = list(det.info.imgsz)
    total = 0
    for p in paths:
        res = model.predict(str(p), conf=CONF, iou=0.7, imgsz=imgsz, device="cpu", verbose=False)[0]
        ref = Detections.from_ultralytics(res)
        got = det.predict(p, conf=CONF, tiling="off")[0]
        _match(ref, got, CONF)
        total += len(ref)
    assert total > 0, "no detections to compare: the parity check would be vacuous"


def test_from_ultralytics_keeps_columns():
    weights = model_dir() / "weights.pt"
    if not weights.is_file():
        pytest.skip("no PyTorch weights")
    res = ultralytics.YOLO(str(weights)).predict(str(real_images(1)[0]), conf=0.001, device="cpu", verbose=False)[0]
    d = Detections.from_ultralytics(res)
    assert len(d) == len(res.boxes) and np.allclose(d.xyxy, res.boxes.xyxy.numpy())
