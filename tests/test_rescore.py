"""``pvwind rescore``: real ONNX Runtime sessions, SQLite on disk, real mirror images.

One small archive (folder tree + a zip + a tar + corrupt files + a duplicate) is scored
once with ``--workers 2``; the other tests compare against that run: ``--workers 1``,
Ray, a re-run that must skip everything, a SIGKILL mid-run, a second model version.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from detector_fixtures import MIRROR, REPO, SHIPPED, model_dir

from detector.results import ImageResult

pytestmark = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"dataset mirror {MIRROR} not found")
PY = sys.executable


def _mirror(pattern: str, n: int, skip: int = 0) -> list[Path]:
    files = sorted(MIRROR.glob(pattern))[skip : skip + n]
    assert len(files) == n, f"mirror has too few {pattern}"
    return files


def _sha(p: Path | bytes) -> str:
    return hashlib.sha256(p if isinstance(p, bytes) else p.read_bytes()).hexdigest()


@dataclass
class Archive:
    root: Path
    readable: dict[str, str]  # source -> sha256 of every readable image
    unreadable: dict[str, str]  # source -> expected reason
    groups: dict[str, int]  # flight -> images in it (readable or not)

    @property
    def distinct(self) -> int:
        return len(set(self.readable.values()))


def build_archive(root: Path) -> Archive:
    """site_a/flight_1 (wind RGB + corrupt files), site_a/flight_2 (PV thermal),
    site_b/flight_1 (DJI XT2 frames with GPS), site_b/flight_2.zip (wind close-ups),
    site_c.tar (PV RGB) and a byte-identical copy of one image in another flight."""
    readable: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    groups: dict[str, int] = {}

    def add(dest: Path, src: Path, group: str) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        readable[str(dest)] = _sha(dest)
        groups[group] = groups.get(group, 0) + 1

    f1 = root / "site_a" / "flight_1"
    for p in _mirror("wind_iliad/test/images/*.jpg", 5):
        add(f1 / p.name, p, "site_a/flight_1")
    for p in _mirror("pv_zelestra_ir/data/Train/*.jpg", 5):
        add(root / "site_a" / "flight_2" / p.name, p, "site_a/flight_2")
    for p in _mirror("pv_zelestra_ir/data/Test/*.JPG", 3):
        add(root / "site_b" / "flight_1" / p.name, p, "site_b/flight_1")
    first = next(iter(readable))
    add(root / "site_c" / "copies" / "same_bytes.jpg", Path(first), "site_c/copies")
    # corrupt files in a flight folder
    (f1 / "not_an_image.jpg").write_text("this is text, not a JPEG\n")
    unreadable[str(f1 / "not_an_image.jpg")] = "not_image"
    jpeg = Path(first).read_bytes()
    (f1 / "cut_short.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    unreadable[str(f1 / "cut_short.jpg")] = "truncated"
    (f1 / "empty.png").write_bytes(b"")
    unreadable[str(f1 / "empty.png")] = "empty"
    groups["site_a/flight_1"] += 3
    (root / "site_a" / "notes.txt").write_text("flight log\n")  # ignored: not an image
    # a zip (members in a sub-folder) and an uncompressed tar
    z = root / "site_b" / "flight_2.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in _mirror("wind_fans/train/images/*.jpg", 4):
            zf.write(p, f"cam0/{p.name}")
            readable[f"{z}::cam0/{p.name}"] = _sha(p)
    groups["site_b/flight_2/cam0"] = 4
    t = root / "site_c.tar"
    with tarfile.open(t, "w") as tf:
        for p in _mirror("pv_isuru_rgb/train/*.jpg", 4):
            tf.add(p, f"flight_7/{p.name}")
            readable[f"{t}::flight_7/{p.name}"] = _sha(p)
    groups["site_c/flight_7"] = 4
    (root / "site_b" / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    unreadable[str(root / "site_b" / "broken.zip")] = "bad_archive"
    groups["site_b/broken"] = 1
    return Archive(root, readable, unreadable, groups)


def detector_config(path: Path, **extra) -> Path:
    """Thresholds that give the model under test some detections: the 3-epoch dev model
    only scores below 0.005; a shipped model gets a usual low threshold."""
    import yaml

    conf = 0.05 if model_dir() == SHIPPED else 0.001
    path.write_text(yaml.safe_dump({"conf": conf, "max_det": 20, **extra}))
    return path


def rescore(*args: str | Path) -> int:
    from pvwind.cli import main

    return main(["rescore", *map(str, args)])


def db_results(db: Path, model_version: str | None = None) -> dict[str, ImageResult]:
    with sqlite3.connect(db) as c:
        q = "SELECT image_sha256, payload FROM results"
        rows = c.execute(q + " WHERE model_version = ?", (model_version,)) if model_version else c.execute(q)
        return {sha: ImageResult.from_payload(json.loads(p)) for sha, p in rows}


def comparable(results: dict[str, ImageResult]) -> dict[str, dict]:
    """The stored form, without where the image was found (identical content may sit in two places)."""
    assert results, "nothing to compare"
    return {sha: r.payload() for sha, r in results.items()}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Archive:
    return build_archive(tmp_path_factory.mktemp("archive") / "inspections")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """(model folder, detector config)."""
    d = tmp_path_factory.mktemp("model")
    return model_dir(), detector_config(d / "detector.yaml")


@pytest.fixture(scope="module")
def local_run(archive, model, tmp_path_factory) -> Path:
    """The archive scored once with two worker processes; returns the store."""
    out = tmp_path_factory.mktemp("run2")
    db = out / "results.db"
    rc = rescore(
        archive.root,
        "--model",
        model[0],
        "--config",
        model[1],
        "--out",
        db,
        "--workers",
        "2",
        "--export-dir",
        out / "exports",
        "--quiet",
    )
    assert rc == 0
    return db


# ------------------------------------------------------------------------------------ packages
def test_rescore_and_storage_import_nothing_of_the_service():
    code = (
        "import sys, importlib\n"
        "for m in ('storage.archive', 'storage.store', 'rescore.report', 'rescore.local_runner',"
        " 'rescore.ray_runner', 'pvwind.commands.rescore'):\n"
        "    importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m == 'serving' or m.startswith('serving.')))\n"
    )
    out = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------- scan
def test_scan_finds_images_in_tree_zip_and_tar(archive, tmp_path):
    from rescore.scan import ArchiveReader, scan_archives

    scan = scan_archives([archive.root])
    found = {it.source for it in scan.items}
    assert found == set(archive.readable) | {s for s, r in archive.unreadable.items() if r != "bad_archive"}
    assert scan.ignored == 1  # notes.txt
    assert [(p.source, p.reason) for p in scan.problems] == [
        (str(archive.root / "site_b" / "broken.zip"), "bad_archive")
    ]
    by_source = {it.source: it for it in scan.items}
    zsrc = next(s for s in archive.readable if ".zip::" in s)
    tsrc = next(s for s in archive.readable if ".tar::" in s)
    assert by_source[zsrc].flight == "site_b/flight_2/cam0"
    assert by_source[tsrc].flight == "site_c/flight_7"
    reader = ArchiveReader()
    for src in (zsrc, tsrc):
        assert _sha(reader.read(by_source[src])) == archive.readable[src]
    reader.close()
    # an unchanged file keeps its fingerprint; a rewritten one gets a new one
    again = {it.source: it.fingerprint for it in scan_archives([archive.root]).items}
    assert again == {it.source: it.fingerprint for it in scan.items}
    f = tmp_path / "f" / "x.jpg"
    f.parent.mkdir()
    f.write_bytes(b"a" * 10)
    (before,) = scan_archives([f.parent]).items
    os.utime(f, ns=(before_ns := f.stat().st_mtime_ns, before_ns + 1_000_000))
    (after,) = scan_archives([f.parent]).items
    assert before.fingerprint != after.fingerprint and before.flight == "f"


def test_bad_arguments_are_one_line_errors(tmp_path, capsys, model):
    assert rescore(tmp_path / "nope", "--out", tmp_path / "r.db") == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    assert rescore(tmp_path / "a", "--out", tmp_path / "r.db") == 2
    assert "no images found" in capsys.readouterr().err
    (tmp_path / "a" / "x.jpg").write_bytes(b"x")
    assert rescore(tmp_path / "a", "--model", tmp_path / "missing", "--out", tmp_path / "r.db") == 2
    assert "model not found" in capsys.readouterr().err
    assert rescore(tmp_path / "a", "--formats", "xml", "--out", tmp_path / "r.db") == 2
    assert "--formats" in capsys.readouterr().err
    (tmp_path / "a.tar.gz").write_bytes(b"")
    assert rescore(tmp_path / "a.tar.gz", "--out", tmp_path / "r.db") == 2
    assert "compressed tar" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ local runs
def test_rescore_stores_every_image_once_and_exports(archive, local_run):
    payloads = db_results(local_run)
    assert len(payloads) == archive.distinct  # the duplicate content is scored once
    assert set(payloads) == set(archive.readable.values())
    with sqlite3.connect(local_run) as c:
        files = dict(c.execute("SELECT source, COALESCE(error_reason, image_sha256) FROM rescore_files"))
        images = dict(c.execute("SELECT sha256, source FROM images"))
    for src, sha in archive.readable.items():
        assert files[src] == sha
    for src, reason in archive.unreadable.items():
        assert files[src] == reason
    assert set(images) == set(payloads)
    # the byte-identical copy went through the model once: the run scored each content once
    with sqlite3.connect(local_run) as c:
        ((scored, stats),) = c.execute("SELECT scored, stats FROM rescore_runs").fetchall()
    assert scored == archive.distinct and json.loads(stats)["known"] == 1
    # exports
    ex = local_run.parent / "exports"
    n_defects = sum(len(p.findings) for sha, p in payloads.items())
    per_source = {src: len(payloads[sha].findings) for src, sha in archive.readable.items()}
    expected_rows = sum(per_source.values())  # one row per defect per file (the copy counts again)
    assert expected_rows >= n_defects > 0
    gj = json.loads((ex / "defects.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == expected_rows
    for f in gj["features"]:
        assert f["geometry"] is None or (f["geometry"]["type"] == "Point" and len(f["geometry"]["coordinates"]) == 2)
    with open(ex / "defects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == expected_rows
    import pyarrow.parquet as pq

    table = pq.read_table(ex / "defects.parquet")
    assert table.num_rows == expected_rows
    assert table.schema.field("confidence").type == "double"
    # unreadable list with reasons
    with open(ex / "unreadable.csv", newline="") as f:
        listed = {r["source"]: r["reason"] for r in csv.DictReader(f)}
    assert listed == archive.unreadable
    # per-site/flight summary
    summary = json.loads((ex / "summary.json").read_text())
    flights = {f["flight"]: f for f in summary["flights"]}
    assert {g: f["images"] for g, f in flights.items()} == archive.groups
    assert flights["site_a/flight_1"]["images_failed"] == 3
    assert flights["site_a/flight_1"]["site"] == "site_a"
    assert summary["total"]["defects"] == expected_rows
    with open(ex / "summary.csv", newline="") as f:
        srows = {r["flight"]: r for r in csv.DictReader(f)}
    assert int(srows["site_c/flight_7"]["images"]) == 4
    assert sum(int(r["defects"]) for r in srows.values()) == expected_rows
    assert all(p in srows["site_a/flight_1"] for p in ("P1", "P2", "P3", "P4"))


def test_rerun_skips_everything_already_scored(archive, model, local_run, capsys):
    before = db_results(local_run)
    assert before
    rc = rescore(archive.root, "--model", model[0], "--config", model[1], "--out", local_run, "--no-export")
    assert rc == 0
    err = capsys.readouterr().err
    n = len(archive.readable) + len(archive.unreadable) - 1  # the broken zip is not an image item
    assert f"{n} images ({n} already done, 0 to score)" in err
    assert db_results(local_run) == before


def test_new_settings_are_scored_again_and_speed_settings_are_not(archive, model, local_run, tmp_path, capsys):
    """Results are keyed by model *and* result-changing settings: new thresholds re-score
    every image (the old results stay for the change report); threads or batch size do not."""
    db = tmp_path / "results.db"
    shutil.copyfile(local_run, db)
    n = len(archive.readable) + len(archive.unreadable) - 1  # the broken zip is not an image item
    (old_key,) = {p.model for p in db_results(db).values()}
    speed = detector_config(tmp_path / "speed.yaml", threads=1, batch_size=2)
    assert rescore(archive.root, "--model", model[0], "--config", speed, "--out", db, "--no-export") == 0
    assert f"{n} images ({n} already done, 0 to score)" in capsys.readouterr().err
    strict = detector_config(tmp_path / "strict.yaml", max_det=3)
    assert rescore(archive.root, "--model", model[0], "--config", strict, "--out", db, "--no-export") == 0
    with sqlite3.connect(db) as c:
        counts = dict(c.execute("SELECT model_version, COUNT(*) FROM results GROUP BY model_version"))
    assert len(counts) == 2 and old_key in counts
    (new_key,) = set(counts) - {old_key}
    assert counts[new_key] == counts[old_key] == len(db_results(db, old_key))
    assert new_key.split("+")[0] == old_key.split("+")[0]  # same model, other settings
    assert any(p.findings for p in db_results(db, new_key).values())
    assert all(len(p.findings) <= 3 for p in db_results(db, new_key).values())


def test_one_worker_gives_the_same_results(archive, model, local_run, tmp_path):
    db = tmp_path / "one.db"
    assert (
        rescore(
            archive.root,
            "--model",
            model[0],
            "--config",
            model[1],
            "--out",
            db,
            "--workers",
            "1",
            "--no-export",
            "--quiet",
        )
        == 0
    )
    assert comparable(db_results(db)) == comparable(db_results(local_run))


def test_moved_images_are_found_by_content(archive, model, local_run, tmp_path, capsys):
    """A file never seen at this path but with known content is not scored again."""
    moved = tmp_path / "moved" / "flight_x"
    moved.mkdir(parents=True)
    src = next(s for s in archive.readable if "::" not in s)
    shutil.copyfile(src, moved / "renamed.jpg")
    n = len(db_results(local_run))
    assert (
        rescore(
            moved.parent, "--model", model[0], "--config", model[1], "--out", local_run, "--no-export", "--workers", "1"
        )
        == 0
    )
    assert "already known by content 1" in capsys.readouterr().err
    assert len(db_results(local_run)) == n


def test_copies_in_one_run_go_through_the_model_once(model, tmp_path):
    """The same bytes in two folders and in a zip, spread over chunks of one image on two
    workers: each content is scored once; the copies are recorded with its outcome."""
    root = tmp_path / "flights"
    srcs = _mirror("wind_iliad/test/images/*.jpg", 3)
    for p in srcs:
        (root / "site_a" / "day_1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, root / "site_a" / "day_1" / p.name)
    (root / "backup").mkdir()
    shutil.copyfile(srcs[0], root / "backup" / "copy_0.jpg")
    with zipfile.ZipFile(root / "backup" / "day_1.zip", "w") as zf:
        zf.write(srcs[1], "copy_1.jpg")
    cut = srcs[2].read_bytes()[:5000]  # two identical broken files: unreadable for the same reason
    (root / "site_a" / "day_1" / "cut_a.jpg").write_bytes(cut)
    (root / "backup" / "cut_b.jpg").write_bytes(cut)
    db = tmp_path / "results.db"
    args = ["--model", model[0], "--config", model[1], "--out", db, "--workers", "2", "--chunk", "1"]
    assert rescore(root, *args, "--no-export", "--quiet") == 0
    with sqlite3.connect(db) as c:
        ((scored, unreadable, stats),) = c.execute("SELECT scored, unreadable, stats FROM rescore_runs").fetchall()
        files = dict(c.execute("SELECT source, COALESCE(error_reason, image_sha256) FROM rescore_files"))
        n_results = c.execute("SELECT count(*) FROM results").fetchone()[0]
    assert (scored, json.loads(stats)["known"], unreadable) == (3, 2, 2)
    assert n_results == 3
    assert files[str(root / "backup" / "copy_0.jpg")] == _sha(srcs[0])
    assert files[f"{root / 'backup' / 'day_1.zip'}::copy_1.jpg"] == _sha(srcs[1])
    cut_a, cut_b = files[str(root / "site_a" / "day_1" / "cut_a.jpg")], files[str(root / "backup" / "cut_b.jpg")]
    assert cut_a == cut_b and cut_a in ("truncated", "corrupt")


def test_runs_whose_process_is_gone_are_marked_interrupted(tmp_path):
    """A run row records its process; the next run closes rows of processes that are gone
    (killed, or from before owner records) and leaves live ones and other hosts' alone."""
    from storage.archive import ArchiveIndex, this_process
    from storage.database import database_url
    from storage.store import Store
    from storage.tables import RescoreRun

    index = ArchiveIndex(Store.from_url(database_url(str(tmp_path / "results.db"))))
    try:
        live = index.start_run("m@1", "local", ["/a"], 1, 0)  # this process: alive
        sleeper = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
        dead = subprocess.Popen([PY, "-c", "pass"])
        dead.wait()
        me = this_process()
        owners = {
            "sleeping": {**me, "pid": sleeper.pid, "started": None},
            "dead": {**me, "pid": dead.pid, "started": None},
            "reused": {**me, "started": (me["started"] or 0) + 1},  # this pid, but a process started later
            "elsewhere": {**me, "host": "another-host", "pid": dead.pid},
            "legacy": None,
        }
        ids = {}
        with index.store.session() as s, s.begin():
            for name, owner in owners.items():
                run = RescoreRun(
                    model_version="m@1",
                    mode="local",
                    archives={"paths": []},
                    status="running",
                    stats={"owner": owner} if owner else None,
                )
                s.add(run)
                s.flush()
                ids[name] = run.id
        try:
            closed = index.close_abandoned_runs()
        finally:
            sleeper.kill()
            sleeper.wait()
        with index.store.session() as s:
            status = {rid: st for rid, st in s.query(RescoreRun.id, RescoreRun.status)}
    finally:
        index.close()
    expected_gone = {"dead", "legacy"} | ({"reused"} if me["started"] is not None else set())
    assert closed == len(expected_gone)
    assert status[live] == "running"
    assert {name for name, rid in ids.items() if status[rid] == "interrupted"} == expected_gone


