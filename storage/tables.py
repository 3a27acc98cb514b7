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
- ``sites`` / ``flights``  a plant or wind farm and its flights (name, date, model key used)
- ``flight_images``  which images (content hash + model key) make up a flight, with the
                   name each came in as; the findings themselves stay in ``results.payload``
- ``tracks`` / ``track_observations``  findings of successive flights matched into tracks
                   (``history/``): one observation per track and flight, with the numbers the
                   change lists and growth rules query (position, size, ΔT, priority, loss)

Storage models only: what the API returns is :class:`detector.results.ImageResult`.
The schema is brought up to date by Alembic (``storage/migrations``, see
:func:`storage.database.open_engine`); a change here ships with a new revision.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2  # 1: the tables before Alembic (revision 0001); 2: sites, flights, tracks (0002)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON, list[Any]: JSON}


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
    conditions: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # flight conditions given (0003)
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


# ---------------------------------------------------------------- sites, flights, tracks
class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Flight(Base):
    __tablename__ = "flights"
    __table_args__ = (
        UniqueConstraint("site_id", "name", name="uq_flight_site_name"),
        Index("ix_flights_site_date", "site_id", "flown_on"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    flown_on: Mapped[date | None] = mapped_column(Date, default=None)  # the flight's date
    date_source: Mapped[str] = mapped_column(String(8), default="images")  # given | images (capture time) | none
    rtk: Mapped[bool | None] = mapped_column(Boolean, default=None)  # positions from RTK (tighter gate)
    model_version: Mapped[str | None] = mapped_column(String(128), default=None)  # the key its tracks use
    status: Mapped[str] = mapped_column(String(16), default="open")  # open (images coming) | complete
    # site-frame correction of this flight's positions (GPS bias against the earlier flights), metres
    offset_east_m: Mapped[float | None] = mapped_column(Float, default=None)
    offset_north_m: Mapped[float | None] = mapped_column(Float, default=None)
    matched_at: Mapped[datetime | None] = mapped_column(default=None)  # None: its tracks are not up to date
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlightImage(Base):
    __tablename__ = "flight_images"
    __table_args__ = (Index("ix_flight_images_image", "image_sha256"),)

    flight_id: Mapped[int] = mapped_column(ForeignKey("flights.id", ondelete="CASCADE"), primary_key=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str | None] = mapped_column(Text, default=None)  # the name it came in as (display only)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Track(Base):
    __tablename__ = "tracks"
    __table_args__ = (Index("ix_tracks_site_open", "site_id", "is_open"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    family: Mapped[str] = mapped_column(String(64))
    class_name: Mapped[str] = mapped_column(String(64))
    asset: Mapped[str | None] = mapped_column(String(8), default=None)
    first_flight_id: Mapped[int] = mapped_column(ForeignKey("flights.id", ondelete="CASCADE"))
    last_flight_id: Mapped[int] = mapped_column(ForeignKey("flights.id", ondelete="CASCADE"))  # its latest observation
    state: Mapped[str] = mapped_column(String(12))  # the latest observation's state
    is_open: Mapped[bool] = mapped_column(Boolean)  # False once resolved
    latitude: Mapped[float] = mapped_column(Float)  # site frame (GPS bias of its flight removed)
    longitude: Mapped[float] = mapped_column(Float)
    seen: Mapped[int] = mapped_column(Integer)  # flights it was seen in
    priority: Mapped[str | None] = mapped_column(String(8), default=None)  # after the early-warning rules
    warnings: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), default=None)


class TrackObservation(Base):
    """A track in one flight: seen (new, persistent, worsened, reappeared) or not found where the
    flight looked (resolved). The finding itself is ``results.payload['findings'][finding_index]``
    of ``(image_sha256, model_version)``; the numbers here are what the lists query. For a
    resolved observation ``loss_w`` / ``loss_kwh_year`` are the loss recovered."""

    __tablename__ = "track_observations"
    __table_args__ = (
        UniqueConstraint("track_id", "flight_id", name="uq_observation_track_flight"),
        Index("ix_observations_flight_state", "flight_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    flight_id: Mapped[int] = mapped_column(ForeignKey("flights.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(12))  # new | persistent | worsened | resolved | reappeared
    image_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    model_version: Mapped[str | None] = mapped_column(String(128), default=None)
    finding_index: Mapped[int | None] = mapped_column(Integer, default=None)
    source: Mapped[str | None] = mapped_column(Text, default=None)
    class_name: Mapped[str] = mapped_column(String(64))
    latitude: Mapped[float | None] = mapped_column(Float, default=None)  # as measured (this flight's GPS)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    distance_m: Mapped[float | None] = mapped_column(Float, default=None)  # to the track, after the bias correction
    area_frac: Mapped[float | None] = mapped_column(Float, default=None)
    area_m2: Mapped[float | None] = mapped_column(Float, default=None)  # with a known ground sampling distance
    length_m: Mapped[float | None] = mapped_column(Float, default=None)  # the box's longer side on the ground
    delta_t_k: Mapped[float | None] = mapped_column(Float, default=None)
    base_priority: Mapped[str | None] = mapped_column(String(8), default=None)  # the detector's
    priority: Mapped[str | None] = mapped_column(String(8), default=None)  # after the early-warning rules
    warnings: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    loss_w: Mapped[float | None] = mapped_column(Float, default=None)  # estimated Wp lost (PV)
    loss_kwh_year: Mapped[float | None] = mapped_column(Float, default=None)
    loss: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)  # its inputs
