"""``pvwind data build``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pvwind.cli import CLIError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sp = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = sp.add_parser("build", help="build (or reuse) the unified YOLO dataset")
    b.add_argument("--out", type=Path, default=None, help="output folder (default build/dataset)")
    b.add_argument(
        "--mirror",
        default=None,
        help="folder holding one sub-folder per source; '' downloads from upstream "
        "(default: $DATA_MIRROR, else ../shared/datasets when it exists)",
    )
    b.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    b.add_argument("--source", action="append", default=None, help="build only this source (repeatable)")
    b.add_argument("--force", action="store_true", help="rebuild even when nothing changed")


def run(args: argparse.Namespace) -> int:
    from training.build import DEFAULT_OUT, build_dataset, default_mirror
    from training.download import DownloadError
    from training.splits import SplitLeakError

    mirror = default_mirror() if args.mirror is None else (Path(args.mirror) if args.mirror else None)
    try:
        report = build_dataset(
            args.out or DEFAULT_OUT, mirror=mirror, seed=args.seed, force=args.force, sources=args.source
        )
    except (DownloadError, SplitLeakError, FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(report.table())
    print(f"dataset: {report.out / 'data.yaml'}" + ("" if report.rebuilt else " (unchanged)"))
    return 0
