"""PostgreSQL as the store, on a real throw-away server (``tests/pg_fixtures.py``).

The ``Store`` rules of ``tests/test_serving_units.py`` (images once per content hash,
results unique per image and model key, a replayed chunk counted once, a lost lease writes
nothing, an expired lease is taken over, orphan pruning) run there on SQLite and on
PostgreSQL (``store`` fixture, ids ``[sqlite]``/``[postgresql]``). This file covers what
only a shared database has: two ``Store`` instances (two engines, as two servers) racing
for one job or one result, ``pvwind serve`` processes on one database (a job scored once,
a killed instance's job taken over after its lease), and ``pvwind rescore --out
postgresql+psycopg://...``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from pg_fixtures import fresh_database, postgres_url  # noqa: F401 - postgres_url is a fixture
from serving_fixtures import Server, files_param, metric, mirror_images
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from detector.results import ImageResult
from storage.store import LeaseLost, NewImage, NewItem, ScoredResult, Store


@pytest.fixture
def pg_url(postgres_url: str) -> str:  # noqa: F811 - the imported fixture
    """An empty database of this test's own."""
    return fresh_database(postgres_url)


def rows(url: str, sql: str, **params: object) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql), params)]
    finally:
        engine.dispose()


# ------------------------------------------------------------------- two Store instances
def _job(store: Store, n: int) -> tuple[str, list[str]]:
    shas = [store.put_image(NewImage(f"pg-image-{i}".encode(), "image/jpeg", 1, 1)) for i in range(n)]
    items = [NewItem(f"{i}.jpg", s) for i, s in enumerate(shas)]
    job = store.create_job(items, model_version="m@1", asset_type="auto", site=None, flight=None)
    return job.id, shas


def _ok(sha: str) -> ScoredResult:
    return ScoredResult(sha, result=ImageResult(sha256=sha))


