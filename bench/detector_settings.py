"""Whole-frame border and NMS IoU of the detector, measured on the validation split.

    .venv/bin/python bench/detector_settings.py [--model models/current] [--data build/dataset/data.yaml]
        [--settings 0:0.6 32:0.6 64:0.6 32:0.5 32:0.7]

Each setting is ``border:iou``; the model runs through ``detector/`` (whole frame, no tiling, confidence
0.001, 300 boxes) and is scored with faster-coco-eval as `pvwind evaluate` scores it. Val only: the
settings in configs/detector.yaml are chosen here, never on test. Writes build/bench/detector_settings.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector import Detector  # noqa: E402
from training.evaluate import evaluate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "current")
    ap.add_argument("--data", type=Path, default=REPO / "build" / "dataset" / "data.yaml")
    ap.add_argument("--settings", nargs="+", default=["0:0.6", "32:0.6", "64:0.6", "32:0.5", "32:0.7"])
    a = ap.parse_args()
    rows = []
    for setting in a.settings:
        border, iou = int(setting.split(":")[0]), float(setting.split(":")[1])
        det = Detector(a.model, backend="onnxruntime", conf=0.001, iou=iou, border=border, tiling="off")
        names = list(det.info.names)
        ev = evaluate(a.model, a.data, "val", predictor=(lambda p, d=det: d.predict(list(p), conf=0.001), names))
        rows.append({"border": border, "iou": iou, "map50": ev["map50"], "map50_95": ev["map50_95"]})
        print(f"border {border:3d} px, NMS IoU {iou:.2f}: val mAP50 {ev['map50']:.4f}, mAP50-95 {ev['map50_95']:.4f}")
    out = REPO / "build" / "bench" / "detector_settings.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(a.model.resolve()), "rows": rows}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
