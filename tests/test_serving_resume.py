"""A server killed in the middle of a job resumes it on start: no image lost, none scored twice."""

from __future__ import annotations

import time

from serving_fixtures import Server, db_rows, files_param, metric, mirror_images

ENV = {"PVWIND_JOB_CHUNK_IMAGES": "2"}


def test_killed_server_resumes_the_job(tmp_path):
    distinct = mirror_images(16)
    assert len(distinct) == 16
    files = files_param(distinct + distinct[:4]) + [("files", ("notes.jpg", b"plain text", "image/jpeg"))]
    good = 20
    db = tmp_path / "jobs.db"

    a = Server(tmp_path, db=db, env=ENV).start()
    try:
        with a.client() as c:
            r = c.post("/v1/jobs", files=files, data={"flight": "resume"})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            deadline = time.monotonic() + 120
            while True:  # stop it once some, but not all, images are scored
                job = c.get(f"/v1/jobs/{job_id}").json()
                if job["done"] >= 4:
                    break
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
        a.kill()
    finally:
        a.stop()
    assert job["done"] < good, "the job finished before the server was stopped; nothing was tested"

    # what the killed server had committed
    (done_before,) = db_rows(db, "SELECT COUNT(*) FROM job_items WHERE job_id=? AND status='done'", job_id)[0]
    (results_before,) = db_rows(db, "SELECT COUNT(*) FROM results")[0]
    assert 4 <= done_before < good
    assert db_rows(db, "SELECT status FROM jobs WHERE id=?", job_id)[0][0] == "running"
    assert db_rows(db, "SELECT COUNT(*) FROM job_items WHERE status='done' AND result_id IS NULL")[0][0] == 0

    b = Server(tmp_path, db=db, env=ENV).start()
    try:
        with b.client() as c:
            deadline = time.monotonic() + 180
            while (job := c.get(f"/v1/jobs/{job_id}").json())["status"] != "done":
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert (job["done"], job["failed"], job["total"]) == (good, 1, good + 1)
            res = c.get(f"/v1/jobs/{job_id}/results").json()
            text = c.get("/metrics").text
        b.stop()  # SIGTERM: a graceful stop (uvicorn re-raises the signal after shutting down)
        assert "Application shutdown complete" in b.log()
    finally:
        b.stop()

    # no image lost: every good item has exactly one result, in upload order
    statuses = [e["status"] for e in res["images"]]
    assert statuses == ["ok"] * good + ["error"]
    assert [e["source"] for e in res["images"][:good]] == [p.name for p in distinct + distinct[:4]]
    # none scored twice: one stored result per distinct image, and the restarted server ran
    # the model only on images without a committed result
    assert db_rows(db, "SELECT COUNT(*), COUNT(DISTINCT image_sha256) FROM results")[0] == (16, 16)
    scored = metric(text, "pvwind_images_total", path="job", outcome="scored")
    reused = metric(text, "pvwind_images_total", path="job", outcome="reused")
    assert scored == 16 - results_before
    assert scored + reused == good - done_before
    assert db_rows(db, "SELECT COUNT(*) FROM job_items WHERE job_id=? AND status='pending'", job_id)[0][0] == 0
