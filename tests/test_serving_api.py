"""The inspection service through a real uvicorn server: detections equal the detector's,
jobs and their exports, the model and health endpoints, and a table of bad inputs."""

from __future__ import annotations

import csv
import io
import time
import zlib
from pathlib import Path

import pytest
from serving_fixtures import API_KEY, Server, files_param, metric, mirror_images, serving_model

from detector import Detector

LIMITS = {
    "PVWIND_MAX_FILES": "6",
    "PVWIND_MAX_FILE_BYTES": str(3_000_000),
    "PVWIND_MAX_REQUEST_BYTES": str(8_000_000),
    "PVWIND_JOB_CHUNK_IMAGES": "2",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"), env=LIMITS)
    with srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def detector():
    return Detector(serving_model(), threads=1)


@pytest.fixture(scope="module")
def images():
    paths = mirror_images(6)
    assert len(paths) == 6
    return paths


def _close(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= tol


def _same_findings(got: list[dict], want) -> None:
    assert len(got) == len(want.findings)
    for g, w in zip(got, want.findings, strict=True):
        assert g["class_name"] == w.class_name
        assert g["priority"] == w.priority
        assert _close(g["confidence"], w.confidence, 2e-3)
        box = g["box"]
        for k, v in zip(("x1", "y1", "x2", "y2"), w.box.xyxy, strict=True):
            assert abs(box[k] - v) <= 0.5
        if w.location is not None:
            assert _close(g["location"]["latitude"], w.location.latitude, 1e-6)
            assert _close(g["location"]["longitude"], w.location.longitude, 1e-6)
        else:
            assert g["location"] is None


def test_inspection_matches_detector_called_directly(client, detector, images):
    r = client.post("/v1/inspections", files=files_param(images), data={"site": "plant-7", "flight": "f-001"})
    assert r.status_code == 200, r.text
    body = r.json()
    direct = detector.inspect([(p.name, p.read_bytes()) for p in images])
    assert [e["source"] for e in body["images"]] == [p.name for p in images]
    assert sum(len(w.findings) for w in direct) > 0, "the images must have findings to compare"
    for entry, want, path in zip(body["images"], direct, images, strict=True):
        assert entry["status"] == "ok"
        assert entry["sha256"] == want.sha256
        assert entry["bytes"] == path.stat().st_size
        assert (entry["width"], entry["height"]) == (want.width, want.height)
        assert entry["priority"] == want.priority
        _same_findings(entry["findings"], want)
        if want.camera is not None and want.camera.has_gps:
            assert _close(entry["camera"]["latitude"], want.camera.latitude, 1e-9)
            assert _close(entry["camera"]["longitude"], want.camera.longitude, 1e-9)
            assert entry["geo"]["quality"] == want.geo.quality
    # the XT2 frames carry GPS: their location metadata must come through
    assert sum(e["camera"] is not None and e["camera"]["latitude"] is not None for e in body["images"]) >= 2
    s = body["summary"]
    assert s["images"] == 6 and s["images_failed"] == 0
    assert s["defects"] == sum(len(w.findings) for w in direct)
    assert (body["site"], body["flight"], body["asset_type"]) == ("plant-7", "f-001", "auto")


def test_one_bad_image_keeps_the_others(client, images, detector):
    good = images[0].read_bytes()
    files = [
        ("files", ("ok.jpg", good, "image/jpeg")),
        ("files", ("notes.jpg", b"this is a text file, not a photo", "image/jpeg")),
        ("files", ("cut.jpg", good[: len(good) // 2], "image/jpeg")),
    ]
    r = client.post("/v1/inspections", files=files)
    assert r.status_code == 200, r.text
    ok, text, cut = r.json()["images"]
    assert ok["status"] == "ok" and len(ok["findings"]) == len(detector.inspect([good])[0].findings)
    assert text["status"] == "error" and text["error"]["code"] == "unsupported_type" and text["error"]["status"] == 415
    assert cut["status"] == "error" and cut["error"]["code"] == "truncated_image"
    assert r.json()["summary"]["images_failed"] == 2


def test_asset_type_filters_defects(client, images):
    files = files_param(images)
    pv = client.post("/v1/inspections", files=files, data={"asset_type": "pv"}).json()
    wind = client.post("/v1/inspections", files=files, data={"asset_type": "wind"}).json()
    both = client.post("/v1/inspections", files=files, data={"asset_type": "auto"}).json()
    assert sum(len(a["findings"]) for a in both["images"]) > 0, "findings to filter"
    for p, w, a in zip(pv["images"], wind["images"], both["images"], strict=True):
        assert all(d["asset"] == "pv" for d in p["findings"])
        assert all(d["asset"] == "wind" for d in w["findings"])
        assert len(p["findings"]) + len(w["findings"]) == len(a["findings"])
        assert p["asset"] == "pv" and w["asset"] == "wind"


def _wait_done(client, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not done: {job}")


def test_job_lifecycle_and_exports(client, images, detector):
    files = files_param(images) + [("files", ("readme.jpg", b"not an image", "text/plain"))]
    r = client.post("/v1/jobs", files=files, data={"flight": "f-002", "asset_type": "auto"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["total"] == 7 and job["failed"] == 1 and job["status"] == "queued"
    job = _wait_done(client, job["id"])
    assert (job["status"], job["done"], job["failed"], job["pending"], job["progress"]) == ("done", 6, 1, 0, 1.0)

    res = client.get(f"/v1/jobs/{job['id']}/results").json()
    assert res["complete"] is True
    entries = res["images"]
    assert [e["source"] for e in entries] == [p.name for p in images] + ["readme.jpg"]
    assert entries[-1]["status"] == "error" and entries[-1]["error"]["code"] == "unsupported_type"
    direct = detector.inspect([(p.name, p.read_bytes()) for p in images])
    for e, want in zip(entries, direct, strict=False):
        _same_findings(e["findings"], want)
    n_defects = sum(len(w.findings) for w in direct)
    assert n_defects > 0
    assert res["summary"]["defects"] == n_defects and res["summary"]["images_failed"] == 1

    gj = client.get(f"/v1/jobs/{job['id']}/results", params={"format": "geojson"})
    assert gj.headers["content-type"].startswith("application/geo+json")
    feats = gj.json()["features"]
    assert gj.json()["type"] == "FeatureCollection" and len(feats) == n_defects
    assert all(f["properties"]["flight"] == "f-002" for f in feats)

    c = client.get(f"/v1/jobs/{job['id']}/results", params={"format": "csv"})
    assert c.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert c.text.startswith("source,site,flight,sha256,model,index,class_id,class_name")
    assert len(rows) == n_defects
    assert {row["source"] for row in rows} <= {p.name for p in images}

    # a finished job cannot be cancelled
    d = client.delete(f"/v1/jobs/{job['id']}")
    assert d.status_code == 409 and d.json()["code"] == "job_finished"


def test_cancel_stops_a_job(client, images):
    # distinct images no other test scored (a stored result is reused at once), scored 2 per step
    fresh = [p for p in mirror_images(48) if p not in images]
    assert len(fresh) >= 30
    n = len(fresh)
    job = client.post("/v1/jobs", files=files_param(fresh)).json()
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    time.sleep(1.5)
    after = client.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "cancelled"
    assert after["done"] < n
    time.sleep(1.0)
    assert client.get(f"/v1/jobs/{job['id']}").json()["done"] == after["done"]  # nothing scored after cancelling
    # the images it did not score read "cancelled", not "pending"
    res = client.get(f"/v1/jobs/{job['id']}/results").json()
    statuses = [e["status"] for e in res["images"]]
    assert "pending" not in statuses and statuses.count("cancelled") == n - after["done"] > 0


def test_model_endpoint(client):
    m = client.get("/v1/model").json()
    from detector.taxonomy import load_taxonomy

    tax = load_taxonomy()
    assert [c["name"] for c in m["classes"]] == tax.names
    assert all(c["description"] for c in m["classes"])
    assert m["key"].startswith(m["version"] + "@") and len(m["sha256"]) == 64
    assert m["backend"] in ("onnxruntime", "openvino")


def test_health_ready_and_metrics(server, client, images):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["model"]
    before = metric(client.get("/metrics").text, "pvwind_images_total", path="inspection", outcome="scored")
    client.post("/v1/inspections", files=files_param(images[:2]))
    text = client.get("/metrics").text
    assert metric(text, "pvwind_images_total", path="inspection", outcome="scored") == before + 2
    assert metric(text, "pvwind_http_requests_total", method="POST", route="/v1/inspections", status="200") >= 1
    assert "pvwind_queue_depth_images" in text and "pvwind_job_backlog_images" in text
    assert "pvwind_http_request_seconds_bucket" in text


def test_docs_and_openapi(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/inspections", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/results", "/v1/model"} <= set(
        spec["paths"]
    )


# ----------------------------------------------------------------------------- bad inputs
def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming huge dimensions (a decompression bomb's header)."""
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    chunk = len(ihdr[4:]).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
    idat = b"IDAT" + zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk + (len(idat) - 4).to_bytes(4, "big") + idat + zlib.crc32(idat).to_bytes(4, "big")
    )


def _one(name: str, data: bytes) -> dict:
    return {"files": [("files", (name, data, "image/jpeg"))]}


def _jpeg() -> bytes:
    return mirror_images(1)[0].read_bytes()


# name: (method, path, request kwargs factory, api key, status, code, message fragment)
BAD_INPUTS = {
    "empty file": ("POST", "/v1/inspections", lambda: _one("a.jpg", b""), API_KEY, 422, "empty_file", "empty"),
    "truncated jpeg": (
        "POST",
        "/v1/inspections",
        lambda: _one("a.jpg", _jpeg()[:20_000]),
        API_KEY,
        422,
        "truncated_image",
        "truncated",
    ),
    "text named .jpg": (
        "POST",
        "/v1/inspections",
        lambda: _one("a.jpg", b"hello, I am text\n" * 20),
        API_KEY,
        415,
        "unsupported_type",
        "not an image",
    ),
    "huge dimensions": (
        "POST",
        "/v1/inspections",
        lambda: _one("big.png", _png_header_only(12000, 10000)),
        API_KEY,
        413,
        "too_many_pixels",
        "12000x10000",
    ),
    "huge dimensions in a job": (
        "POST",
        "/v1/jobs",
        lambda: _one("big.png", _png_header_only(12000, 10000)),
        API_KEY,
        413,
        "too_many_pixels",
        "MP limit",
    ),
    "too many files": (
        "POST",
        "/v1/inspections",
        lambda: {"files": [("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(7)]},
        API_KEY,
        413,
        "too_many_files",
        "more than 6",
    ),
    "file too large": (
        "POST",
        "/v1/inspections",
        lambda: _one("a.jpg", b"\xff\xd8\xff" + bytes(3_100_000)),
        API_KEY,
        413,
        "file_too_large",
        "3000000 bytes",
    ),
    "request too large": (
        "POST",
        "/v1/inspections",
        lambda: {"files": [("files", (f"{i}.jpg", bytes(2_900_000), "image/jpeg")) for i in range(3)]},
        API_KEY,
        413,
        "request_too_large",
        "8000000",
    ),
    "no files": (
        "POST",
        "/v1/inspections",
        lambda: {"files": [("site", (None, b"x"))]},
        API_KEY,
        422,
        "no_files",
        "no images",
    ),
    "not multipart": (
        "POST",
        "/v1/inspections",
        lambda: {"json": {"files": []}},
        API_KEY,
        415,
        "not_multipart",
        "multipart/form-data",
    ),
    "bad asset_type": (
        "POST",
        "/v1/inspections",
        lambda: {**_one("a.jpg", _jpeg()), "data": {"asset_type": "boat"}},
        API_KEY,
        422,
        "bad_asset_type",
        "asset_type must be one of",
    ),
    "unknown form field": (
        "POST",
        "/v1/inspections",
        lambda: {**_one("a.jpg", _jpeg()), "data": {"asset-type": "pv"}},
        API_KEY,
        422,
        "unknown_field",
        "'asset-type'",
    ),
    "missing key": ("GET", "/v1/model", dict, None, 401, "missing_api_key", "missing API key"),
    "wrong key": ("GET", "/v1/model", dict, "pvw_wrong-key-00000000000", 401, "invalid_api_key", "invalid API key"),
    "missing key on upload": (
        "POST",
        "/v1/inspections",
        lambda: _one("a.jpg", _jpeg()),
        None,
        401,
        "missing_api_key",
        "X-API-Key",
    ),
    "unknown job id": (
        "GET",
        "/v1/jobs/0123456789abcdef0123456789abcdef",
        dict,
        API_KEY,
        404,
        "job_not_found",
        "no job with id",
    ),
    "malformed job id": ("GET", "/v1/jobs/..%2F..%2Fetc", dict, API_KEY, 404, None, ""),
    "unknown job results": (
        "GET",
        "/v1/jobs/0123456789abcdef0123456789abcdef/results",
        dict,
        API_KEY,
        404,
        "job_not_found",
        "no job",
    ),
    "unknown results format": (
        "GET",
        "/v1/jobs/0123456789abcdef0123456789abcdef/results?format=xlsx",
        dict,
        API_KEY,
        422,
        "invalid_request",
        "format: Input should be 'json', 'geojson' or 'csv'",
    ),
    "cancel unknown job": (
        "DELETE",
        "/v1/jobs/ffffffffffffffffffffffffffffffff",
        dict,
        API_KEY,
        404,
        "job_not_found",
        "no job",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input(server, case):
    method, path, make, key, status, code, fragment = BAD_INPUTS[case]
    with server.client(key=key) as c:
        r = c.request(method, path, **make())
    assert r.status_code == status, r.text
    if code is not None:
        body = r.json()
        assert body["code"] == code
        assert fragment.lower() in body["detail"].lower()
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


def test_bearer_key_and_file_names_are_only_text(server, images):
    data = images[0].read_bytes()
    with server.client(key=None) as c:
        r = c.post(
            "/v1/inspections",
            headers={"Authorization": f"Bearer {API_KEY}"},
            files=[
                ("files", ("../../etc/passwd.jpg", data, "image/jpeg")),
                ("files", ("..\\..\\windows\\win.ini", data, "image/jpeg")),
            ],
        )
    assert r.status_code == 200, r.text
    assert [e["source"] for e in r.json()["images"]] == ["passwd.jpg", "win.ini"]
    assert not (server.workdir / "etc").exists()


def test_api_entry_equals_pvwind_inspect_field_for_field(client, images, tmp_path):
    """One result type: the API's entry for an image is pvwind inspect's, field for field (only
    the request's own fields differ: the name the file came under and its position)."""
    import json
    import shutil

    from pvwind.cli import main as pvwind

    folder = tmp_path / "flight"
    folder.mkdir()
    picked = list(images)
    for p in picked:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "out"
    assert pvwind(["inspect", str(folder), "--out", str(out), "--group-by", "none", "--no-annotate", "--quiet"]) == 0
    cli = {Path(e["source"]).name: e for e in json.loads((out / "results.json").read_text())["images"]}
    api = client.post("/v1/inspections", files=files_param([folder / p.name for p in picked])).json()["images"]
    assert len(api) == len(cli) == len(picked)
    assert sum(len(e["findings"]) for e in api) > 0, "findings to compare"
    for entry in api:
        want = cli[entry["source"]]
        assert set(entry) == set(want)
        differ = {k for k in entry if entry[k] != want[k]}
        assert differ <= {"source", "index"}, {k: (entry[k], want[k]) for k in differ}


def _readme_example() -> tuple[Path, dict[str, str], dict]:
    """The README's curl example (its file, form fields) and the finding it shows."""
    import json
    import re
    import shlex

    from detector_fixtures import MIRROR

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    curl = re.search(r"```bash\n(curl .*?)\n```", text, re.S)
    shown = re.search(r"```json\n(\{\"class_name\".*?)\n```", text, re.S)
    assert curl and shown, "README has the curl example and its answer"
    words = shlex.split(curl.group(1).replace("\\\n", " "))
    fields = [words[k + 1] for k, w in enumerate(words) if w == "-F"]
    path = next(f.split("=@", 1)[1] for f in fields if f.startswith("files=@"))
    path = MIRROR / path.removeprefix("../shared/datasets/")
    form = dict(f.split("=", 1) for f in fields if not f.startswith("files="))
    return path, form, json.loads(shown.group(1))


def test_the_readme_example_answers_what_the_readme_shows(client):
    """A newcomer's first request, exactly as the README writes it, answers the finding the README
    prints (class, who found it, priority, reasons, box, position, temperatures)."""
    path, form, want = _readme_example()
    if not path.is_file():
        pytest.skip(f"{path} not in the mirror")
    r = client.post("/v1/inspections", files=files_param([path]), data=form)
    assert r.status_code == 200, r.text
    got = r.json()["images"][0]["findings"]
    assert len(got) == 1, [f["class_name"] for f in got]
    got = got[0]
    for key in ("class_name", "found_by", "priority", "action", "time_frame", "reasons"):
        assert got[key] == want[key], key
    assert abs(got["confidence"] - want["confidence"]) <= 0.01
    assert all(abs(got["box"][k] - v) <= 1.0 for k, v in want["box"].items()), got["box"]
    assert got["location"]["quality"] == want["location"]["quality"]
    for k in ("latitude", "longitude"):
        assert abs(got["location"][k] - want["location"][k]) <= 1e-5
    for k, v in want["thermal"].items():
        assert got["thermal"][k] == v if isinstance(v, str) else abs(got["thermal"][k] - v) <= 0.15, k
