"""Test-time input size of a model's weights, measured on the validation split.

    .venv/bin/python bench/input_size.py [--weights models/current/weights.pt] [--sizes 416 512 640]
        [--data build/dataset/data.yaml] [--out build/bench/input_size.json]

The weights are exported to ONNX at each size (the size goes into the model's metadata, which is what
the detector letterboxes to) and scored as `pvwind evaluate` and the weight soup score a model
(``training.evaluate.evaluate``: through ``detector/`` with the configured border and NMS IoU):
mAP50 / mAP50-95 overall, per class and per source. Val only: the input size a model ships with is
chosen here, never on test. Pair it with a model trained at the other size to
separate "more pixels at test time" from "trained on more pixels".
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

from training.evaluate import evaluate  # noqa: E402
from training.export import export_onnx  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=REPO / "models" / "current" / "weights.pt")
    ap.add_argument("--sizes", type=int, nargs="+", default=[416, 512, 640])
    ap.add_argument("--data", type=Path, default=REPO / "build" / "dataset" / "data.yaml")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "input_size.json")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            onnx = export_onnx(a.weights, Path(tmp) / f"model_{size}.onnx", size)
            ev = evaluate(onnx, a.data, "val")
            rows.append(
                {
                    "imgsz": size,
                    "map50": ev["map50"],
                    "map50_95": ev["map50_95"],
                    "per_class": {k: v["map50"] for k, v in ev["per_class"].items()},
                    "per_source": {k: v["map50"] for k, v in ev["per_source"].items()},
                }
            )
            print(f"{size} px: val mAP50 {ev['map50']:.4f}, mAP50-95 {ev['map50_95']:.4f}")
    classes = list(rows[0]["per_class"])
    print("val AP50 per class: " + " / ".join(f"{r['imgsz']}" for r in rows))
    for c in classes:
        print(f"  {c:22s} " + " / ".join(f"{r['per_class'][c]:.3f}" for r in rows))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"weights": str(a.weights.resolve()), "rows": rows}, indent=2))
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