def _race(n: int, fn) -> list:  # noqa: ANN001
    """Run ``fn(i)`` in ``n`` threads released at once; their return values (or exceptions)."""
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def go(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported to the test
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_two_instances_race_for_one_job_and_one_result(pg_url):
    a, b = Store.from_url(pg_url), Store.from_url(pg_url)
    try:
        job_id, shas = _job(a, 2)
        stores = [a, b] * 3
        claims = _race(6, lambda i: stores[i].claim_job(f"owner-{i}", 60))
        assert [c for c in claims if c is not None] == [job_id], claims  # exactly one instance holds it
        winner = f"owner-{claims.index(job_id)}"
        # the same result written by both instances at once: one row, no error, the same id for both
        sha = shas[0]
        written = _race(
            4, lambda i: stores[i].put_results([ScoredResult(sha, ImageResult(sha256=sha, width=i))], "m@1")
        )
        assert all(isinstance(w, dict) for w in written), written
        assert len({w[sha] for w in written}) == 1
        assert rows(pg_url, "SELECT count(*) FROM results WHERE image_sha256 = :s", s=sha) == [(1,)]
        # the holder's chunks replayed by both connections count once
        outcomes = [(0, _ok(shas[0])), (1, _ok(shas[1]))]
        assert a.complete_items(job_id, winner, 60, "m@1", outcomes) == 2
        assert b.complete_items(job_id, winner, 60, "m@1", outcomes) == 0
        assert b.finish_job(job_id, winner) and not a.finish_job(job_id, winner)
        job = b.get_job(job_id)
        assert (job.status, job.done, job.failed, job.owner) == ("done", 2, 0, None)
    finally:
        a.close()
        b.close()


def test_an_expired_lease_moves_the_job_to_another_instance(pg_url):
    a, b = Store.from_url(pg_url), Store.from_url(pg_url)
    try:
        job_id, shas = _job(a, 3)
        assert a.claim_job("a", 60) == job_id
        assert a.complete_items(job_id, "a", 60, "m@1", [(0, _ok(shas[0]))]) == 1
        assert b.claim_job("b", 60) is None  # held by a live lease
        a.renew_lease(job_id, "a", -1)  # "a" stalls or dies: its lease runs out
        assert b.claim_job("b", 60) == job_id
        with pytest.raises(LeaseLost):  # "a" comes back: its late chunk writes nothing
            a.complete_items(job_id, "a", 60, "m@1", [(1, _ok(shas[1]))])
        assert a.results_for(shas, "m@1").keys() == {shas[0]}
        assert [p.position for p in b.pending_items(job_id, 10)] == [1, 2]
        assert b.complete_items(job_id, "b", 60, "m@1", [(1, _ok(shas[1])), (2, _ok(shas[2]))]) == 2
        assert not a.finish_job(job_id, "a") and b.finish_job(job_id, "b")
        job = a.get_job(job_id)
        assert (job.status, job.done, job.owner) == ("done", 3, None)
        assert rows(pg_url, "SELECT count(*), count(DISTINCT image_sha256) FROM results") == [(3, 3)]
    finally:
        a.close()
        b.close()


def test_overlapping_writes_in_opposite_orders_do_not_deadlock(pg_url):
    """Two instances and the re-scorer committing results of the same images, in different
    orders, at once: before rows were written in key order PostgreSQL aborted some of these
    transactions with "deadlock detected" (about every other round)."""
    from storage.archive import ArchiveIndex, FileRecord

    a, b, r = Store.from_url(pg_url), Store.from_url(pg_url), ArchiveIndex(Store.from_url(pg_url))

    def write(i: int, shas: list[str]) -> object:
        if i == 2:
            files = [FileRecord(f"/x/{s}.jpg", "f", "1:1", s) for s in shas]
            return r.write(files, [ImageResult(sha256=s, source=f"/x/{s}.jpg") for s in shas], "m@1")
        return (a, b)[i].put_results([_ok(s) for s in (shas if i == 0 else shas[::-1])], "m@1")

    try:
        for rnd in range(8):
            shas = [a.put_image(NewImage(f"{rnd}-{i}".encode(), "image/jpeg"), keep_bytes=False) for i in range(60)]
            out = _race(3, lambda i, shas=shas: write(i, shas))
            assert not [e for e in out if isinstance(e, Exception)], out
            assert out[0] == out[1] and len(out[0]) == 60  # both instances got the one stored result per image
        assert rows(pg_url, "SELECT count(*), count(DISTINCT image_sha256) FROM results") == [(480, 480)]
    finally:
        a.close()
        b.close()
        r.close()


def test_schema_enforces_uniqueness_on_postgres(pg_url):
    """The constraints the upserts rely on exist in PostgreSQL, not only in the models."""
    Store.from_url(pg_url).close()
    got = rows(
        pg_url,
        "SELECT conname, contype FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "WHERE t.relname IN ('images', 'results', 'image_blobs')",
    )
    assert ("uq_result_image_model", "u") in got
    assert sum(1 for _, kind in got if kind == "p") == 3


# ------------------------------------------------------------------------ pvwind serve
FAST_JOBS = {"PVWIND_JOB_CHUNK_IMAGES": "1", "PVWIND_JOB_POLL_SECONDS": "0.2", "PVWIND_JOB_LEASE_SECONDS": "3"}


class PgServer(Server):
    """``pvwind serve`` with its store in PostgreSQL, configured the operator's way (environment)."""

    def __init__(self, workdir: Path, url: str) -> None:
        super().__init__(workdir, env={**FAST_JOBS, "PVWIND_DATABASE_URL": url})
        i = self.cmd.index("--database-url")  # the helper's SQLite default would override the environment
        del self.cmd[i : i + 2]


def _wait(client, job_id: str, until, timeout: float = 120) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not until(job := client.get(f"/v1/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def _sha_file(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_two_servers_on_one_database_score_each_job_once(pg_url, tmp_path):
    images = mirror_images(8)
    assert len(images) == 8
    a, b = PgServer(tmp_path, pg_url), PgServer(tmp_path, pg_url)
    a.start()
    try:
        b.start()
        with a.client() as ca, b.client() as cb:
            r1 = ca.post("/v1/jobs", files=files_param(images[:4]) + [("files", ("notes.jpg", b"text", "image/jpeg"))])
            r2 = cb.post("/v1/jobs", files=files_param(images[4:]))
            assert r1.status_code == r2.status_code == 202, (r1.text, r2.text)
            j1, j2 = r1.json()["id"], r2.json()["id"]
            # each instance sees the other's job: the state lives in the database
            done = lambda j: j["status"] == "done"  # noqa: E731
            job1, job2 = _wait(cb, j1, done), _wait(ca, j2, done)
            assert (job1["done"], job1["failed"], job1["total"]) == (4, 1, 5)
            assert (job2["done"], job2["failed"], job2["total"]) == (4, 0, 4)
            res = cb.get(f"/v1/jobs/{j1}/results").json()
            assert res["complete"] is True
            assert [e["status"] for e in res["images"]] == ["ok"] * 4 + ["error"]
            assert [e["sha256"] for e in res["images"][:4]] == [_sha_file(p) for p in images[:4]]
            assert all(isinstance(e["findings"], list) for e in res["images"][:4])
            texts = [ca.get("/metrics").text, cb.get("/metrics").text]
    finally:
        a.stop()
        b.stop()
    # none scored twice: the model ran once per image across both instances
    scored = sum(metric(t, "pvwind_images_total", path="job", outcome="scored") for t in texts)
    assert scored == 8
    assert rows(pg_url, "SELECT count(*), count(DISTINCT image_sha256) FROM results") == [(8, 8)]
    assert rows(pg_url, "SELECT status, owner, done FROM jobs ORDER BY done") == [("done", None, 4)] * 2
    assert rows(pg_url, "SELECT count(*) FROM job_items WHERE status = 'done' AND result_id IS NULL") == [(0,)]


def test_a_killed_servers_job_is_taken_over_by_another(pg_url, tmp_path):
    images = mirror_images(12)
    assert len(images) == 12
    a = PgServer(tmp_path, pg_url).start()
    try:
        with a.client() as c:
            r = c.post("/v1/jobs", files=files_param(images + images[:2]))
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            job = _wait(c, job_id, lambda j: j["done"] >= 2)
        a.kill()  # no shutdown code: its lease stays in the database until it expires
    finally:
        a.stop()
    total = len(images) + 2
    assert job["done"] < total, "the job finished before the server was killed; nothing was tested"
    (owner, status), *_ = rows(pg_url, "SELECT owner, status FROM jobs WHERE id = :j", j=job_id)
    assert owner is not None and status == "running"
    ((done_before, results_before),) = rows(
        pg_url,
        "SELECT (SELECT count(*) FROM job_items WHERE job_id = :j AND status = 'done'), (SELECT count(*) FROM results)",
        j=job_id,
    )
    b = PgServer(tmp_path, pg_url).start()
    try:
        with b.client() as c:
            job = _wait(c, job_id, lambda j: j["status"] == "done")
            assert (job["done"], job["failed"], job["total"]) == (total, 0, total)
            res = c.get(f"/v1/jobs/{job_id}/results").json()
            text_ = c.get("/metrics").text
    finally:
        b.stop()
    assert [e["status"] for e in res["images"]] == ["ok"] * total
    assert [e["source"] for e in res["images"]] == [p.name for p in images + images[:2]]
    assert rows(pg_url, "SELECT count(*), count(DISTINCT image_sha256) FROM results") == [(12, 12)]
    scored = metric(text_, "pvwind_images_total", path="job", outcome="scored")
    reused = metric(text_, "pvwind_images_total", path="job", outcome="reused")
    assert scored == 12 - results_before
    assert scored + reused == total - done_before
    assert rows(pg_url, "SELECT owner FROM jobs WHERE id = :j", j=job_id) == [(None,)]


# ----------------------------------------------------------------------- pvwind rescore
def test_rescore_into_postgres_stores_each_image_once_and_a_rerun_skips_all(pg_url, tmp_path, capsys):
    from detector_fixtures import model_dir
    from test_rescore import build_archive, comparable, db_results, detector_config, rescore

    archive = build_archive(tmp_path / "inspections")
    config = detector_config(tmp_path / "detector.yaml")
    model = [archive.root, "--model", model_dir(), "--config", config, "--workers", "1"]
    assert rescore(*model, "--out", pg_url, "--export-dir", tmp_path / "exports", "--quiet") == 0
    results = {
        sha: (rid, ImageResult.from_payload(json.loads(p) if isinstance(p, str) else p))
        for sha, rid, p in rows(pg_url, "SELECT image_sha256, id, payload FROM results")
    }
    assert set(results) == set(archive.readable.values())  # the byte-identical copy is stored once
    assert len(results) == archive.distinct
    assert rows(pg_url, "SELECT count(*) FROM images") == [(archive.distinct,)]
    files = dict(rows(pg_url, "SELECT source, COALESCE(error_reason, image_sha256) FROM rescore_files"))
    assert files == {**archive.readable, **archive.unreadable}
    assert all(isinstance(p.findings, list) for _, p in results.values())
    summary = json.loads((tmp_path / "exports" / "summary.json").read_text())  # read back from PostgreSQL
    assert {f["flight"]: f["images"] for f in summary["flights"]} == archive.groups
    # payloads come back from PostgreSQL as from SQLite (floats, GPS positions, nesting): the
    # DJI XT2 frames with GPS and the zip scored again into a SQLite file
    lite = tmp_path / "site_b.db"
    assert rescore(archive.root / "site_b", *model[1:], "--out", lite, "--no-export", "--quiet") == 0
    want = comparable(db_results(lite))
    assert len(want) == 7 and any(p["camera"] and p["camera"].get("latitude") for p in want.values())
    assert comparable({sha: results[sha][1] for sha in want}) == want

    capsys.readouterr()
    with_password = make_url(pg_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    assert rescore(*model, "--out", with_password, "--no-export") == 0  # trust authentication ignores it
    err = capsys.readouterr().err
    n = len(archive.readable) + len(archive.unreadable) - 1  # the broken zip is not an image item
    assert f"{n} images ({n} already done, 0 to score)" in err
    assert "s3cret-pw" not in err and ":***@" in err
    again = {
        sha: (rid, ImageResult.from_payload(json.loads(p) if isinstance(p, str) else p))
        for sha, rid, p in rows(pg_url, "SELECT image_sha256, id, payload FROM results")
    }
    assert again == results
    assert rows(pg_url, "SELECT status FROM rescore_runs ORDER BY id") == [("done",), ("done",)]
    # a store that cannot be opened: one line, without the password
    missing = make_url(with_password).set(database="no_such_db").render_as_string(hide_password=False)
    assert rescore(*model, "--out", missing, "--no-export") == 2
    err = capsys.readouterr().err
    assert "cannot open the result store" in err and "no_such_db" in err and "s3cret-pw" not in err
