"""Training speed on this CPU: the fast path (bf16 autocast + channels-last) against
stock Ultralytics, in the same run, on the same images, with the same seed.

    .venv/bin/python bench/train_speed.py [--imgsz 416] [--fraction 0.2] [--epochs 1]
        [--variants stock,all-cores,fast,fast-1worker,channels-last,fast-copy-paste,fast-transpose]

Variants: ``stock`` (Ultralytics' float32 trainer as it comes: ``cpu_count - 1`` threads),
``all-cores`` (the same on every core), ``fast`` (bf16 + channels-last, every core),
``channels-last`` (float32, the layout alone, every core: the path ``auto`` takes without bf16 units).
A ``-copy-paste`` suffix adds the box copy-paste of configs/train.yaml (``training/copy_paste.py``: its
classes and ``copy_paste`` fraction), a ``-transpose`` suffix the transpose augmentation
(``training/transpose.py``, p 0.5); the other variants run without them.

Reports training images/second of the training loop (dataloader + forward + loss +
backward + optimiser; validation off) and the epoch-mean losses of each variant,
which should agree to about two digits. Builds the dataset first if needed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_variant(
    name: str, data: Path, imgsz: int, fraction: float, epochs: int, batch: int, workers: int | None, out: Path
) -> dict:
    import torch
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionTrainer

    from training.fastcpu import ChannelsLastDetectionTrainer, CPUDetectionTrainer, FastCPUDetectionTrainer

    if name.startswith("fast"):
        base = FastCPUDetectionTrainer
    elif name.startswith("channels-last"):
        base = ChannelsLastDetectionTrainer  # float32, no bf16 units needed
    elif name.startswith("all-cores"):
        base = CPUDetectionTrainer  # stock float32 NCHW, on every core
    else:
        base = DetectionTrainer  # Ultralytics as it comes: cpu_count - 1 threads

    class Timed(base):  # type: ignore[misc,valid-type]
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            if workers is not None:
                self.args.workers = workers  # Ultralytics forces 0 workers on CPU

        def _do_train(self):
            self.add_callback("on_train_epoch_start", lambda t: setattr(t, "_t0", time.perf_counter()))
            self.add_callback(
                "on_train_epoch_end", lambda t: t.__dict__.setdefault("_times", []).append(time.perf_counter() - t._t0)
            )
            return super()._do_train()

        def final_eval(self):  # the benchmark times training only; skip validating best.pt
            return None

    from training.config import load_train_config
    from training.train import copy_paste_augmentation, transpose_augmentation

    cfg = load_train_config(sets=[f"transpose={0.5 if 'transpose' in name else 0.0}"])
    copy_paste, paste_ctx = 0.0, contextlib.nullcontext()
    if "copy-paste" in name:
        copy_paste, paste_ctx = float(cfg.ultralytics["copy_paste"]), copy_paste_augmentation(cfg, data, print)
    transpose_ctx = transpose_augmentation(cfg, print)
    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    with paste_ctx, transpose_ctx:
        model.train(
            data=str(data),
            trainer=Timed,
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            fraction=fraction,
            val=False,
            plots=False,
            cache="ram",
            amp=False,
            seed=0,
            deterministic=True,
            verbose=False,
            project=str(out),
            name=name,
            exist_ok=True,
            close_mosaic=0,
            copy_paste=copy_paste,
        )
    tr = model.trainer
    n_images = len(tr.train_loader.dataset)
    seconds = sum(tr._times)
    return {
        "variant": name,
        "images": n_images,
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "images_per_s": round(n_images * epochs / seconds, 2),
        "losses": {k: round(float(v), 4) for k, v in tr.tloss.items()},
        "workers": tr.args.workers,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--fraction", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--variants", default="stock,fast,fast-1worker")
    ap.add_argument("--json", type=Path, default=Path("build/bench/train_speed.json"))
    args = ap.parse_args()

    from training.build import DEFAULT_OUT, build_dataset, default_mirror

    data = build_dataset(DEFAULT_OUT, mirror=default_mirror(), log=lambda *_: None).out / "data.yaml"
    out = Path("build/bench/train_speed").resolve()
    results = []
    for v in args.variants.split(","):
        workers = 1 if v.endswith("1worker") else None
        results.append(run_variant(v, data, args.imgsz, args.fraction, args.epochs, args.batch, workers, out))
        print(json.dumps(results[-1]), flush=True)
    stock = next((r for r in results if r["variant"] == "stock"), None)
    print(
        f"\ntraining speed, imgsz {args.imgsz}, batch {args.batch}, {results[0]['images']} images x {args.epochs} "
        f"epoch(s), validation off, {os.cpu_count()} cores"
    )
    print(f"{'variant':<14}{'img/s':>8}{'x stock':>9}  losses (box/cls/dfl)")
    for r in results:
        ratio = r["images_per_s"] / stock["images_per_s"] if stock else float("nan")
        losses = "/".join(f"{v:.3f}" for v in r["losses"].values())
        print(f"{r['variant']:<14}{r['images_per_s']:>8.2f}{ratio:>8.2f}x  {losses}")
    if stock:
        for r in results:
            worst = max(
                abs(r["losses"][k] - stock["losses"][k]) / max(abs(stock["losses"][k]), 1e-9) for k in stock["losses"]
            )
            r["max_rel_loss_diff_vs_stock"] = round(worst, 4)
        print(
            "max relative loss difference vs stock: "
            + ", ".join(f"{r['variant']} {r['max_rel_loss_diff_vs_stock']:.3f}" for r in results)
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
