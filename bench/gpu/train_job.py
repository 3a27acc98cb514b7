"""One training job on a lent GPU machine, through ``training.train.train`` - the code path of
``pvwind train --device 0`` - without the packaging steps (export, INT8, evaluation), which run here.

    python bench/gpu/train_job.py --data /tmp/ds/dataset/data.yaml --run-dir /tmp/runs/a \
        --init models/current --hours 0.1 --device 0 --set lr0=0.002 --set seed=21

Two offline shims for a machine that has neither a network nor polars: Ultralytics' AMP self-check
(which downloads yolo26n.pt; AMP is sound on Hopper) is taken as passed, and its results.csv reader
(polars) is replaced by the csv module. Everything else is the shipped recipe (configs/train.yaml)
with the ``--set`` overrides.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def offline_shims() -> None:
    from ultralytics.engine import trainer as T

    T.check_amp = lambda model: True

    def read_results_csv(self) -> dict:
        try:
            with open(self.csv, newline="") as f:
                rows = list(csv.DictReader(f))
            return {k.strip(): [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}
        except Exception:
            return {}

    T.BaseTrainer.read_results_csv = read_results_csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--init", default="models/current", help="a model folder / .pt, or scratch")
    ap.add_argument("--model", default=None, help="architecture yaml (default configs/train.yaml)")
    ap.add_argument("--hours", type=float, required=True)
    ap.add_argument("--device", default="0")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=5)
    ap.add_argument("--fraction", type=float, default=None)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()

    from training.config import load_train_config
    from training.train import resolve_init, train

    data = a.data.resolve()
    text = data.read_text()  # the pack's data.yaml says path: . - make it absolute for Ultralytics
    data.write_text("\n".join(f"path: {data.parent}" if ln.startswith("path:") else ln for ln in text.splitlines()))
    overrides = {
        "hours": a.hours,
        "device": a.device,
        "batch": a.batch,
        "workers": a.workers,
        "fraction": a.fraction,
        "model": a.model,
        "init": a.init,
    }
    cfg = load_train_config(overrides=overrides, sets=a.set)
    if cfg.init in ("auto", "pretrained"):
        sys.exit("--init: a model folder, a .pt or scratch (nothing can be fetched on that machine)")
    try:
        init = resolve_init(cfg)  # as `pvwind train --init` resolves it, with the same lineage words
    except FileNotFoundError as e:
        sys.exit(str(e))
    offline_shims()
    t0 = time.time()
    best = train(cfg, data, a.run_dir.resolve(), init=init)
    print(f"JOB DONE {a.run_dir.name}: best {best} after {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
