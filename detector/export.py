"""Writers of :class:`detector.results.ImageResult` lists: the JSON document (everything),
GeoJSON (one Point feature per finding) and CSV (one row per finding). GeoJSON
properties and CSV columns are :func:`detector.results.finding_row`, so a field added to
the result model appears in every export."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from detector.results import ROW_COLUMNS, SCHEMA_VERSION, ImageResult, finding_row, rollup


def atomic_write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def results_document(results: Sequence[ImageResult], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"schema_version", **extra, "summary": {group: summary}, "images": [...]}``."""
    groups = rollup(results)
    return {
        "schema_version": SCHEMA_VERSION,
        **(extra or {}),
        "summary": {g: s.to_dict() for g, s in groups.items()},
        "images": [r.model_dump(mode="json") for r in results],
    }


def write_json(results: Sequence[ImageResult], path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    return atomic_write(Path(path), json.dumps(results_document(results, extra), indent=2, ensure_ascii=False) + "\n")


def rows(results: Iterable[ImageResult]) -> list[dict[str, Any]]:
    """One flat record per finding (:data:`detector.results.ROW_COLUMNS`)."""
    return [finding_row(r, f) for r in results for f in r.findings]


def geojson_features(results: Iterable[ImageResult]) -> list[dict[str, Any]]:
    """One Point feature per finding (``geometry: null`` when its position is unknown)."""
    out = []
    for r in results:
        for f in r.findings:
            loc = f.location
            out.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [loc.longitude, loc.latitude]} if loc else None,
                    "properties": finding_row(r, f),
                }
            )
    return out


def to_geojson(results: Iterable[ImageResult]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": geojson_features(results)}


def write_geojson(results: Sequence[ImageResult], path: str | Path) -> Path:
    return atomic_write(Path(path), json.dumps(to_geojson(results), indent=1, ensure_ascii=False) + "\n")


def csv_writer(f: io.TextIOBase | Any) -> csv.DictWriter:
    """A DictWriter for finding rows, header written."""
    w = csv.DictWriter(f, fieldnames=ROW_COLUMNS, lineterminator="\n")
    w.writeheader()
    return w


def to_csv(results: Iterable[ImageResult]) -> str:
    buf = io.StringIO()
    csv_writer(buf).writerows(rows(results))
    return buf.getvalue()


def write_csv(results: Sequence[ImageResult], path: str | Path) -> Path:
    return atomic_write(Path(path), to_csv(results))
