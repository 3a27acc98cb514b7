"""Storage models (SQLAlchemy 2) and the database engine.

Tables, shared by the service and the archive re-scorer:

- ``images``       one row per distinct image, keyed by the SHA-256 of its bytes
- ``image_blobs``  the bytes of an uploaded image (optional: the re-scorer can register
                   images that stay in an archive, with ``images.source`` naming where)
- ``results``      the scored result of one image by one model version, unique on
                   ``(image_sha256, model_version)``; ``payload`` is the JSON form of the
                   detector's per-image result
- ``jobs`` / ``job_items``  an asynchronous upload and its images in upload order

These are storage models only; API schemas live in ``serving/schemas.py``.
The schema is created with ``create_all`` (no migrations yet: version 1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

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


def make_db_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url``; for SQLite the parent folder is created, WAL and foreign keys are on."""
    u = make_url(url)
    kwargs: dict[str, Any] = {}
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(u, **kwargs)
    if u.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    if create:
        Base.metadata.create_all(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
