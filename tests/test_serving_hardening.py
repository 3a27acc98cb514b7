"""A hostile client against a real ``pvwind serve`` on 127.0.0.1: files under the wrong form
field, absurd and spoofing file names, a schema that says what is accepted, slow uploads,
very large images, proxy headers without keys, and keys in the URL."""

from __future__ import annotations

import io
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from serving_fixtures import API_KEY, Server, files_param, metric, mirror_images

ENV = {
    "PVWIND_MAX_FILES": "6",
    "PVWIND_MAX_CONCURRENT_UPLOADS": "3",
    "PVWIND_UPLOAD_GRACE_SECONDS": "2",
    "PVWIND_UPLOAD_MIN_BYTES_PER_SECOND": "4000",
    "PVWIND_LARGE_IMAGE_PIXELS": "3000000",
    "PVWIND_MAX_LARGE_DECODES": "1",
    "PVWIND_HEADER_TIMEOUT_SECONDS": "2",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("hardening"), env=ENV, args=("--log-level", "debug")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return mirror_images(1)[0].read_bytes()


def _error(r: httpx.Response, status: int, code: str, fragment: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert fragment in body["detail"], body


# ----------------------------------------------------------------------------- 1. form fields
@pytest.mark.parametrize(
    ("field", "code", "fragment"),
    [
        ("image", "unknown_field", "unknown form field 'image'; send the images as form field 'files'"),
        ("site", "unexpected_file", "form field 'site' must be text, not a file"),
        ("asset_type", "unexpected_file", "form field 'asset_type' must be text, not a file"),
    ],
)
def test_a_file_under_another_field_is_refused_by_name(client, jpeg, field, code, fragment):
    r = client.post("/v1/inspections", files=[("files", ("a.jpg", jpeg)), (field, ("b.jpg", jpeg))])
    _error(r, 422, code, fragment)


def test_text_sent_as_files_says_files_must_be_a_file_part(client, jpeg):
    r = client.post("/v1/inspections", files=[("files", ("a.jpg", jpeg)), ("files", (None, b"hello"))])
    _error(r, 422, "not_a_file", "form field 'files' must be a file part")


def test_flight_conditions_are_accepted_form_fields(client, jpeg):
    r = client.post("/v1/inspections", files=[("files", ("a.jpg", jpeg))], data={"irradiance_w_m2": "800"})
    assert r.status_code == 200, r.text
    r = client.post("/v1/jobs", files=[("files", ("a.jpg", jpeg))], data={"emissivity": "1.5"})
    _error(r, 422, "bad_field", "emissivity")


def test_a_job_keeps_its_flight_conditions(client):
    """Conditions given with a job are stored with it (they survive a restart) and its radiometric
    frames are read under them; the results' key names them."""
    import time

    from detector_fixtures import XT2_FRAMES

    if not XT2_FRAMES:
        pytest.skip("no XT2 frames")
    frame = XT2_FRAMES[0]
    data = {"irradiance_w_m2": "500", "emissivity": "0.9", "site": "plant-c"}
    job = client.post("/v1/jobs", files=[("files", (frame.name, frame.read_bytes()))], data=data).json()
    deadline = time.monotonic() + 120
    while client.get(f"/v1/jobs/{job['id']}").json()["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    image = client.get(f"/v1/jobs/{job['id']}/results").json()["images"][0]
    assert image["status"] == "ok" and image["thermal"]["irradiance_w_m2"] == 500
    assert image["thermal"]["params"]["emissivity"] == 0.9 and image["thermal"]["param_sources"]["emissivity"] == "call"
    plain = client.get("/v1/model").json()["key"]
    assert image["model"].startswith(plain + "~")
    assert any("500 W/m² below 600" in r for f in image["findings"] if f["thermal"] for r in f["reasons"])


# ----------------------------------------------------------------------------- 2./3. file names
def test_file_names_longer_than_the_limit_are_refused_and_say_so(client, jpeg):
    r = client.post(
        "/v1/inspections",
        files=[("files", ("x" * 1024, jpeg)), ("files", ("y" * 4000 + ".jpg", jpeg)), ("files", ("z" * 8000, jpeg))],
    )
    assert r.status_code == 200, r.text
    ok, four, eight = r.json()["images"]
    assert ok["status"] == "ok" and ok["source"] == "x" * 200  # accepted, shown cut to 200
    for entry, shown in ((four, "y" * 200), (eight, "z" * 200)):
        assert entry["status"] == "error" and entry["source"] == shown
        assert entry["error"]["code"] == "filename_too_long"
        assert entry["error"]["message"] == "file name longer than 1024 characters"
    # alone, the request fails with that image's status
    _error(
        client.post("/v1/inspections", files=[("files", ("z" * 8000, jpeg))]),
        422,
        "filename_too_long",
        "file name longer than 1024 characters",
    )
    # a part header longer than the parser takes: still named, not "malformed"
    _error(
        client.post("/v1/inspections", files=[("files", ("w" * 20000, jpeg))]),
        400,
        "malformed_multipart",
        "a file name may have at most 1024 characters",
    )


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_bidirectional_controls_are_removed_from_file_names(client, jpeg):
    names = ["invoice\u202egpj.exe", "".join(f"{c}a" for c in BIDI) + ".jpg", "\u2067x\u2069\u0085\x1b[31m.jpg"]
    r = client.post("/v1/inspections", files=[("files", (n, jpeg)) for n in names])
    assert r.status_code == 200, r.text
    shown = [e["source"] for e in r.json()["images"]]
    assert shown == ["invoicegpj.exe", "a" * len(BIDI) + ".jpg", "x[31m.jpg"]
    r = client.post("/v1/inspections", files=[("files", ("a.jpg", jpeg))], data={"site": "plant\u202e7"})
    _error(r, 422, "bad_field", "site contains control or bidirectional-control characters")


# ----------------------------------------------------------------------------- 4. the schema
def test_upload_schema_says_what_is_accepted(client):
    spec = client.get("/openapi.json").json()
    for path, conditions, max_files in (("/v1/inspections", True, 6), ("/v1/jobs", True, 2000)):
        form = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        schema = form["schema"]
        assert schema["additionalProperties"] is False
        assert schema["required"] == ["files"]
        fields = {"files", "asset_type", "site", "flight"}
        if conditions:
            fields |= {"irradiance_w_m2", "emissivity", "reflected_temp_c", "distance_m", "relative_humidity"}
        assert set(schema["properties"]) == fields
        files = schema["properties"]["files"]
        assert files["type"] == "array" and files["minItems"] == 1 and files["maxItems"] == max_files
        assert files["items"] == {"type": "string", "format": "binary"}
        assert form["encoding"]["files"]["contentType"] == "image/jpeg, image/png, image/tiff, image/webp"
        assert schema["properties"]["asset_type"]["enum"] == ["auto", "pv", "wind"]
        assert schema["properties"]["site"]["maxLength"] == 200 and "pattern" in schema["properties"]["site"]
        if conditions:
            assert schema["properties"]["emissivity"]["type"] == "number"


ST = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")


@pytest.mark.slow
@pytest.mark.skipif(ST is None, reason="schemathesis is not installed (pip install -e '.[dev]')")
def test_schemathesis_upload_bodies_are_answered_as_the_schema_says(server, tmp_path):
    """A bounded run on POST /v1/inspections: data outside the schema (unknown fields, wrong
    types, too many files) is refused, and data inside it is not refused for its shape. The
    schema cannot say "these bytes decode as an image", so a schema-valid body may still get
    an image's own 415 / 422; those are allowed for valid data."""
    (tmp_path / "schemathesis.toml").write_text(
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "401", "403", "415", "422"]\n'
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "406", "413", "415", "422", "429"]\n'
    )
    p = subprocess.run(
        [
            ST, "run", f"{server.url}/openapi.json",
            "--include-path", "/v1/inspections",
            "--checks", "not_a_server_error,status_code_conformance,positive_data_acceptance,negative_data_rejection",
            # the key as a bearer token: X-API-Key takes precedence, so a mutated one is refused too
            "--header", f"Authorization: Bearer {API_KEY}",
            "--phases", "coverage,fuzzing",
            "--max-examples", "25", "--seed", "1", "--workers", "1",
            "--request-timeout", "30",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "Traceback" not in server.log()


# ----------------------------------------------------------------------------- 5. slow clients
def _slow_upload(port: int) -> socket.socket:
    """A client that starts a 200 kB upload and then sends a byte now and then."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = (
        "POST /v1/inspections HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Type: multipart/form-data; boundary=slowloris\r\n"
        "Content-Length: 200000\r\n\r\n"
        '--slowloris\r\nContent-Disposition: form-data; name="files"; filename="slow.jpg"\r\n\r\n\xff\xd8'
    )
    s.sendall(head.encode("latin-1"))
    return s


def _answer(s: socket.socket) -> str:
    data = b""
    s.settimeout(5)
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data.decode("latin-1")


def test_slow_uploads_get_408_and_do_not_starve_the_others(server, client):
    slow = [_slow_upload(server.port) for _ in range(3)]  # every upload slot
    try:
        deadline = time.monotonic() + 10
        while metric(client.get("/metrics").text, "pvwind_uploads_in_progress") < 3:
            assert time.monotonic() < deadline, "the slow uploads never took the slots"
            time.sleep(0.05)
        time.sleep(1.2)  # old enough to be judged by their rate
        t0 = time.monotonic()
        r = client.post("/v1/inspections", files=files_param(mirror_images(1)))
        assert r.status_code == 200, r.text  # served although all slots were held by slow clients
        answers: dict[int, str] = {}
        while len(answers) < len(slow) and time.monotonic() - t0 < 20:
            for i, s in enumerate(slow):
                if i in answers:
                    continue
                if select.select([s], [], [], 0)[0]:
                    answers[i] = _answer(s)
                else:
                    try:
                        s.send(b"\x00")  # one byte at a time
                    except OSError:
                        answers[i] = _answer(s)
            time.sleep(0.5)
    finally:
        for s in slow:
            s.close()
    assert len(answers) == 3, answers
    for text in answers.values():
        assert text.startswith("HTTP/1.1 408 "), text[:300]
        assert '"code":"upload_too_slow"' in text, text
    texts = "".join(answers.values())
    assert "while another client waited for an upload slot" in texts  # the one that made room
    assert "below the minimum of 4000 bytes/s (after 2 s)" in texts  # the others, after the grace period
    assert time.monotonic() - t0 < 20


def test_trickled_headers_get_408_and_the_connection_closed(server, client):
    """Slowloris on the headers: uvicorn alone would keep such a connection open for ever."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    t0 = time.monotonic()
    try:
        s.sendall(b"GET /v1/model HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        for ch in b"X-Slow: " + b"a" * 40:  # one byte every 0.25 s: 12 s of headers if let through
            try:
                s.sendall(bytes([ch]))
            except OSError:
                break
            if select.select([s], [], [], 0.25)[0]:
                answer = s.recv(65536)
                break
        answer += _answer(s).encode("latin-1")
    finally:
        s.close()
    text = answer.decode("latin-1")
    assert text.startswith("HTTP/1.1 408 "), text[:300]
    assert '"code":"header_timeout"' in text
    assert 1.5 < time.monotonic() - t0 < 8
    # a client that keeps its connection and pauses between requests is not affected
    assert client.get("/v1/model").status_code == 200
    time.sleep(2.5)
    assert client.get("/v1/model").status_code == 200
    assert "request headers incomplete after 2 s" in server.log()


# ----------------------------------------------------------------------------- 6. large images
def _large_png(path: Path, side: int) -> bytes:
    with Image.open(path) as im:
        big = im.convert("RGB").resize((side, side), Image.NEAREST)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def test_large_images_are_decoded_one_at_a_time(client):
    larges = [_large_png(p, 2000) for p in mirror_images(3)]  # 4 MP each, over the test's 3 MP
    statuses: list[int] = []

    def send(files: list) -> None:
        # four requests against three upload slots: a client that is told "busy" retries, as a real one does
        # (when their bodies happen to arrive at once; this test is about decoding, not upload slots)
        for _ in range(20):
            r = client.post("/v1/inspections", files=files)
            if r.status_code != 503 or r.json()["code"] != "busy":
                break
            time.sleep(0.25)
        statuses.append(r.status_code)

    before = metric(client.get("/metrics").text, "pvwind_large_image_waits_total")
    threads = [threading.Thread(target=send, args=([("files", (f"big{i}.png", d))],)) for i, d in enumerate(larges)]
    threads.append(threading.Thread(target=send, args=(files_param(mirror_images(2)),)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert statuses == [200] * 4
    text = client.get("/metrics").text
    assert metric(text, "pvwind_large_image_waits_total") > before  # they took turns
    assert metric(text, "pvwind_large_images_in_progress") == 0
    assert metric(text, "pvwind_queue_depth_images") == 0
    one = client.post("/v1/inspections", files=[("files", ("big.png", larges[0]))]).json()["images"][0]
    assert one["status"] == "ok" and (one["width"], one["height"]) == (2000, 2000)


# ----------------------------------------------------------------------------- 7. keys and proxies
@pytest.mark.parametrize("param", ["api_key", "key"])
def test_keys_are_read_only_from_headers_and_never_logged(server, param):
    with server.client(key=None) as c:
        r = c.get(f"/v1/model?{param}={API_KEY}")
        _error(r, 401, "missing_api_key", "API keys are not accepted in the URL")
    with server.client() as c:  # a key in a header works; the one in the URL is not printed either
        assert (
            c.get(f"/v1/jobs/0123456789abcdef0123456789abcdef/results?format=csv&{param}={API_KEY}").status_code == 404
        )
    time.sleep(0.2)
    log = server.log()
    assert f"/v1/model?{param}=***" in log  # the access log is on (debug) and masks the value
    assert "format=csv&" in log
    assert API_KEY not in log


def test_proxy_headers_are_treated_alike_without_keys(tmp_path):
    """Without keys only this machine is served, and a request relayed by a proxy (any of the
    three forwarding headers, whatever address it names) is not this machine's."""
    with Server(tmp_path, keys=()) as srv, srv.client(key=None) as c:
        assert c.get("/v1/model").status_code == 200
        for header, value in (
            ("X-Forwarded-For", "203.0.113.7"),
            ("Forwarded", "for=203.0.113.7;proto=https"),
            ("X-Real-IP", "203.0.113.7"),
            ("Forwarded", "for=127.0.0.1"),
        ):
            r = c.get("/v1/model", headers={header: value})
            _error(r, 403, "local_only", f"it came through a proxy: {header.lower()}")
        assert c.get("/healthz", headers={"X-Real-IP": "203.0.113.7"}).status_code == 200


def test_out_of_range_paging_is_a_422_not_a_500(client):
    """Found by schemathesis: an offset beyond the database's integers crashed the query."""
    r = client.get("/v1/sites/x/findings", params={"offset": "23849943715732090880", "limit": "291"})
    assert r.status_code == 422, r.text
