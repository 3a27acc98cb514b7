"""``pvwind review export|import``: predictions out to Label Studio / CVAT (and YOLO / COCO),
corrections back in as a training source."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pvwind.cli import CLIError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sp = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = sp.add_parser("export", help="write predictions as pre-annotations (review order: urgent and unsure first)")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", type=Path, help="a 'pvwind inspect' output folder, its results.json or job results")
    src.add_argument("--store", help="a re-scorer store (pvwind rescore --out): SQLite file or database URL")
    e.add_argument("--model-key", help="with --store: the model key (default: the one with the newest results)")
    e.add_argument("--flight", help="with --store: only this flight folder (and below)")
    e.add_argument("--out", type=Path, required=True, help="output folder")
    e.add_argument(
        "--format",
        action="append",
        choices=["labelstudio", "cvat", "yolo", "coco"],
        help="repeatable (default: all four)",
    )
    e.add_argument("--name", default=None, help="the batch's name (default: the output folder's name)")
    e.add_argument(
        "--image-root",
        type=Path,
        help="image names are relative to it: Label Studio's LOCAL_FILES_DOCUMENT_ROOT / CVAT's share "
        "(default: the images' common folder)",
    )
    e.add_argument("--images", type=Path, action="append", default=[], help="folder to find images in (repeatable)")
    e.add_argument("--url-prefix", help="Label Studio: image URLs are this prefix + name instead of local files")

    i = sp.add_parser("import", help="a corrected Label Studio / CVAT export -> datasets/<name>.yaml + build cache")
    i.add_argument("export_file", type=Path, help="Label Studio JSON export or CVAT for images 1.1 annotations.xml")
    i.add_argument("--predictions", type=Path, required=True, help="the 'pvwind review export' folder it came from")
    i.add_argument("--name", required=True, help="the source's name, e.g. reviewed_siteA_2026_05")
    i.add_argument("--tool", choices=["labelstudio", "cvat"], help="default: from the file type (.json / .xml)")
    i.add_argument("--images", type=Path, action="append", default=[], help="folder to find images in (repeatable)")
    i.add_argument("--datasets-dir", type=Path, default=None, help="manifests folder (default: datasets/)")
    i.add_argument("--cache", type=Path, default=None, help="build cache (default: build/cache)")


def run(args: argparse.Namespace) -> int:
    return _export(args) if args.action == "export" else _import(args)


def _export(args: argparse.Namespace) -> int:
    from review.export import export
    from review.items import load_results, load_store, model_of

    try:
        if args.results is not None:
            if not args.results.exists():
                raise CLIError(f"{args.results}: no such file or folder")
            results, meta = load_results(args.results)
        else:
            results, meta = load_store(args.store, args.model_key, args.flight), {}
        if not results:
            raise CLIError("no results to export")
        written = export(
            results,
            args.out,
            formats=args.format or ("labelstudio", "cvat", "yolo", "coco"),
            name=args.name or args.out.resolve().name,
            model=args.model_key or model_of(results, meta),
            image_root=args.image_root,
            image_dirs=args.images,
            url_prefix=args.url_prefix,
        )
    except (ValueError, OSError) as e:
        raise CLIError(str(e)) from None
    man = json.loads((args.out / "review_manifest.json").read_text())
    print(f"{len(man['images'])} images in review order -> {args.out}")
    for fmt, paths in written.items():
        shown = [str(p) for p in paths[:2]] + ([f"... {len(paths) - 2} more"] if len(paths) > 2 else [])
        print(f"  {fmt}: {', '.join(shown)}")
    if man.get("image_root"):
        print(f"  image root: {man['image_root']} (Label Studio: LOCAL_FILES_DOCUMENT_ROOT)")
    return 0


def _import(args: argparse.Namespace) -> int:
    from review.ingest import DEFAULT_CACHE, import_review
    from training.sources import DATASETS_DIR

    if not args.export_file.is_file():
        raise CLIError(f"{args.export_file}: no such file")
    try:
        rep = import_review(
            args.export_file,
            args.predictions,
            args.name,
            tool=args.tool,
            datasets_dir=args.datasets_dir or DATASETS_DIR,
            cache=args.cache or DEFAULT_CACHE,
            image_dirs=args.images,
        )
    except (ValueError, OSError, KeyError) as e:
        raise CLIError(str(e)) from None
    o = rep.review["outcomes"]
    im = rep.review["images"]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    print(f"{rep.name}: {im.get('reviewed', 0)} reviewed images ({im.get('not_reviewed', 0)} not reviewed)")
    print(f"  files: {rep.folder}")
    print(
        f"  predictions {o['predictions']}: confirmed {o['confirmed']}, moved {o['moved']}, "
        f"relabelled {o['relabelled']}, deleted {o['deleted']}; added {o['added']}; "
        f"precision {pct(o['precision'])}, recall {pct(o['recall'])}"
    )
    skipped = {k: v for k, v in im.items() if k not in ("exported", "reviewed", "not_reviewed") and v}
    if skipped:
        print(f"  left out: {skipped}")
    print(f"  manifest: {rep.manifest} (the next 'make data' / 'make train' includes it)")
    return 0
