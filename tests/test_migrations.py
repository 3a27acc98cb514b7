# ruff: noqa: E501
"""Stored data survives upgrades: the schema is Alembic's (``storage/migrations``), and
``open_engine(url, create=True)`` brings any database to the newest revision: a fresh one,
one written by the release before Alembic (``create_all`` of its tables: stamped as the
baseline, then upgraded), and one at an older revision. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import sys
import threading
import types
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from pg_fixtures import fresh_database, postgres_url  # noqa: F401 - postgres_url is a fixture
from sqlalchemy import create_engine, inspect, text

from storage import migrations
from storage.database import database_url, open_engine, schema_revision, upgrade
from storage.tables import Base

#: storage/tables.py of the last release before Alembic (git dde5f5a), verbatim: the
#: previous release's code path that wrote the databases this release must read
PREVIOUS_TABLES = """\
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Image(Base):
    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(Text, default=None)  # where the re-scorer found it; never a served path
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImageBlob(Base):
    __tablename__ = "image_blobs"

    sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("image_sha256", "model_version", name="uq_result_image_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    n_defects: Mapped[int] = mapped_column(Integer)
    priority: Mapped[str | None] = mapped_column(String(8))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | done | cancelled
    asset_type: Mapped[str] = mapped_column(String(8))
    site: Mapped[str | None] = mapped_column(String(200))
    flight: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(128))
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)  # scored
    failed: Mapped[int] = mapped_column(Integer, default=0)  # rejected at upload or when decoded
    owner: Mapped[str | None] = mapped_column(String(64))  # instance holding the lease
    lease_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class JobItem(Base):
    __tablename__ = "job_items"
    __table_args__ = (Index("ix_job_items_job_status", "job_id", "status"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))  # display only, never a path
    image_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"))
    status: Mapped[str] = mapped_column(String(8))  # pending | done | error
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_status: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"))


class RescoreFile(Base):
    __tablename__ = "rescore_files"

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    flight: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    image_sha256: Mapped[str | None] = mapped_column(String(64), index=True)  # None: bytes unreadable
    error_reason: Mapped[str | None] = mapped_column(String(32))  # None: a readable image
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RescoreRun(Base):
    __tablename__ = "rescore_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16))
    archives: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # running | done | interrupted | failed
    found: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    scored: Mapped[int] = mapped_column(Integer, default=0)
    unreadable: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
"""

OLD_TABLES = {"images", "image_blobs", "results", "jobs", "job_items", "rescore_files", "rescore_runs"}
NEW_TABLES = {"sites", "flights", "flight_images", "tracks", "track_observations"}


def previous_release():
    """The previous release's table module (its own metadata)."""
    mod = types.ModuleType("previous_tables")
    sys.modules["previous_tables"] = mod  # dataclass-like annotations resolve through the module
    exec(compile(PREVIOUS_TABLES, "previous_tables.py", "exec"), mod.__dict__)
    return mod


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return database_url(str(tmp_path / "results.db"))
    return fresh_database(request.getfixturevalue("postgres_url"))


def _diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()


def test_head_is_the_newest_revision():
    from pathlib import Path

    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_current_head() == migrations.HEAD
    assert [r.revision for r in script.walk_revisions()][-1] == migrations.BASELINE


def test_a_fresh_database_is_migrated_to_exactly_the_tables(url):
    engine = open_engine(url)
    with engine.connect() as c:
        assert schema_revision(c) == migrations.HEAD
        assert OLD_TABLES | NEW_TABLES <= set(inspect(c).get_table_names())
    assert upgrade(engine) == migrations.HEAD  # at head: nothing to do
    engine.dispose()
    assert _diff(url) == []  # the migrations make what storage/tables.py declares


