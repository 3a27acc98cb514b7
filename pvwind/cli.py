"""The ``pvwind`` command. Each sub-command imports its package lazily, so that
``pvwind inspect`` and ``pvwind serve`` work without the training extras."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, extra it needs, help); the module defines add_arguments(parser) and run(args) -> int
    "data": ("pvwind.commands.data", "train", "build the unified training set from the public sources"),
    "train": ("pvwind.commands.train", "train", "train, export and evaluate a model"),
    "evaluate": ("pvwind.commands.evaluate", "train", "evaluate an ONNX model on a YOLO-format split"),
    "inspect": ("pvwind.commands.inspect", "serve", "detect defects in images or folders"),
    "serve": ("pvwind.commands.serve", "serve", "run the inspection service"),
    "rescore": ("pvwind.commands.rescore", "rescore", "re-score an image archive with a model"),
    "review": (
        "pvwind.commands.review",
        "rescore",
        "human review: predictions to Label Studio / CVAT, corrections back into training",
    ),
    "history": (
        "pvwind.commands.history",
        "serve",
        "findings across flights: changes, early warnings, estimated energy loss",
    ),
    "report": (
        "pvwind.commands.report",
        "serve",
        "the flight report (HTML / PDF) of an inspect folder or a rescore flight",
    ),
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _load(module: str, extra: str):  # noqa: ANN202
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise CLIError(
            f"this command needs the '{extra}' extras ({e.name} is missing): pip install -e '.[{extra}]'"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="pvwind", description="Drone inspection defect detection for PV plants and wind farms."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    runners: dict[str, Callable] = {}
    for name, (module, extra, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == chosen:
            try:
                mod = _load(module, extra)
            except CLIError as e:
                print(f"pvwind {name}: {e}", file=sys.stderr)
                return 2
            mod.add_arguments(p)
            runners[name] = mod.run
    args = parser.parse_args(argv)
    try:
        return int(runners[args.command](args) or 0)
    except CLIError as e:
        print(f"pvwind {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pvwind {args.command}: interrupted", file=sys.stderr)
        return 130


def existing_path(value: str) -> Path:
    p = Path(value)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{value} does not exist")
    return p


if __name__ == "__main__":
    sys.exit(main())