@contextlib.contextmanager
def _read_only(db: Path):
    """``db`` made read-only: by its mode, or for root (whom modes do not stop) made immutable;
    yields the --out value, or where neither works a read-only SQLite URI of it."""
    if os.geteuid() != 0:
        db.chmod(0o444)
        try:
            yield str(db)
        finally:
            db.chmod(0o644)
        return
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode == 0:
        try:
            yield str(db)
        finally:
            subprocess.run(["chattr", "-i", str(db)], check=True)
        return
    yield f"sqlite:///file:{db}?mode=ro&uri=true"


def test_a_read_only_store_is_a_one_line_error(model, tmp_path, capsys):
    d = tmp_path / "flight"
    d.mkdir()
    shutil.copyfile(_mirror("wind_iliad/test/images/*.jpg", 1)[0], d / "a.jpg")
    db = tmp_path / "results.db"
    args = ["--model", model[0], "--config", model[1], "--workers", "1", "--no-export", "--quiet"]
    assert rescore(d, *args, "--out", db) == 0
    shutil.copyfile(_mirror("wind_iliad/test/images/*.jpg", 1, skip=1)[0], d / "b.jpg")
    capsys.readouterr()
    with _read_only(db) as out:
        rc = rescore(d, *args, "--out", out)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "result store" in err and "readonly" in err.replace("read-only", "readonly"), err


