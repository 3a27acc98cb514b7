"""``pvwind train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pvwind.cli import CLIError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="train settings (default configs/train.yaml)")
    p.add_argument("--epochs", type=int, help="epochs (upper bound when --hours is set)")
    p.add_argument("--hours", type=float, help="wall-clock budget in hours")
    p.add_argument("--imgsz", type=int, help="input size")
    p.add_argument("--batch", type=int, help="batch size")
    p.add_argument("--fraction", type=float, help="use this fraction of the training images")
    p.add_argument("--init", help="auto | scratch | pretrained | a model folder or .pt (e.g. models/current)")
    p.add_argument(
        "--fast-cpu",
        dest="fast_cpu",
        choices=["auto", "on", "channels_last", "off"],
        help="CPU path: auto (bf16 + channels-last with bf16 units, else channels-last), on (bf16), channels_last, off",
    )
    p.add_argument("--device", help="cpu (default) or CUDA devices, e.g. 0 or 0,1 (AMP on, the CPU fast path off)")
    p.add_argument("--int8", action="store_true", default=None, help="also export an INT8 model")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting, e.g. --set lr0=0.01 (Ultralytics keys allowed)",
    )
    p.add_argument("--version", help="model folder name (default yolo11n-<UTC date-time>)")
    p.add_argument("--data", type=Path, help="a data.yaml to train on instead of building the default set")
    p.add_argument("--models-dir", type=Path, default=None, help="where model folders go (default models/)")
    p.add_argument("--runs-dir", type=Path, default=None, help="Ultralytics run folders (default build/train/)")
    p.add_argument("--resume", type=Path, help="continue an interrupted run from its weights/last.pt")
    p.add_argument("--weights", type=Path, help="skip training: export, evaluate and package these weights")
    p.add_argument(
        "--soup",
        type=Path,
        nargs="+",
        metavar="MODEL",
        help="skip training: average these model folders / .pt checkpoints (same lineage) into a greedy "
        "weight soup chosen on val, then package it",
    )
    p.add_argument("--no-crosscheck", action="store_true", help="skip Ultralytics' validator cross-check")


def run(args: argparse.Namespace) -> int:
    from training.config import TRAIN_CONFIG, load_train_config
    from training.download import DownloadError
    from training.evaluate import EvaluationError
    from training.pipeline import RUNS_DIR, run_pipeline
    from training.train import MODELS_DIR

    overrides = {
        k: getattr(args, k)
        for k in ("epochs", "hours", "imgsz", "batch", "fraction", "init", "fast_cpu", "int8", "device")
    }
    try:
        cfg = load_train_config(args.config or TRAIN_CONFIG, overrides, args.set)
        if sum(x is not None for x in (args.resume, args.weights, args.soup)) > 1:
            raise CLIError("--resume, --weights and --soup exclude each other")
        for p in (args.data, args.resume, args.weights, *(args.soup or [])):
            if p is not None and not Path(p).exists():
                raise CLIError(f"{p} does not exist")
        folder = run_pipeline(
            cfg,
            version=args.version,
            data_yaml=args.data,
            models_dir=args.models_dir or MODELS_DIR,
            weights=args.weights,
            soup=args.soup,
            resume=args.resume,
            crosscheck=not args.no_crosscheck,
            runs_dir=args.runs_dir or RUNS_DIR,
        )
    except (DownloadError, EvaluationError, FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(f"done: {folder}")
    return 0
