"""Stochastic weight averaging (Izmailov et al., 2018) of a run's per-epoch checkpoints, scored on val.

    .venv/bin/python bench/swa.py --run build/train/<version> --tails 4 8 12 [--ema 2 4 8]
        [--with models/current] [--save DIR] [--data build/dataset/data.yaml] [--out build/bench/swa.json]

A run started with ``--set save_period=1`` keeps every epoch's weights (``weights/epochK.pt``, K from 0).
For each tail length T this averages the last T epochs uniformly (``training.soup.average_checkpoints``:
weights and batch-norm statistics), exports the average to ONNX at the run's input size and scores it on
the validation split through ``detector/``, as ``pvwind train --soup`` scores a soup. ``--ema H`` weighs
every epoch by exp(-(epochs after it) / H) instead: what an exponential moving average with a horizon of
H epochs holds at the end of the run (at epoch granularity). ``--with`` adds a model (e.g. the run's
start) to every average as one more equal ingredient; ``--save`` keeps each average's ``.pt`` (a soup
ingredient). Val only: the average is chosen here.

Why: Ultralytics' EMA restarts with every run and its decay ramps as 1 - exp(-updates / 2000); at batch 16
(an optimizer step every 4 batches, nominal batch 64) an epoch here is ~51 updates, so after the 25 epochs
of a continued CPU run the decay is ~0.47: the checkpoints hold nearly the raw weights of their last steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.soup import average_checkpoints, ingredient_weights  # noqa: E402


def epoch_checkpoints(run: Path) -> list[Path]:
    """``weights/epochK.pt`` of ``run`` in epoch order."""
    found = [
        (int(m.group(1)), p)
        for p in (run / "weights").glob("epoch*.pt")
        if (m := re.fullmatch(r"epoch(\d+)\.pt", p.name))
    ]
    return [p for _, p in sorted(found)]


def plan(ckpts: list[Path], tails: list[int], horizons: list[float]) -> list[tuple[str, list[Path], list[float]]]:
    """(name, checkpoints, weights) of each average asked for: uniform tails, then exponential weights."""
    plans = []
    for t in tails:
        if not 1 <= t <= len(ckpts):
            raise ValueError(f"a tail of {t} epochs: the run has {len(ckpts)}")
        plans.append((f"tail{t}", ckpts[-t:], [1.0] * t))
    for h in horizons:
        if h <= 0:
            raise ValueError(f"an EMA horizon must be > 0 epochs, got {h:g}")
        n = len(ckpts)
        plans.append((f"ema{h:g}", ckpts, [math.exp(-(n - 1 - i) / h) for i in range(n)]))
    return plans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="an Ultralytics run folder with weights/epochK.pt")
    ap.add_argument("--tails", type=int, nargs="*", default=[], help="numbers of last epochs to average")
    ap.add_argument("--ema", type=float, nargs="*", default=[], help="horizons (epochs) of exponential weights")
    ap.add_argument("--with", dest="extra", type=Path, nargs="*", default=[], help="models added to every average")
    ap.add_argument("--save", type=Path, help="keep each average here as <run>-<kind>.pt")
    ap.add_argument("--imgsz", type=int, default=512)
    ap.add_argument("--data", type=Path, default=REPO / "build" / "dataset" / "data.yaml")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "swa.json")
    a = ap.parse_args()
    ckpts = epoch_checkpoints(a.run)
    if not ckpts:
        sys.exit(f"swa: no weights/epochK.pt in {a.run} (train with --set save_period=1)")
    try:
        plans = plan(ckpts, a.tails, a.ema)
        extra = [ingredient_weights(p) for p in a.extra]
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"swa: {e}")
    from training.evaluate import evaluate
    from training.export import export_onnx

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = a.save or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for kind, parts, w in plans:
            share = sum(w) / len(parts)  # each --with model weighs as much as an average epoch
            pt = average_checkpoints(parts + extra, out_dir / f"{a.run.name}-{kind}.pt", w + [share] * len(extra))
            m = evaluate(export_onnx(pt, Path(tmp) / f"{kind}.onnx", a.imgsz), a.data, "val")
            rows.append(
                {
                    "kind": kind,
                    "epochs": [p.name for p in parts],
                    "weights": [round(x / sum(w), 4) for x in w],
                    "with": [str(p) for p in extra],
                    "map50": m["map50"],
                    "map50_95": m["map50_95"],
                    "per_class": {k: v["map50"] for k, v in m["per_class"].items()},
                }
            )
            extra_s = " + " + ", ".join(map(str, a.extra)) if extra else ""
            print(f"{kind}{extra_s}: val mAP50 {m['map50']:.4f}, mAP50-95 {m['map50_95']:.4f}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"run": str(a.run), "rows": rows}, indent=1))
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
