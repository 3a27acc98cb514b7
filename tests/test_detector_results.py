"""Stored results come back as the same ``ImageResult`` (the service and re-scorer export them)."""

from __future__ import annotations

from detector.export import csv_rows, to_geojson
from detector.priority import PrioritySummary, assess
from detector.results import Defect, ImageResult


def _result() -> ImageResult:
    defects = [
        Defect(
            0,
            8,
            "pv_hotspot",
            0.81,
            (10.0, 20.0, 30.0, 44.0),
            0.004,
            assess("pv_hotspot", 0.81, area_frac=0.004),
            latitude=47.1,
            longitude=8.2,
            geo_quality="estimate",
            asset="pv",
        ),
        Defect(
            1,
            7,
            "pv_physical_damage",
            0.3,
            (0.0, 0.0, 5.0, 5.0),
            0.0001,
            assess("pv_physical_damage", 0.3, area_frac=0.0001),
            asset="pv",
        ),
    ]
    summary = PrioritySummary()
    for d in defects:
        summary.add(d.priority, d.class_name)
    return ImageResult(
        source="a/b.jpg",
        image_id="b",
        sha256="ab" * 32,
        width=640,
        height=512,
        defects=defects,
        summary=summary,
        geo_quality="estimate",
        geo_note="nadir",
        gsd_m=0.035,
        group="a",
        model_version="v1@123",
    )


def test_round_trip_keeps_defects_priorities_and_exports():
    r = _result()
    back = ImageResult.from_dict(r.to_dict())
    d1, d2 = r.to_dict(), back.to_dict()
    for k in ("camera", "timings_ms", "image", "tiles"):  # not stored: pose, timings, decode info
        d1.pop(k), d2.pop(k)
    assert d1 == d2
    assert [d.priority for d in back.defects] == [d.priority for d in r.defects]
    assert to_geojson([back]) == to_geojson([r])
    assert list(csv_rows([back])) == list(csv_rows([r]))


def test_source_and_group_can_be_overridden_and_errors_survive():
    r = ImageResult(source="x.jpg", error="truncated JPEG", error_reason="truncated")
    back = ImageResult.from_dict(r.to_dict(), source="archive/x.jpg", group="flight-1")
    assert back.source == "archive/x.jpg" and back.group == "flight-1"
    assert not back.ok and back.error_reason == "truncated"
