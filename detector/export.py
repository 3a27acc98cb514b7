"""Writers: JSON (everything), GeoJSON (one feature per defect) and CSV (one row per defect)."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detector.results import SCHEMA_VERSION, ImageResult, rollup

CSV_COLUMNS = (
    "source",
    "image_id",
    "group",
    "defect",
    "class_name",
    "asset",
    "confidence",
    "priority",
    "level",
    "level_label",
    "action",
    "time_frame",
    "reasons",
    "x1",
    "y1",
    "x2",
    "y2",
    "area_frac",
    "latitude",
    "longitude",
    "geo_quality",
)


def _atomic_write(path: Path, text: str) -> Path:
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
    groups = rollup(results)
    return {
        "schema_version": SCHEMA_VERSION,
        **(extra or {}),
        "summary": {g: s.to_dict() for g, s in groups.items()},
        "images": [r.to_dict() for r in results],
    }


def write_json(results: Sequence[ImageResult], path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    return _atomic_write(Path(path), json.dumps(results_document(results, extra), indent=2, ensure_ascii=False) + "\n")


def to_geojson(results: Sequence[ImageResult]) -> dict[str, Any]:
    """A FeatureCollection with one Point per defect (``geometry: null`` when its position is unknown)."""
    features = []
    for r in results:
        for d in r.defects:
            located = d.latitude is not None and d.longitude is not None
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [round(d.longitude, 8), round(d.latitude, 8)]}
                    if located
                    else None,
                    "properties": {
                        "source": r.source,
                        "image_id": r.image_id,
                        "group": r.group,
                        "defect": d.index,
                        "class_name": d.class_name,
                        "asset": d.asset,
                        "confidence": round(d.confidence, 4),
                        "priority": d.priority,
                        "action": d.assessment.action,
                        "time_frame": d.assessment.time_frame,
                        "level": d.assessment.level,
                        "level_label": d.assessment.level_label,
                        "xyxy": [round(v, 1) for v in d.xyxy],
                        "geo_quality": d.geo_quality,
                        "geo_note": r.geo_note,
                    },
                }
            )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(results: Sequence[ImageResult], path: str | Path) -> Path:
    return _atomic_write(Path(path), json.dumps(to_geojson(results), indent=1, ensure_ascii=False) + "\n")


def csv_rows(results: Sequence[ImageResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        for d in r.defects:
            a = d.assessment
            rows.append(
                {
                    "source": r.source,
                    "image_id": r.image_id,
                    "group": r.group or "",
                    "defect": d.index,
                    "class_name": d.class_name,
                    "asset": d.asset or "",
                    "confidence": f"{d.confidence:.4f}",
                    "priority": d.priority,
                    "level": "" if a.level is None else a.level,
                    "level_label": a.level_label or "",
                    "action": a.action,
                    "time_frame": a.time_frame,
                    "reasons": "; ".join(a.reasons),
                    "x1": f"{d.xyxy[0]:.1f}",
                    "y1": f"{d.xyxy[1]:.1f}",
                    "x2": f"{d.xyxy[2]:.1f}",
                    "y2": f"{d.xyxy[3]:.1f}",
                    "area_frac": f"{d.area_frac:.6f}",
                    "latitude": "" if d.latitude is None else f"{d.latitude:.8f}",
                    "longitude": "" if d.longitude is None else f"{d.longitude:.8f}",
                    "geo_quality": d.geo_quality,
                }
            )
    return rows


def write_csv(results: Sequence[ImageResult], path: str | Path) -> Path:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(csv_rows(results))
    return _atomic_write(Path(path), buf.getvalue())
