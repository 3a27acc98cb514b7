"""The service's parts on their own: settings and their documentation, keys, file names,
the store's crash-safety rules, back-pressure, and the startup safety checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pg_fixtures import fresh_database, postgres_url  # noqa: F401 - postgres_url is a fixture
from serving_fixtures import API_KEY, REPO, Server, files_param, metric, mirror_images, serving_model

from detector.results import ImageResult
from serving.auth import KeyConfigError, KeyStore, hash_key, key_from_headers
from serving.settings import Settings, is_loopback
from serving.upload import display_name
from storage.store import LeaseLost, NewImage, NewItem, ScoredResult, Store


# ----------------------------------------------------------------------------- settings
def _doc_default(value: object) -> str:
    if isinstance(value, list):
        return ",".join(value)
    return "none" if value in (None, "") else str(value)


def test_every_setting_is_documented_with_its_default():
    doc = (REPO / "docs" / "serving.md").read_text()
    rows = dict(re.findall(r"^\| `PVWIND_([A-Z_]+)` \| `?([^`|]*?)`? \|", doc, re.M))
    for name, field in Settings.model_fields.items():
        assert name.upper() in rows, f"PVWIND_{name.upper()} missing from docs/serving.md"
        assert rows[name.upper()] == _doc_default(field.default), name
        assert field.description, f"{name} has no description"


def test_every_error_code_is_documented_with_its_status():
    """docs/serving.md's error table names every (status, code) the service answers with."""
    from detector.decode import DECODE_ERRORS

    doc = (REPO / "docs" / "serving.md").read_text()
    documented = set()
    for status, codes in re.findall(r"^\| (\d{3}) \| ((?:`[a-z_]+`(?:, )?)+) \|", doc, re.M):
        documented |= {(int(status), c) for c in re.findall(r"`([a-z_]+)`", codes)}
    source = "\n".join(p.read_text() for p in sorted((REPO / "serving").rglob("*.py")))
    used = {(int(st), code) for st, code in re.findall(r"(?:ApiError|Rejection)\(\s*(\d{3}),\s*\"([a-z_]+)\"", source)}
    used |= {(st, code) for code, st in DECODE_ERRORS.values()}
    used |= {(422, "invalid_request"), (404, "not_found"), (405, "method_not_allowed"), (500, "internal_error")}
    assert used - documented == set(), "not in docs/serving.md's error table"


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("PVWIND_MAX_FILES", "3")
    monkeypatch.setenv("PVWIND_ALLOWED_TYPES", "image/jpeg,image/png")
    s = Settings()
    assert s.max_files == 3 and s.allowed_types == ["image/jpeg", "image/png"]
    monkeypatch.setenv("PVWIND_ALLOWED_TYPES", "image/gif")
    with pytest.raises(ValueError, match="unknown image types"):
        Settings()


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.3.2.1", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_loopback(host, local):
    assert is_loopback(host) is local


# ----------------------------------------------------------------------------- keys
def test_keys_are_kept_hashed_and_checked(tmp_path):
    other = "pvw_another-key-abcdefghijkl"
    f = tmp_path / "keys"
    f.write_text(f"# operators\n{hash_key(other)}  # hashed\n\n")
    ks = KeyStore.load(API_KEY, f)
    assert ks.enabled and len(ks.hashes) == 2
    assert ks.check(API_KEY) and ks.check(other)
    assert not ks.check("pvw_wrong-key-0000000000") and not ks.check("") and not ks.check(None)
    assert API_KEY.encode() not in b"".join(ks.hashes)
    assert not KeyStore.load().enabled


@pytest.mark.parametrize(("keys", "message"), [("short", "shorter than 16"), ("sha256:abc", "malformed hash")])
def test_bad_key_configuration(keys, message):
    with pytest.raises(KeyConfigError, match=message):
        KeyStore.load(keys)


def test_key_headers():
    assert key_from_headers("Bearer abc", None) == "abc"
    assert key_from_headers("Basic abc", None) is None
    assert key_from_headers(None, " k ") == "k"


