"""The service and ``pvwind rescore`` label one model with one key, so pointed at one
database the service reuses what the re-scorer scored (and stores no second "model version")."""

from __future__ import annotations

import shutil
import sqlite3
import time

from serving_fixtures import Server, files_param, metric, mirror_images, serving_model

from pvwind.cli import main as pvwind


def test_service_reuses_the_rescorers_results(tmp_path):
    images = mirror_images(4)
    assert len(images) == 4
    archive = tmp_path / "archive" / "site-a" / "flight-1"
    archive.mkdir(parents=True)
    for p in images:
        shutil.copy(p, archive / p.name)
    db = tmp_path / "shared.db"
    args = ["rescore", str(tmp_path / "archive"), "--out", str(db), "--model", str(serving_model())]
    assert pvwind([*args, "--workers", "1", "--no-export", "--quiet"]) == 0
    with sqlite3.connect(db) as c:
        keys_before = c.execute("SELECT DISTINCT model_version FROM results").fetchall()
        n_before = c.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert len(keys_before) == 1 and n_before == 4

    with Server(tmp_path, db=db) as srv, srv.client() as client:
        assert client.get("/v1/model").json()["key"] == keys_before[0][0]
        job = client.post("/v1/jobs", files=files_param(images)).json()
        deadline = time.monotonic() + 120
        while (job := client.get(f"/v1/jobs/{job['id']}").json())["status"] != "done":
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        text = client.get("/metrics").text
        res = client.get(f"/v1/jobs/{job['id']}/results").json()
    assert metric(text, "pvwind_images_total", path="job", outcome="reused") == 4
    assert metric(text, "pvwind_images_total", path="job", outcome="scored") == 0
    assert [e["status"] for e in res["images"]] == ["ok"] * 4
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT DISTINCT model_version FROM results").fetchall() == keys_before
        assert c.execute("SELECT COUNT(*) FROM results").fetchone()[0] == n_before
