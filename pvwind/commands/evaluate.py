"""``pvwind evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pvwind.cli import CLIError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=Path("models/current"), help="model folder or .onnx")
    p.add_argument("--data", type=Path, required=True, help="a YOLO data.yaml whose class names are taxonomy names")
    p.add_argument("--split", default="test", help="split key in data.yaml (default test)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "openvino"])
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument(
        "--ci",
        type=int,
        default=0,
        metavar="DRAWS",
        help="also a 95%% bootstrap interval of mAP50 and each class's AP50, drawn by source group (e.g. 200)",
    )
    p.add_argument(
        "--choose-thresholds",
        action="store_true",
        help="choose the model folder's per-class thresholds again on the val split, then report test at them",
    )


def run(args: argparse.Namespace) -> int:
    from training.evaluate import EvaluationError, evaluate, format_table

    if not args.model.exists():
        raise CLIError(f"model {args.model} does not exist")
    try:
        if args.choose_thresholds:
            from training.thresholds import rechoose

            if not args.model.is_dir():
                raise CLIError("--choose-thresholds needs a model folder (thresholds.json is written there)")
            result = rechoose(args.model, args.data)["evaluation"]
        else:
            if args.ci < 0:
                raise CLIError(f"--ci takes a number of draws >= 0, got {args.ci}")
            result = evaluate(args.model, args.data, args.split, backend=args.backend, progress=True, ci_draws=args.ci)
    except (EvaluationError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0
