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
    parser.add_argument(
        "--backend", choices=["auto", "onnxruntime", "openvino"], help="inference runtime (default auto: the fastest)"
    )
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
    parser.add_argument(
        "--out-db",
        metavar="STORE",
        help="also store the results (a SQLite file or a SQLAlchemy URL) and record them as a flight of --site; "
        "the site's findings are then matched across flights (pvwind history)",
    )
    parser.add_argument("--flight-date", metavar="YYYY-MM-DD", help="with --out-db: the flight's date "
                        "(default: the images' capture time)")  # fmt: skip
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

    flown_on = _check_out_db(args)
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
    stored: list = []
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
        raw = r  # every finding: the asset view is for this run's outputs, the store keeps them all
        r = r.in_context(site=args.site, flight=flight).for_asset(args.asset_type)
        if decoded is not None:
            name = _annotated_name(src, used)
            save_annotated(decoded.pixels, r, out / "annotated" / name, det.priority_config)
            r = r.in_context(annotated=f"annotated/{name}")
            r.keep_decoded(None)  # free the pixels
        raw.keep_decoded(None)
        if args.out_db and raw.ok and raw.sha256:
            stored.append((flight, raw))
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
    if args.out_db:
        _store(args, stored, det.model_key, flown_on)
    write_json(results, out / "results.json", meta)
    write_geojson(results, out / "defects.geojson")
    write_csv(results, out / "defects.csv")
    if not args.quiet:
        _print_summary(results, rollup(results), out, elapsed)
    failed = sum(not r.ok for r in results)
    return 1 if failed == len(results) else 0


def _check_out_db(args: argparse.Namespace):  # noqa: ANN202
    """--out-db needs --site; the flight date, if given, as a date."""
    from datetime import date

    if not args.out_db:
        if args.flight_date:
            raise CLIError("--flight-date goes with --out-db")
        return None
    if not args.site:
        raise CLIError("--out-db records the images as a flight of a site: give --site (and --flight)")
    if not args.flight_date:
        return None
    try:
        return date.fromisoformat(args.flight_date)
    except ValueError:
        raise CLIError(f"--flight-date {args.flight_date}: not a date YYYY-MM-DD") from None


def _store(args: argparse.Namespace, stored: list, model_key: str, flown_on) -> None:  # noqa: ANN001
    """The results into the store (images by content hash, without their bytes), recorded as
    flights of --site (--flight, else one per folder), then the site's tracks brought up to date."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from history.config import HistoryConfigError
    from history.tracker import match_site
    from storage.archive import ArchiveIndex
    from storage.database import database_url, shown_url
    from storage.flights import FlightLog
    from storage.store import Store

    try:
        store = Store.from_url(database_url(args.out_db))
    except ArgumentError as e:
        raise CLIError(f"--out-db {args.out_db}: not a database URL ({e})") from None
    except (SQLAlchemyError, OSError, ModuleNotFoundError) as e:
        raise CLIError(f"cannot open the result store {shown_url(args.out_db)}: {str(e).splitlines()[0]}") from None
    try:
        ArchiveIndex(store).write([], [r for _, r in stored], model_key)
        flights: dict[str, list[tuple[str, str]]] = {}
        for flight, r in stored:
            name = args.flight or (Path(flight).name if flight else None) or "flight"
            flights.setdefault(name, []).append((r.sha256, r.source))
        log = FlightLog(store)
        for name, images in flights.items():
            log.record(args.site, name, images, model_key, flown_on=flown_on, complete=True)
        rep = match_site(store, args.site)
        if not args.quiet:
            states = ", ".join(f"{n} {k}" for k, n in sorted(rep.states.items())) or "nothing to match"
            print(f"history: site {args.site}: {', '.join(rep.flights) or 'up to date'} ({states}) "
                  f"-> {shown_url(args.out_db)}", file=sys.stderr)  # fmt: skip
    except HistoryConfigError as e:
        raise CLIError(str(e)) from None
    except SQLAlchemyError as e:
        raise CLIError(f"the result store {shown_url(args.out_db)} failed: {str(e).splitlines()[0]}") from None
    finally:
        store.close()


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