def test_nothing_scorable_exits_1_and_says_what_was_found(model, tmp_path, capsys):
    """A folder whose only image is text, and a lone broken zip: exit 1 with one line naming
    what was found (also with --quiet); a folder of other files only: exit 2."""
    args = ["--model", model[0], "--config", model[1], "--workers", "1", "--quiet"]
    text = tmp_path / "text"
    text.mkdir()
    (text / "x.jpg").write_text("not an image\n")
    assert rescore(text, *args, "--out", tmp_path / "r.db", "--export-dir", tmp_path / "ex") == 1
    err = capsys.readouterr().err
    assert "no image could be scored" in err and "1 not_image" in err and "x.jpg" in err, err
    broken = tmp_path / "flight.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    assert rescore(broken, *args, "--out", tmp_path / "r.db", "--no-export") == 1
    err = capsys.readouterr().err
    assert "no image could be scored" in err and "1 bad_archive" in err and "flight.zip" in err, err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "log.txt").write_text("flight log\n")
    assert rescore(notes, *args, "--out", tmp_path / "r.db") == 2
    err = capsys.readouterr().err
    assert "no images found" in err and "1 other file(s) ignored" in err, err


# ------------------------------------------------------------------------------------- SIGKILL
def _group_alive(pgid: int) -> list[int]:
    alive = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(d.name))
    return alive


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as c:
            return c.execute("SELECT count(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_sigkill_mid_run_then_rerun_holds_every_image_once(model, tmp_path):
    root = tmp_path / "flights"
    srcs = _mirror("wind_iliad/train/images/*.jpg", 30) + _mirror("pv_zelestra_ir/data/Train/*.jpg", 14)
    for i, p in enumerate(srcs):
        d = root / "site" / f"flight_{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, d / p.name)
    (root / "site" / "flight_0" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    expected = {_sha(p) for p in srcs}
    db = tmp_path / "results.db"
    cmd = [
        PY,
        "-m",
        "pvwind",
        "rescore",
        str(root),
        "--model",
        str(model[0]),
        "--config",
        str(model[1]),
        "--out",
        str(db),
        "--workers",
        "1",
        "--threads",
        "1",
        "--chunk",
        "2",
        "--batch-size",
        "2",
        "--commit-every",
        "1",
        "--no-export",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            n = _count(db)
            if 0 < n < len(expected) - 4:
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = n
                break
            time.sleep(0.02)
        proc.wait(timeout=30)
        assert killed_at is not None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
        assert proc.returncode == -signal.SIGKILL
        # its worker process follows it (no orphan keeps scoring or holding memory)
        for _ in range(100):
            if not _group_alive(proc.pid):
                break
            time.sleep(0.1)
        assert not _group_alive(proc.pid), "worker processes outlived the killed run"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert 0 < _count(db) < len(expected)
    done = subprocess.run(cmd[:-1], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    assert "already done" in done.stderr
    skipped = int(done.stderr.split(" images (")[1].split(" already done")[0])
    assert skipped >= killed_at
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT image_sha256, model_version FROM results").fetchall()
        dup = c.execute(
            "SELECT count(*) FROM (SELECT 1 FROM results GROUP BY image_sha256, model_version HAVING count(*) > 1)"
        ).fetchone()[0]
        bad = c.execute("SELECT source, error_reason FROM rescore_files WHERE error_reason IS NOT NULL").fetchall()
    assert dup == 0
    assert len(rows) == len(expected) and {r[0] for r in rows} == expected
    assert [src for src, _ in bad] == [str(root / "site" / "flight_0" / "zz_broken.jpg")]
    assert bad[0][1] in ("corrupt", "truncated")
    # the killed run does not stay "running" forever: the next run marked it interrupted
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT status FROM rescore_runs ORDER BY id").fetchall() == [("interrupted",), ("done",)]


# ---------------------------------------------------------------------------------------- Ray
@pytest.mark.slow
def test_ray_gives_the_same_results_as_local(archive, model, local_run, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        db = tmp_path / "ray.db"
        rc = rescore(
            archive.root,
            "--model",
            model[0],
            "--config",
            model[1],
            "--out",
            db,
            "--ray",
            "--workers",
            "2",
            "--export-dir",
            tmp_path / "exports",
            "--quiet",
        )
        assert rc == 0
    finally:
        ray.shutdown()
    assert comparable(db_results(db)) == comparable(db_results(local_run))
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT mode, status FROM rescore_runs").fetchall() == [("ray", "done")]
    with open(tmp_path / "exports" / "unreadable.csv", newline="") as f:
        assert {r["source"]: r["reason"] for r in csv.DictReader(f)} == archive.unreadable


# ------------------------------------------------------------------------------- change report
def test_change_report_between_two_model_versions(archive, model, tmp_path):
    """v2 = the same network under another name, keeping fewer detections per image (the
    lowest-scored ones vanish) and with every level mapped to P1 (the rest are re-prioritised)."""
    import yaml

    models = tmp_path / "models"
    for v in ("v1", "v2"):
        (models / v).mkdir(parents=True)
        shutil.copyfile(model[0] / "model.onnx", models / v / "model.onnx")
    flights = archive.root / "site_a"
    db = tmp_path / "results.db"
    assert (
        rescore(
            flights,
            "--model",
            models / "v1",
            "--config",
            model[1],
            "--out",
            db,
            "--workers",
            "1",
            "--no-export",
            "--quiet",
        )
        == 0
    )
    (v1_key,) = {p.model for p in db_results(db).values()}
    v1 = db_results(db, v1_key)
    assert any(p.findings for p in v1.values()), "the model under test finds nothing even at a low threshold"
    priority = yaml.safe_load((REPO / "configs" / "priority.yaml").read_text())
    for scale in priority["scales"].values():
        for level in scale["levels"].values():
            level["priority"] = "P1"
    (tmp_path / "p1.yaml").write_text(yaml.safe_dump(priority))
    base = yaml.safe_load(model[1].read_text())
    cfg2 = tmp_path / "v2.yaml"
    v2_cfg = {**base, "max_det": base["max_det"] // 2, "priority_config": str(tmp_path / "p1.yaml")}
    cfg2.write_text(yaml.safe_dump(v2_cfg))
    ex = tmp_path / "exports"
    assert (
        rescore(
            flights,
            "--model",
            models / "v2",
            "--config",
            cfg2,
            "--out",
            db,
            "--workers",
            "1",
            "--export-dir",
            ex,
            "--quiet",
        )
        == 0
    )
    keys = {p.model for p in db_results(db).values()}
    (v2_key,) = keys - {v1_key}
    v2 = db_results(db, v2_key)
    assert set(v2) == set(v1)
    n1 = sum(len(p.findings) for p in v1.values())
    n2 = sum(len(p.findings) for p in v2.values())
    assert 0 < n2 <= n1
    changes = json.loads((ex / "changes.json").read_text())
    assert changes["current"] == v2_key and changes["previous"] == v1_key
    assert changes["images_compared"] == len(v1)
    assert changes["new"] == 0
    assert changes["vanished"] == n1 - n2
    # the v2 defects are the v1 defects above the new threshold; each is re-prioritised unless it was P1
    v1_boxes = {(sha, f.box.xyxy, f.class_name): f.priority for sha, p in v1.items() for f in p.findings}
    expected = sum(v1_boxes[(sha, f.box.xyxy, f.class_name)] != "P1" for sha, p in v2.items() for f in p.findings)
    assert changes["reprioritised"] == expected
    with open(ex / "changes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == changes["new"] + changes["vanished"] + changes["reprioritised"]
    assert {r["change"] for r in rows} <= {"vanished", "reprioritised"}
    assert all(r["new_priority"] == "P1" for r in rows if r["change"] == "reprioritised")


def test_diff_findings_matches_by_class_and_overlap():
    from detector.results import Box, Finding
    from rescore.changes import diff_findings

    def d(cls, box, prio, conf=0.5):
        return Finding(
            priority=prio,
            action="",
            time_frame="",
            index=0,
            class_id=0,
            class_name=cls,
            confidence=conf,
            box=Box.of(box),
            area_frac=0.0,
        )

    old = [d("hotspot", (0, 0, 10, 10), "P3"), d("hotspot", (50, 50, 60, 60), "P2"), d("diode", (0, 0, 10, 10), "P4")]
    new = [d("hotspot", (1, 1, 11, 11), "P2"), d("diode", (100, 100, 120, 120), "P4"), d("soiling", (0, 0, 9, 9), "P4")]
    appeared, vanished, changed = diff_findings(old, new)
    assert [(x.class_name, x.box.x1) for x in appeared] == [("diode", 100), ("soiling", 0)]
    assert [(x.class_name, x.box.x1) for x in vanished] == [("hotspot", 50), ("diode", 0)]
    assert [(o.priority, n.priority) for o, n in changed] == [("P3", "P2")]


# ------------------------------------------------------------------------------ report --store
def test_report_from_the_store_holds_the_flights_findings(local_run, archive, tmp_path, capsys):
    from pvwind.cli import main

    url = f"sqlite:///{local_run}"
    flight = "site_b/flight_1"  # the DJI XT2 frames
    out = tmp_path / "report.html"
    assert main(["report", "--store", url, "--flight", flight, "--out", str(out), "--no-previews"]) == 0
    html = out.read_text("utf-8")
    results = db_results(local_run)
    shas = {sha for src, sha in archive.readable.items() if f"{os.sep}site_b{os.sep}flight_1{os.sep}" in src}
    assert shas and shas <= set(results)
    findings = [f for sha in shas for f in results[sha].findings]
    assert findings
    assert flight in html
    for name in {f.class_name for f in findings}:
        assert name in html
    assert html.count("<tr") >= len(findings)  # a row per finding (and the header rows)
    # an unknown flight: exit 2 and one line naming the flights there are
    capsys.readouterr()
    assert main(["report", "--store", url, "--flight", "site_z/nothing", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no flight 'site_z/nothing'" in err[0] and "site_a/flight_1" in err[0]