# ----------------------------------------------------------------------------- file names
@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\DJI_0001.JPG", "DJI_0001.JPG"),
        ("a\x00b\x1f.jpg", "ab.jpg"),
        ("..", "file3"),
        ("", "file3"),
        ("x" * 300 + ".jpg", "x" * 200),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # right-to-left override
        ("\u2066a\u2069\u200e\u200f\u061c\u202a\u202b\u202c\u202d.jpg", "a.jpg"),  # isolates, marks, embeddings
        ("a\u0085b\u2028c\ufeff.jpg", "abc.jpg"),  # C1 control, line separator, byte-order mark
    ],
)
def test_display_names_are_never_paths(raw, shown):
    assert display_name(raw, 3) == shown


def test_upload_pace_rules():
    """408 rules: after the grace period the body must have averaged the minimum rate; the
    request's deadline holds regardless; the server's own pauses do not count."""
    from serving.upload import UploadLimits, UploadPace

    limits = UploadLimits(1, 1, 1, timeout_seconds=300)
    pace = UploadPace(min_bytes_per_second=1000, grace_seconds=10, started=0.0)
    assert pace.deadline(limits) == 10  # nothing yet: the grace period
    pace.received = 50_000
    assert pace.deadline(limits) == 50  # 50 kB at 1 kB/s
    pace.paused = 5
    assert pace.deadline(limits) == 55
    pace.received = 10**9
    assert pace.deadline(limits) == 305  # the request's deadline
    assert UploadPace(started=0.0).deadline(UploadLimits(1, 1, 1)) == float("inf")
    slow = UploadPace(min_bytes_per_second=1000, grace_seconds=10, started=0.0, received=500)
    assert slow.below_minimum(now=2.0) and not slow.below_minimum(now=0.5)  # judged after a second, grace or not
    assert not UploadPace(min_bytes_per_second=0, started=0.0).below_minimum(now=100.0)


# ----------------------------------------------------------------------------- store
@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A new, empty store: a SQLite file, and a database of its own on a test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url):
    s = Store.from_url(store_url)
    yield s
    s.close()


def _job(store: Store, n: int = 3):
    shas = [store.put_image(NewImage(f"image-{i}".encode(), "image/jpeg", 1, 1)) for i in range(n)]
    return store.create_job(
        [NewItem(f"{i}.jpg", s) for i, s in enumerate(shas)],
        model_version="m@1",
        asset_type="auto",
        site=None,
        flight=None,
    ), shas


def _ok(sha: str) -> ScoredResult:
    return ScoredResult(sha, ImageResult(sha256=sha))


def test_images_are_stored_once_by_content(store):
    a = store.put_image(NewImage(b"same bytes", "image/jpeg"))
    b = store.put_image(NewImage(b"same bytes", "image/jpeg"))
    assert a == b and store.image_bytes([a]) == {a: b"same bytes"}
    archived = store.put_image(NewImage(b"archived", "image/jpeg"), keep_bytes=False, source="/archive/x.jpg")
    assert store.image_bytes([archived]) == {}  # registered without its bytes (the re-scorer's case)


def test_completing_items_twice_counts_once(store):
    job, shas = _job(store)
    assert store.claim_job("me", 60) == job.id
    outcomes = [(0, _ok(shas[0])), (1, _ok(shas[1]))]
    assert store.complete_items(job.id, "me", 60, "m@1", outcomes) == 2
    assert store.complete_items(job.id, "me", 60, "m@1", outcomes) == 0  # a replay changes nothing
    got = store.get_job(job.id)
    assert (got.done, got.failed) == (2, 0)
    assert store.count_results("m@1") == 2
    assert [p.position for p in store.pending_items(job.id, 10)] == [2]


def test_a_lost_lease_writes_nothing(store):
    job, shas = _job(store)
    assert store.claim_job("a", 60) == job.id
    assert store.claim_job("b", 60) is None  # held by a live lease
    store.cancel_job(job.id)
    with pytest.raises(LeaseLost):
        store.complete_items(job.id, "a", 60, "m@1", [(0, _ok(shas[0]))])
    assert store.count_results() == 0 and store.get_job(job.id).done == 0


def test_an_expired_lease_is_taken_over(store):
    job, _ = _job(store)
    assert store.claim_job("a", -1) == job.id  # lease already expired: "a" stopped renewing
    assert store.claim_job("b", 60) == job.id
    with pytest.raises(LeaseLost):
        store.renew_lease(job.id, "a", 60)