def test_a_database_of_the_previous_release_is_upgraded_and_keeps_its_rows(url):
    old = previous_release()
    engine = create_engine(url)
    old.Base.metadata.create_all(engine)  # what the previous release's open_engine did
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    payload = {"schema_version": 2, "status": "ok", "sha256": "a" * 64, "width": 640, "height": 512,
               "camera": {"latitude": 15.68, "longitude": 78.27, "taken_at": "2019:02:06 11:59:27"},
               "geo": {"quality": "estimate", "gsd_m": 0.03},
               "findings": [{"index": 0, "class_id": 8, "class_name": "pv_hotspot", "asset": "pv", "confidence": 0.9,
                             "box": {"x1": 10, "y1": 10, "x2": 30, "y2": 20}, "area_frac": 0.0006,
                             "location": {"latitude": 15.68, "longitude": 78.27, "quality": "estimate"},
                             "priority": "P2", "action": "repair", "time_frame": "30 days", "level": 3,
                             "scale": "pv_coa", "reasons": []}]}  # fmt: skip
    with engine.begin() as c:
        c.execute(old.Image.__table__.insert(), [{"sha256": "a" * 64, "media_type": "image/jpeg", "size_bytes": 3,
                                                  "created_at": now}])  # fmt: skip
        c.execute(old.ImageBlob.__table__.insert(), [{"sha256": "a" * 64, "data": b"abc"}])
        c.execute(old.Result.__table__.insert(), [{"image_sha256": "a" * 64, "model_version": "m@1", "n_defects": 1,
                                                   "priority": "P2", "payload": payload, "created_at": now}])  # fmt: skip
        c.execute(old.Job.__table__.insert(), [{"id": "b" * 32, "status": "done", "asset_type": "pv", "site": "s",
                                                "flight": "f", "model_version": "m@1", "total": 1, "done": 1,
                                                "failed": 0, "created_at": now}])  # fmt: skip
        c.execute(old.JobItem.__table__.insert(), [{"job_id": "b" * 32, "position": 0, "filename": "x.jpg",
                                                    "image_sha256": "a" * 64, "status": "done", "result_id": 1}])  # fmt: skip
        c.execute(old.RescoreFile.__table__.insert(), [{"source": "/a/s/f/x.jpg", "flight": "s/f", "fingerprint": "1",
                                                        "image_sha256": "a" * 64, "updated_at": now}])  # fmt: skip
        c.execute(old.RescoreRun.__table__.insert(), [{"model_version": "m@1", "mode": "local", "archives": {"paths": []},
                                                       "status": "done", "found": 1, "skipped": 0, "scored": 1,
                                                       "unreadable": 0, "started_at": now}])  # fmt: skip
    with engine.connect() as c:
        assert schema_revision(c) is None
    engine.dispose()

    engine = open_engine(url)  # this release: stamp the baseline, upgrade
    with engine.connect() as c:
        assert schema_revision(c) == migrations.HEAD
        assert c.execute(text("SELECT model_version, n_defects, priority FROM results")).all() == [("m@1", 1, "P2")]
        assert c.execute(text("SELECT status, site, flight, done FROM jobs")).all() == [("done", "s", "f", 1)]
        assert c.execute(text("SELECT filename, result_id FROM job_items")).all() == [("x.jpg", 1)]
        assert c.execute(text("SELECT flight FROM rescore_files")).scalar() == "s/f"
        assert c.execute(text("SELECT status FROM rescore_runs")).scalar() == "done"
    engine.dispose()
    assert _diff(url) == []

    # the old rows read through this release's code, and the new tables work on them
    from history.tracker import match_site
    from storage.flights import FlightLog
    from storage.store import Store

    store = Store.from_url(url)
    assert store.results_for(["a" * 64], "m@1")["a" * 64].findings[0].class_name == "pv_hotspot"
    assert [r.status for r in store.job_rows("b" * 32)] == ["done"]
    FlightLog(store).record("s", "f", [("a" * 64, "x.jpg")], "m@1", complete=True)
    rep = match_site(store, "s")
    assert rep.flights == ["f"] and rep.states == {"new": 1}
    assert FlightLog(store).flights("s")[0].flown_on.isoformat() == "2019-02-06"
    store.close()


def test_an_older_revision_is_upgraded(url):
    engine = open_engine(url, create=False)
    assert upgrade(engine, migrations.BASELINE) == "empty"
    with engine.connect() as c:
        assert schema_revision(c) == migrations.BASELINE
        assert not NEW_TABLES & set(inspect(c).get_table_names())
    with engine.begin() as c:
        c.execute(text("INSERT INTO images (sha256, media_type, size_bytes, created_at) VALUES ('c', 'x', 1, :t)"),
                  {"t": datetime.now(UTC)})  # fmt: skip
    engine.dispose()
    engine = open_engine(url)
    with engine.connect() as c:
        assert schema_revision(c) == migrations.HEAD
        assert c.execute(text("SELECT count(*) FROM images")).scalar() == 1
        assert NEW_TABLES <= set(inspect(c).get_table_names())
    engine.dispose()


def test_instances_opening_one_new_database_at_once_migrate_it_once(url):
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            open_engine(url).dispose()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert _diff(url) == []
