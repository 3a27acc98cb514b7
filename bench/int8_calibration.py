"""INT8 calibration inputs, measured on the validation split.

    .venv/bin/python bench/int8_calibration.py [--model models/current] [--data build/dataset/data.yaml]
                                               [--offsets 0 7]

Quantises ``model.onnx`` (ONNX Runtime static QDQ, as `pvwind train --int8` does) twice per calibration
subset - 64 train images, every n-th from ``offset`` - once with each image letterboxed into the 416
square (what ships) and once as the detector feeds a whole frame (its stride-aligned rectangle plus the
grey ``border`` of configs/detector.yaml), and evaluates each INT8 model and the fp32 one through
``detector/`` on val. Never the test split. Writes ``build/bench/int8_calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from detector.config import shipped_defaults  # noqa: E402
from detector.letterbox import letterbox, rect_shape, to_tensor  # noqa: E402
from detector.model import resolve_model_path  # noqa: E402
from training.evaluate import evaluate, read_data_yaml, split_images  # noqa: E402
from training.export import load_tensor, quantize_int8  # noqa: E402


def frame_tensor(path: Path, imgsz: int, border: int, stride: int = 32) -> np.ndarray:
    """(1, 3, H, W): one whole frame as the detector feeds it to a model of dynamic input size."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rect_shape(rgb.shape[:2], (imgsz, imgsz), stride)
    return to_tensor(letterbox(rgb, (h + 2 * border, w + 2 * border), border=border)[0][None])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "current")
    ap.add_argument("--data", type=Path, default=REPO / "build" / "dataset" / "data.yaml")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--offsets", type=int, nargs="+", default=[0, 7])
    a = ap.parse_args()
    onnx = resolve_model_path(a.model)
    root, _, data = read_data_yaml(a.data)
    train = split_images(root, data, "train")
    step = max(1, len(train) // 64)
    border = shipped_defaults().border
    feeds = {
        "square": lambda p: load_tensor([p], a.imgsz),
        f"rectangle+{border}px": lambda p: frame_tensor(p, a.imgsz, border),
    }
    ev = evaluate(onnx, a.data, "val")
    rows = [{"calibration": "fp32 (none)", "map50": ev["map50"], "map50_95": ev["map50_95"]}]
    print(f"fp32: val mAP50 {ev['map50']:.4f}, mAP50-95 {ev['map50_95']:.4f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for off in a.offsets:
            calib = train[off::step][:64]
            for name, feed in feeds.items():
                q = quantize_int8(onnx, Path(tmp) / "model_int8.onnx", calib, a.imgsz, tensor=feed)
                ev = evaluate(q, a.data, "val")
                rows.append({"calibration": name, "offset": off, "map50": ev["map50"], "map50_95": ev["map50_95"]})
                print(f"{name:>16} offset {off}: mAP50 {ev['map50']:.4f}, mAP50-95 {ev['map50_95']:.4f}", flush=True)
    out = REPO / "build" / "bench" / "int8_calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(onnx), "border": border, "rows": rows}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