def test_results_are_unique_per_image_and_model(store):
    sha = store.put_image(NewImage(b"img", "image/png"))
    first = store.put_results([ScoredResult(sha, ImageResult(sha256=sha, width=1))], "m@1")
    again = store.put_results([ScoredResult(sha, ImageResult(sha256=sha, width=2))], "m@1")
    other = store.put_results([ScoredResult(sha, ImageResult(sha256=sha, width=3))], "m@2")
    assert first == again and first != other
    assert store.results_for([sha], "m@1") == {sha: ImageResult(sha256=sha, width=1)}


# ----------------------------------------------------------------------------- the app in-process
@pytest.fixture(scope="module")
def pool():
    from serving.detectors import DetectorPool

    return DetectorPool(serving_model(), threads=1)


def _app(tmp_path, pool, **settings):
    from serving.app import create_app

    s = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", api_keys=API_KEY, **settings)
    return create_app(s, detectors=pool)


def _ready(client: TestClient) -> None:
    import time

    for _ in range(200):
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("not ready")


def test_full_queue_answers_503_with_retry_after(tmp_path, pool):
    app = _app(tmp_path, pool, queue_max_images=2, retry_after_seconds=7)
    with TestClient(app, headers={"X-API-Key": API_KEY}) as c:
        _ready(c)
        queue = app.state.services.queue
        held = queue.reserve(2)  # the queue is full of other work
        try:
            r = c.post("/v1/inspections", files=files_param(mirror_images(1)))
            assert r.status_code == 503 and r.headers["retry-after"] == "7"
            assert r.json()["code"] == "busy"
        finally:
            held.release()
        held = queue.reserve(1)  # room for one image, not for two
        try:
            r = c.post("/v1/inspections", files=files_param(mirror_images(2)))
            assert r.status_code == 503
            assert c.post("/v1/inspections", files=files_param(mirror_images(1))).status_code == 200
        finally:
            held.release()
        assert queue.depth == 0
        text = c.get("/metrics").text
        assert "pvwind_rejected_busy_total 2.0" in text
        # a 503 "busy" is not a fault of the server
        assert metric(text, "pvwind_errors_total", code="server_error") == 0


def test_concurrent_upload_limit(tmp_path, pool):
    app = _app(tmp_path, pool, max_concurrent_uploads=1, upload_min_bytes_per_second=0)  # no cutting off
    with TestClient(app, headers={"X-API-Key": API_KEY}) as c:
        _ready(c)
        with app.state.services.upload_slot():  # another upload is being read
            for path in ("/v1/inspections", "/v1/jobs"):
                r = c.post(path, files=files_param(mirror_images(1)))
                assert r.status_code == 503 and "too many uploads" in r.json()["detail"], r.text
        assert c.post("/v1/inspections", files=files_param(mirror_images(1))).status_code == 200


def test_job_backlog_limit(tmp_path, pool):
    app = _app(tmp_path, pool, job_max_pending_images=2, job_runners=0)  # accepts jobs, scores none
    with TestClient(app, headers={"X-API-Key": API_KEY}) as c:
        _ready(c)
        assert c.post("/v1/jobs", files=files_param(mirror_images(2))).status_code == 202
        r = c.post("/v1/jobs", files=files_param(mirror_images(1)))
        assert r.status_code == 503 and r.json()["code"] == "busy" and "retry-after" in r.headers


def test_without_keys_only_this_machine_is_served(tmp_path, pool):
    from serving.app import create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"), detectors=pool)
    with TestClient(app) as c:  # TestClient's peer address is not a loopback address
        r = c.get("/v1/model")
        assert r.status_code == 403 and r.json()["code"] == "local_only"
        assert c.get("/healthz").status_code == 200


# ----------------------------------------------------------------------------- startup
def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [str(Path(sys.executable).parent / "pvwind"), "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PVWIND_API_KEYS": "", **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--host", "0.0.0.0"], {}, "refusing to listen on 0.0.0.0 without API keys"),
        (["--model", "/nonexistent/model"], {}, "model not found"),
        ([], {"PVWIND_API_KEYS": "short"}, "shorter than 16"),
        ([], {"PVWIND_MAX_FILES": "0"}, "PVWIND_MAX_FILES"),
    ],
)
def test_unsafe_or_broken_startup_is_refused(args, env, message):
    p = _serve(*args, env=env)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr


