"""``pvwind inspect IMAGES_OR_FOLDERS... --out DIR``.

Writes ``DIR/results.json`` (every image as :class:`detector.results.ImageResult`, the
same JSON the API returns, plus roll-ups), ``DIR/defects.geojson``, ``DIR/defects.csv``
and ``DIR/annotated/*.jpg``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from detector.decode import is_image_path
from pvwind.cli import CLIError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDERS", help="image files and/or folders")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--model", help="model folder or .onnx (default: $PVWIND_MODEL or models/current)")
    parser.add_argument("--config", type=Path, help="detector settings YAML (default: configs/detector.yaml)")
    parser.add_argument("--backend", choices=["onnxruntime", "openvino"], help="inference runtime")
    parser.add_argument("--precision", choices=["bf16", "f32", "f16"], help="openvino precision")
    parser.add_argument("--threads", type=int, help="inference threads (0: all cores)")
    parser.add_argument("--batch-size", type=int, help="images or tiles per session run")
    parser.add_argument("--conf", type=float, help="one confidence threshold for every class")
    parser.add_argument("--tiling", choices=["off", "auto", "on"], help="slice large frames into tiles")
    parser.add_argument("--zone", help="position label for the priority rules (e.g. blade zone: root, mid, tip)")
    parser.add_argument(
        "--asset-type",
        choices=["auto", "pv", "wind"],
        default="auto",
        help="keep only this asset's findings (auto: all; as the API's asset_type)",
    )
    parser.add_argument("--site", help="site name stored with every result")
    parser.add_argument("--flight", help="flight name for every image (default: each image's folder)")
    parser.add_argument(
        "--group-by",
        choices=["folder", "none"],
        default="folder",
        help="without --flight: one flight per folder, or none (one roll-up over all images)",
    )
    parser.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    parser.add_argument("--no-annotate", action="store_true", help="skip the annotated images")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def collect_images(inputs: list[str], recursive: bool = True) -> list[Path]:
    """Expand folders into image files (sorted); keep explicit files whatever their suffix."""
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.glob("*")
            files = sorted(f for f in it if f.is_file() and is_image_path(f) and not f.name.startswith("."))
        elif p.is_file():
            files = [p]
        else:
            raise CLIError(f"{raw}: no such file or folder")
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _annotated_name(path: Path, used: set[str]) -> str:
    base = path.stem
    name, k = f"{base}.jpg", 1
    while name in used:
        k += 1
        name = f"{base}_{k}.jpg"
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    from detector import Detector
    from detector.annotate import save_annotated
    from detector.export import write_csv, write_geojson, write_json
    from detector.model import ModelLoadError
    from detector.results import rollup

    images = collect_images(args.inputs, recursive=not args.no_recursive)
    if not images:
        raise CLIError("no images found (looked for " + ", ".join(sorted({".jpg", ".png", ".tif"})) + " ...)")
    try:
        det = Detector(
            args.model,
            config=args.config,
            backend=args.backend,
            precision=args.precision,
            threads=args.threads,
            batch_size=args.batch_size,
        )
    except (ModelLoadError, FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create {out}: {e.strerror}") from None

    from tqdm import tqdm

    results = []
    used: set[str] = set()
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(images), unit="img", disable=args.quiet or len(images) < 2, file=sys.stderr, dynamic_ncols=True
    )
    stream = det.iter_inspect(
        images,
        conf=args.conf,
        tiling=args.tiling,
        zone=args.zone,
        chunk_size=args.batch_size,
        keep_images=not args.no_annotate,
    )
    for r in stream:
        src = Path(r.source)
        flight = args.flight or (str(src.parent) if args.group_by == "folder" else None)
        decoded = r.decoded
        r = r.in_context(site=args.site, flight=flight).for_asset(args.asset_type)
        if decoded is not None:
            name = _annotated_name(src, used)
            save_annotated(decoded.pixels, r, out / "annotated" / name, det.priority_config)
            r = r.in_context(annotated=f"annotated/{name}")
            r.keep_decoded(None)  # free the pixels
        results.append(r)
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - t0
    meta = {
        "model": {**det.info.to_dict(), "key": det.model_key},
        "backend": det.backend.name,
        "settings": det.config.model_dump(mode="json"),
        "elapsed_s": round(elapsed, 3),
    }
    write_json(results, out / "results.json", meta)
    write_geojson(results, out / "defects.geojson")
    write_csv(results, out / "defects.csv")
    if not args.quiet:
        _print_summary(results, rollup(results), out, elapsed)
    failed = sum(not r.ok for r in results)
    return 1 if failed == len(results) else 0


def _print_summary(results, groups, out: Path, elapsed: float) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    t = Table(title=f"{len(results)} images in {elapsed:.1f} s -> {out}")
    for col in ("group", "images", "failed", "defects", "worst", "P1", "P2", "P3", "P4"):
        t.add_column(col, justify="left" if col == "group" else "right")
    for g, s in groups.items():
        t.add_row(
            g,
            str(s.images),
            str(s.images_failed),
            str(s.defects),
            s.worst or "-",
            *(str(s.counts[p]) for p in ("P1", "P2", "P3", "P4")),
        )
    console.print(t)
    for r in results:
        if not r.ok:
            console.print(f"[red]failed[/red] {r.source}: {r.error.message if r.error else r.status}")
