"""Is model B better than model A, or within the noise of the split? A paired bootstrap over source groups.

    .venv/bin/python bench/compare_models.py --a models/current --b path/to/candidate \
        [--split val] [--n 500] [--data build/dataset/data.yaml] [--out build/bench/compare.json]

Both models predict every image of the split once (through ``detector/``, as ``pvwind evaluate``
scores them); then ``--n`` times the same source groups are drawn with replacement for both (a group
is a photo with its augmented copies, or a flight's overlapping frames: the build's index.json; its
images are not independent samples, so a draw of single images understates the spread), and mAP50
and mAP50-95 (faster-coco-eval, as everywhere) are computed for each model on the draw. The
difference B - A over the draws gives a 95 % interval and the share of draws in which B is ahead.
With 325 val images in 142 groups and 10 classes of 6-170 boxes (1-38 groups), differences of a few
points are often inside that interval: read a promotion decided by a small margin with it. Use val
to decide; test only to report.
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

from training.evaluate import collect, image_clusters  # noqa: E402
from training.metrics import paired_bootstrap  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, required=True, help="model folder (or .onnx): the reference")
    ap.add_argument("--b", type=Path, required=True, help="model folder (or .onnx): the candidate")
    ap.add_argument("--data", type=Path, default=REPO / "build" / "dataset" / "data.yaml")
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=500, help="bootstrap draws")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "compare.json")
    a = ap.parse_args()
    for p in (a.a, a.b, a.data):
        if not p.exists():
            sys.exit(f"compare_models: {p} does not exist")
    gts, pred_a, names_a, _ = collect(a.a, a.data, a.split)
    _, pred_b, names_b, _ = collect(a.b, a.data, a.split)
    if names_a != names_b:
        sys.exit(f"compare_models: the models' classes differ ({names_a} vs {names_b})")
    result = {"a": str(a.a), "b": str(a.b), "split": a.split}
    clusters = image_clusters(a.data, a.split)
    result.update(paired_bootstrap(gts, pred_a, pred_b, names_a, a.n, a.seed, clusters))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    for k in ("map50", "map50_95"):
        r = result[k]
        print(
            f"{k}: A {r['a']:.4f}  B {r['b']:.4f}  B-A {r['delta']:+.4f}"
            f"  95% [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]"
            f"  B ahead in {r['share_b_ahead']:.0%} of {a.n} draws"
        )


if __name__ == "__main__":
    main()