def test_new_key_prints_key_and_hash():
    p = _serve("--new-key")
    key = re.search(r"key:\s+(\S+)", p.stdout).group(1)
    assert re.search(r"hash:\s+(\S+)", p.stdout).group(1) == hash_key(key)


def test_without_keys_it_binds_to_localhost_and_says_so(tmp_path):
    with Server(tmp_path, keys=()) as srv:
        with srv.client(key=None) as c:
            assert c.get("/v1/model").status_code == 200
    assert "no API keys configured" in srv.log() and "127.0.0.1" in srv.log()


def test_orphan_images_of_failed_uploads_are_pruned(store):
    from datetime import timedelta

    job, shas = _job(store, 2)
    orphan = store.put_image(NewImage(b"half-way upload", "image/jpeg"))
    scored = store.put_image(NewImage(b"archive image", "image/jpeg"), keep_bytes=False)
    store.put_results([ScoredResult(scored, ImageResult(sha256=scored))], "m@1")
    assert store.prune_orphans(timedelta(hours=1)) == 0  # too recent: an upload may still be running
    assert store.prune_orphans(timedelta(seconds=-1)) == 1
    assert store.image_bytes([orphan, *shas]) == {s: f"image-{i}".encode() for i, s in enumerate(shas)}
    assert store.results_for([scored], "m@1")


def test_serving_imports_without_torch():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'ultralytics'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import serving.app, pvwind.commands.serve\n"
        "serving.app.create_app\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr


def test_inference_worker_lets_go_of_a_finished_task():
    """A worker waiting for work must not keep its last task (and the pixels its function holds) alive."""
    import gc
    import time
    import weakref

    import numpy as np

    from serving.queue import InferenceQueue

    q = InferenceQueue([None], max_images=4)
    try:
        pixels = np.zeros((1000, 1000, 3), np.uint8)
        ref = weakref.ref(pixels)
        with q.reserve(1) as slot:
            fut = q.submit(slot, lambda ctx, p=pixels: int(p.shape[0]))
            assert fut.result(10) == 1000
        del pixels, fut
        for _ in range(50):
            gc.collect()
            if ref() is None:
                break
            time.sleep(0.02)
        assert ref() is None
    finally:
        q.close()


def test_job_runner_decodes_a_large_image_only_under_a_permit(tmp_path):
    """Large images of a job take the same service-wide permits as those of POST /v1/inspections:
    while another holder has the only permit, the job's large image waits (its small one does not)."""
    import io
    import threading

    from PIL import Image
    from serving_fixtures import mirror_images, serving_model

    from serving.detectors import DetectorPool
    from serving.memory import LargeImages
    from serving.metrics import Metrics
    from serving.queue import InferenceQueue
    from serving.runner import JobRunner
    from serving.settings import Settings
    from storage.store import NewImage, PendingItem, Store

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", large_image_pixels=1_000_000)
    store = Store.from_url(settings.database_url)
    pool = DetectorPool(serving_model(), threads=1)
    queue = InferenceQueue([d for d in pool.detectors], max_images=8)
    permits = LargeImages(1)
    runner = JobRunner(store, pool, queue, settings, Metrics(), permits)
    small = mirror_images(1)[0].read_bytes()
    with Image.open(mirror_images(1)[0]) as im:
        buf = io.BytesIO()
        im.convert("RGB").resize((1500, 1500)).save(buf, "JPEG", quality=80)  # 2.25 MP > 1 MP
    large = buf.getvalue()
    shas = [store.put_image(NewImage(d, "image/jpeg")) for d in (small, large)]
    items = [PendingItem("job", i, f"{i}.jpg", sha) for i, sha in enumerate(shas)]
    out: list = []
    try:
        assert permits.try_acquire()  # someone else holds the only permit
        t = threading.Thread(target=lambda: out.append(runner._score_chunk(items)), daemon=True)
        t.start()
        t.join(3.0)
        assert t.is_alive() and not out  # the large image waits for the permit
        permits.release()
        t.join(120)
        assert not t.is_alive()
        outcomes, by_model = out[0]
        assert [r.result is not None and r.result.ok for _, r in outcomes] == [True, True]
        assert outcomes[1][1].result.width == 1500 and by_model == set(shas)
        assert permits.active == 0
    finally:
        queue.close()
        store.close()
