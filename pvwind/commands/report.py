"""``pvwind report FOLDER`` (a ``pvwind inspect`` output) or ``pvwind report --store URL --flight F``
(a flight of a ``pvwind rescore`` store): the flight report as one self-contained HTML file and/or
a PDF (see docs/report.md)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pvwind.cli import CLIError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", type=Path, metavar="FOLDER", help="a pvwind inspect --out folder")
    parser.add_argument("--store", metavar="URL", help="a pvwind rescore database (sqlite:///... or postgresql+...)")
    parser.add_argument("--flight", help="with --store: the flight (as pvwind rescore names it: site/flight folder)")
    parser.add_argument("--model", help="with --store: the model key (default: the one with most results)")
    parser.add_argument("--out", type=Path, help="output file (default: FOLDER/report.html or report.pdf)")
    parser.add_argument("--format", choices=["html", "pdf", "both"], default="html", help="default: html")
    parser.add_argument("--title", help="report title (default: names the site and flight)")
    parser.add_argument("--no-previews", action="store_true", help="embed no annotated image previews (smaller)")


def _from_folder(folder: Path, report_dir: Path):  # noqa: ANN202
    from detector.results import ImageResult
    from report import ImageSource

    path = folder / "results.json"
    if not path.is_file():
        raise CLIError(f"{path} not found: give the --out folder of pvwind inspect")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        results = [ImageResult.model_validate(im) for im in doc["images"]]
    except (ValueError, KeyError, TypeError) as e:
        raise CLIError(f"{path} is not a pvwind inspect results.json ({type(e).__name__}: {str(e)[:200]})") from None

    def original(r: ImageResult) -> bytes | None:
        for p in (Path(r.source), folder / r.source):
            if r.source and p.is_file():
                return p.read_bytes()
        return None

    def annotated(r: ImageResult) -> bytes | None:
        p = folder / r.annotated if r.annotated else None
        return p.read_bytes() if p is not None and p.is_file() else None

    def link(r: ImageResult) -> str | None:
        if not r.annotated or not (folder / r.annotated).is_file():
            return None
        return Path(os.path.relpath(folder.resolve() / r.annotated, report_dir.resolve())).as_posix()

    model = doc.get("model") or {}
    meta = [("Model", str(model["key"]))] if isinstance(model, dict) and model.get("key") else []
    return results, ImageSource(original=original, annotated=annotated, link=link), meta


def _from_store(url: str, flight: str, model: str | None):  # noqa: ANN202
    from sqlalchemy import func, select

    from report import ImageSource
    from rescore.scan import split_flight
    from storage.store import Store
    from storage.tables import RescoreFile, Result

    store = Store.from_url(url, create=False)
    with store.session() as s:
        rows = list(
            s.execute(
                select(RescoreFile.source, RescoreFile.image_sha256)
                .where(RescoreFile.flight == flight)
                .order_by(RescoreFile.source)
            )
        )
        if not rows:
            known = list(s.scalars(select(RescoreFile.flight).distinct().order_by(RescoreFile.flight).limit(10)))
            raise CLIError(f"no flight {flight!r} in {url}; flights: {', '.join(known) or 'none'}")
        shas = [sha for _, sha in rows if sha]
        if model is None:
            model = s.scalar(
                select(Result.model_version)
                .where(Result.image_sha256.in_(shas[:500]))
                .group_by(Result.model_version)
                .order_by(func.count().desc())
                .limit(1)
            )
    if model is None:
        raise CLIError(f"flight {flight!r} has no results in {url}")
    found = store.results_for(shas, model)
    site, _ = split_flight(flight)
    results = [
        found[sha].in_context(source=src, index=i, site=site, flight=flight)
        for i, (src, sha) in enumerate(rows)
        if sha in found
    ]
    by_source = {r.source: r.sha256 for r in results}

    def original(r):  # noqa: ANN001, ANN202
        sha = by_source.get(r.source)
        stored = store.image_bytes([sha]) if sha else {}
        if sha in stored:
            return stored[sha]
        p = Path(r.source)
        return p.read_bytes() if p.is_file() else None  # members of zip/tar archives get no thumbnail

    return results, ImageSource(original=original), [("Model", model), ("Store", url.split("@")[-1])]


def run(args: argparse.Namespace) -> int:
    from report import ReportOptions, build_html, build_pdf, pdf_available

    if (args.folder is None) == (args.store is None):
        raise CLIError("give either an inspect output FOLDER or --store URL --flight NAME")
    if args.store and not args.flight:
        raise CLIError("--store needs --flight")
    default_dir = args.folder if args.folder is not None else Path(".")
    out: Path = args.out or default_dir / ("report.pdf" if args.format == "pdf" else "report.html")
    if args.format in ("pdf", "both") and (why := pdf_available()):
        raise CLIError(why)
    if args.folder is not None:
        results, source, meta = _from_folder(args.folder, out.parent)
    else:
        results, source, meta = _from_store(args.store, args.flight, args.model)
    if not results:
        raise CLIError("no results to report")
    flights = sorted({r.flight for r in results if r.flight})
    title = args.title or ("Inspection report" + (f": {flights[0]}" if len(flights) == 1 else ""))
    opts = ReportOptions(max_previews=0) if args.no_previews else ReportOptions()
    written = []
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format in ("html", "both"):
        html_path = out if out.suffix != ".pdf" else out.with_suffix(".html")
        html_path.write_text(build_html(results, title=title, source=source, meta=meta, options=opts), "utf-8")
        written.append(html_path)
    if args.format in ("pdf", "both"):
        pdf_path = out.with_suffix(".pdf")
        pdf_path.write_bytes(build_pdf(results, title=title, source=source, meta=meta, options=opts))
        written.append(pdf_path)
    for p in written:
        print(p)
    return 0
