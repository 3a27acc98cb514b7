"""The tables (SQLAlchemy 2 models), shared by the service and the archive re-scorer:

- ``images``       one row per distinct image, keyed by the SHA-256 of its bytes
- ``image_blobs``  the bytes of an uploaded image (optional: the re-scorer can register
                   images that stay in an archive, with ``images.source`` naming where)
- ``results``      the scored result of one image by one model version, unique on
                   ``(image_sha256, model_version)``; ``payload`` is the JSON form of the
                   detector's per-image result
- ``jobs`` / ``job_items``  an asynchronous upload and its images in upload order
- ``rescore_files``  the re-scorer's file index: one row per source (path or archive
                   member), its fingerprint, content hash and, if unreadable, the reason
- ``rescore_runs``   one row per re-scoring run (model, archives, counts, timings)

Storage models only: what the API returns is :class:`detector.results.ImageResult`.
The schema is created with ``create_all`` (no migrations yet: version 1).
"""

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
