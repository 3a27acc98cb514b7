"""`pvwind inspect`: JSON, GeoJSON, CSV and annotated images from real DJI frames."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from detector_fixtures import XT2_FRAMES, model_dir, need_xt2
from PIL import Image

from detector.geo import haversine_m
from pvwind.cli import main as pvwind


def test_inspect_writes_all_outputs(tmp_path, capsys):
    need_xt2()
    flight = tmp_path / "flight1"
    (flight / "sub").mkdir(parents=True)
    for f in XT2_FRAMES[:3]:
        shutil.copy(f, flight / f.name)
    shutil.copy(XT2_FRAMES[3], flight / "sub" / XT2_FRAMES[3].name)
    (flight / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (flight / "notes.txt").write_text("not an image, not picked up")
    out = tmp_path / "out"
    code = pvwind(
        ["inspect", str(flight), "--out", str(out), "--model", str(model_dir()), "--conf", "0.001", "--quiet"]
    )
    assert code == 0

    doc = json.loads((out / "results.json").read_text())
    images = doc["images"]
    from detector.model import choose_backend

    assert len(images) == 5 and doc["model"]["names"] and doc["backend"] == choose_backend(model_dir()).backend
    ok = [r for r in images if r["status"] == "ok"]
    failed = [r for r in images if r["status"] == "error"]
    assert len(ok) == 4 and failed[0]["error"]["code"] in ("corrupt_image", "truncated_image")
    n_defects = sum(len(r["findings"]) for r in images)
    assert n_defects > 0, "at this threshold the frames have findings to check"
    # roll-up per folder (one flight per folder)
    assert set(doc["summary"]) == {str(flight), str(flight / "sub")}
    assert sum(s["defects"] for s in doc["summary"].values()) == n_defects

    geo = json.loads((out / "defects.geojson").read_text())
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == n_defects
    cams = {r["source"]: r["camera"] for r in ok}
    for f in geo["features"]:
        lon, lat = f["geometry"]["coordinates"]
        cam = cams[f["properties"]["source"]]
        assert haversine_m(lat, lon, cam["latitude"], cam["longitude"]) < 25  # within the XT2 footprint at 39 m
        assert f["properties"]["priority"] in ("P1", "P2", "P3", "P4") and f["properties"]["geo_quality"] == "estimate"

    with open(out / "defects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_defects
    assert {"priority", "action", "time_frame", "latitude", "longitude", "class_name"} <= set(rows[0])
    assert all(row["latitude"] and row["longitude"] for row in rows)

    drawn = sorted((out / "annotated").glob("*.jpg"))
    assert len(drawn) == 4
    for r in ok:
        im = Image.open(out / r["annotated"])
        assert im.size == (r["width"], r["height"])
    # boxes are drawn where findings are, and nothing is drawn on an image without any
    withdefects = [r for r in ok if r["findings"]]
    assert withdefects
    r = withdefects[0]
    src = np.asarray(Image.open(r["source"])).astype(int)
    ann = np.asarray(Image.open(out / r["annotated"])).astype(int)
    assert np.abs(src - ann).mean() > 0.01
    b = r["findings"][0]["box"]
    x1, y1, x2, y2 = (int(round(b[k])) for k in ("x1", "y1", "x2", "y2"))
    edge = np.abs(src[y1, x1:x2] - ann[y1, x1:x2]).mean()  # the box's top edge is drawn
    assert edge > 20, edge


def test_inspect_user_errors(tmp_path, capsys):
    assert pvwind(["inspect", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert pvwind(["inspect", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    need_xt2()
    assert pvwind(["inspect", str(XT2_FRAMES[0]), "--out", str(tmp_path / "o"), "--model", str(tmp_path)]) == 2
    assert "model.onnx" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--no-annotate"])
def test_inspect_without_annotation(tmp_path, flag):
    need_xt2()
    out = tmp_path / "o"
    args = ["inspect", str(XT2_FRAMES[0]), "--out", str(out), "--model", str(model_dir()), "--quiet", flag]
    assert pvwind(args) == 0
    assert (out / "results.json").is_file() and not (out / "annotated").exists()
