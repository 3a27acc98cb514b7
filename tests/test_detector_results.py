"""The one result type: stored results come back identical, earlier schema versions are read,
and every export is derived from the model (a field added there appears everywhere)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from detector.export import to_csv, to_geojson
from detector.priority import assess, summarize
from detector.results import (
    ROW_COLUMNS,
    SCHEMA_VERSION,
    Box,
    Finding,
    GeoInfo,
    ImageError,
    ImageResult,
    Location,
    Thermal,
    finding_row,
)

DATA = Path(__file__).parent / "data"


def _result() -> ImageResult:
    findings = [
        Finding(
            **assess("pv_hotspot", 0.81, area_frac=0.004).model_dump(),
            index=0,
            class_id=8,
            class_name="pv_hotspot",
            asset="pv",
            confidence=0.81,
            box=Box.of((10, 20, 30, 44)),
            area_frac=0.004,
            location=Location(latitude=47.1, longitude=8.2, quality="estimate"),
        ),
        Finding(
            **assess("pv_physical_damage", 0.3, area_frac=0.0001).model_dump(),
            index=1,
            class_id=7,
            class_name="pv_physical_damage",
            asset="pv",
            confidence=0.3,
            box=Box.of((0, 0, 5, 5)),
            area_frac=0.0001,
        ),
    ]
    return ImageResult(
        source="a/b.jpg",
        site="plant-1",
        flight="a",
        sha256="ab" * 32,
        width=640,
        height=512,
        findings=findings,
        summary=summarize((f.priority, f.class_name) for f in findings),
        geo=GeoInfo(quality="estimate", note="nadir", gsd_m=0.035),
        model="v1@123+abc",
    )


def test_stored_payload_round_trips_without_the_request_context():
    r = _result()
    payload = r.payload()
    assert payload["schema_version"] == SCHEMA_VERSION
    assert not {"source", "site", "flight", "index"} & set(payload), "context is not stored"
    back = ImageResult.from_payload(json.loads(json.dumps(payload)), source="a/b.jpg", site="plant-1", flight="a")
    assert back == r
    assert back.model_dump(mode="json") == r.model_dump(mode="json")
    assert len(back.findings) == 2 and back.priority == r.priority == min(f.priority for f in r.findings)
    assert to_geojson([back]) == to_geojson([r])
    assert to_csv([back]) == to_csv([r])


def test_errors_survive_and_context_can_be_changed():
    r = ImageResult.failed(ImageError(code="truncated_image", status=422, message="truncated JPEG"), source="x.jpg")
    back = ImageResult.from_payload(r.payload(), source="archive/x.jpg", flight="flight-1")
    assert back.source == "archive/x.jpg" and back.flight == "flight-1"
    assert not back.ok and back.error is not None and back.error.code == "truncated_image"
    with pytest.raises(ValueError, match="not context"):
        r.in_context(sha256="00")


def test_a_schema_1_payload_is_read():
    """A payload stored by the previous release (tests/data/result_payload_v1.json, written by
    it from a real image) reads into the current model with its findings and boxes."""
    v1 = json.loads((DATA / "result_payload_v1.json").read_text())
    assert v1["defects"], "the fixture has findings to compare"
    r = ImageResult.from_payload(v1, source="blade.jpg")
    assert r.ok and r.schema_version == SCHEMA_VERSION and r.model == v1["model_version"]
    assert [f.class_name for f in r.findings] == [d["class_name"] for d in v1["defects"]]
    assert [list(f.box.xyxy) for f in r.findings] == [d["xyxy"] for d in v1["defects"]]
    assert [f.priority for f in r.findings] == [d["priority"] for d in v1["defects"]]
    assert r.summary is not None and r.summary.worst == v1["summary"]["worst"]
    # and is stored back in the current schema
    assert ImageResult.from_payload(r.payload(), source="blade.jpg") == r


def test_flat_rows_follow_the_model():
    r = _result()
    rows = list(csv.DictReader(io.StringIO(to_csv([r]))))
    assert len(rows) == 2
    assert tuple(rows[0]) == ROW_COLUMNS
    # every field of a finding appears as a column (nested models spread)
    for name in Finding.model_fields:
        if name == "box":
            assert {"x1", "y1", "x2", "y2"} <= set(ROW_COLUMNS)
        elif name == "location":
            assert {"latitude", "longitude", "geo_quality"} <= set(ROW_COLUMNS)
        elif name == "thermal":  # a nested model: one column per field, prefixed
            assert {f"thermal_{k}" for k in Thermal.model_fields} <= set(ROW_COLUMNS)
        else:
            assert name in ROW_COLUMNS, name
    assert rows[0]["latitude"] == "47.1" and rows[1]["latitude"] == ""
    feats = to_geojson([r])["features"]
    assert feats[0]["geometry"]["coordinates"] == [8.2, 47.1] and feats[1]["geometry"] is None
    assert feats[0]["properties"] == finding_row(r, r.findings[0])


def test_asset_view_filters_and_rerolls():
    r = _result()
    wind = r.for_asset("wind")
    assert wind.findings == [] and wind.summary is not None and wind.summary.defects == 0 and wind.asset == "wind"
    auto = r.for_asset("auto")
    assert auto.asset == "pv" and len(auto.findings) == 2
