"""The re-scorer's side of the result store.

Results go where the service keeps them (``serving/db.py``): ``images`` (one row per
content hash, ``source`` = where the re-scorer first found it) and ``results`` (unique
on ``(image_sha256, model_version)``). Two tables of the re-scorer's own sit beside them
on the same ``Base``:

- ``rescore_files``: the file index, one row per source (path or archive member): its
  fingerprint, content hash and, for an unreadable file, the reason. A re-run skips an
  unchanged, already scored file without reading it.
- ``rescore_runs``: one row per run (model, archives, counts, timings).

Every batch of outcomes is written in ONE transaction with idempotent inserts, so a
process killed at any point leaves whole batches only, and a re-run never records an
image twice for a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Engine, Integer, String, Text, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped, Session, mapped_column

from serving.db import Base, Image, Result, make_db_engine, utcnow
from serving.store import Store

QUERY_CHUNK = 500  # keys per IN (...) query
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "BMP": "image/bmp", "WEBP": "image/webp"}


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


# outcomes of one image --------------------------------------------------------------------
SCORED, KNOWN, UNREADABLE = "scored", "known", "unreadable"


@dataclass(slots=True)
class Outcome:
    """What happened to one item: scored (a payload), known (already scored by this model,
    found by its content hash), or unreadable (a reason)."""

    source: str
    group: str
    fingerprint: str
    status: str
    sha256: str | None = None
    payload: dict[str, Any] | None = None
    media_type: str | None = None
    size_bytes: int = 0
    error_reason: str | None = None
    error: str | None = None

    def to_row(self) -> dict[str, Any]:
        """Flat, null-free columns (for Ray Data / Arrow)."""
        d = asdict(self)
        d["payload"] = json.dumps(self.payload, separators=(",", ":")) if self.payload is not None else ""
        return {k: ("" if v is None else v) for k, v in d.items()}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Outcome:
        def s(k: str) -> str | None:
            v = row.get(k)
            return None if v is None or v == "" else str(v)

        payload = s("payload")
        return cls(
            source=str(row["source"]),
            group=str(row["group"]),
            fingerprint=str(row["fingerprint"]),
            status=str(row["status"]),
            sha256=s("sha256"),
            payload=json.loads(payload) if payload else None,
            media_type=s("media_type"),
            size_bytes=int(row.get("size_bytes") or 0),
            error_reason=s("error_reason"),
            error=s("error"),
        )


@dataclass(frozen=True, slots=True)
class FileRow:
    source: str
    flight: str
    fingerprint: str
    sha256: str | None
    error_reason: str | None
    error: str | None


def store_url(value: str) -> str:
    """``--out``: a SQLAlchemy URL, or a path to a SQLite file."""
    if "://" in value:
        make_url(value)  # raises ArgumentError on nonsense
        return value
    from pathlib import Path

    return f"sqlite:///{Path(value).expanduser().resolve()}"


def _insert(
    s: Session, model: type, rows: list[dict[str, Any]], keys: list[str], update_cols: Sequence[str] = ()
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (or DO UPDATE ``update_cols``) on SQLite and PostgreSQL."""
    if not rows:
        return
    # in key order (and each batch writes its tables in one order), so concurrent writers of
    # overlapping rows take PostgreSQL's row locks in the same order: no deadlock aborts a batch
    rows = sorted(rows, key=lambda row: tuple(row[k] for k in keys))
    dialect = s.get_bind().dialect.name
    ins = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if ins is not None:
        stmt = ins(model)
        if update_cols:
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={c: getattr(stmt.excluded, c) for c in update_cols}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        s.execute(stmt, rows)
        return
    for row in rows:  # other databases: look first (one writer per store)
        pk = tuple(row[k] for k in keys)
        obj = s.get(model, pk if len(pk) > 1 else pk[0])
        if obj is None:
            s.add(model(**row))
        elif update_cols:
            for c in update_cols:
                setattr(obj, c, row[c])
        s.flush()


class RescoreStore:
    """Reads and batch writes of the re-scorer over a :class:`serving.store.Store`."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.store = Store(make_db_engine(url, create=create))
        if create:
            Base.metadata.create_all(self.engine, tables=[RescoreFile.__table__, RescoreRun.__table__])

    @property
    def engine(self) -> Engine:
        return self.store.engine

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ reads
    def file_rows(self, sources: Iterable[str]) -> dict[str, FileRow]:
        out: dict[str, FileRow] = {}
        srcs = list(sources)
        with self.store.session() as s:
            for i in range(0, len(srcs), QUERY_CHUNK):
                q = select(
                    RescoreFile.source,
                    RescoreFile.flight,
                    RescoreFile.fingerprint,
                    RescoreFile.image_sha256,
                    RescoreFile.error_reason,
                    RescoreFile.error,
                ).where(RescoreFile.source.in_(srcs[i : i + QUERY_CHUNK]))
                for row in s.execute(q):
                    out[row[0]] = FileRow(*row)
        return out

    def scored(self, shas: Iterable[str], model_version: str) -> set[str]:
        """The hashes among ``shas`` that have a result by ``model_version``."""
        return scored_hashes(self.store, shas, model_version)

    def payloads(self, shas: Iterable[str], model_version: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        keys = sorted(set(shas))
        for i in range(0, len(keys), QUERY_CHUNK):
            out.update(self.store.results_for(keys[i : i + QUERY_CHUNK], model_version))
        return out

    def count_results(self, model_version: str | None = None) -> int:
        return self.store.count_results(model_version)

    def other_versions(self, model_version: str) -> list[str]:
        """Model versions with results in the store other than ``model_version``, newest first."""
        with self.store.session() as s:
            rows = s.execute(
                select(Result.model_version, func.max(Result.created_at).label("last"))
                .where(Result.model_version != model_version)
                .group_by(Result.model_version)
                .order_by(func.max(Result.created_at).desc())
            )
            return [v for v, _ in rows]

    # ----------------------------------------------------------------- writes
    def write(self, outcomes: Sequence[Outcome], model_version: str) -> None:
        """Images, results and file-index rows of a batch, in one transaction."""
        if not outcomes:
            return
        from serving.engine import Engine

        now = utcnow()
        images: dict[str, dict[str, Any]] = {}
        results: dict[str, dict[str, Any]] = {}
        files: dict[str, dict[str, Any]] = {}
        for o in outcomes:
            if o.status == SCORED and o.sha256 and o.payload is not None:
                p = o.payload
                images.setdefault(
                    o.sha256,
                    {
                        "sha256": o.sha256,
                        "media_type": o.media_type or "application/octet-stream",
                        "size_bytes": o.size_bytes,
                        "width": p.get("width"),
                        "height": p.get("height"),
                        "source": o.source,
                        "created_at": now,
                    },
                )
                r = Engine.stored_result(o.sha256, p)
                results.setdefault(
                    o.sha256,
                    {
                        "image_sha256": o.sha256,
                        "model_version": model_version,
                        "n_defects": r.n_defects,
                        "priority": r.priority,
                        "payload": p,
                        "created_at": now,
                    },
                )
            files[o.source] = {
                "source": o.source,
                "flight": o.group,
                "fingerprint": o.fingerprint,
                "image_sha256": o.sha256,
                "error_reason": o.error_reason if o.status == UNREADABLE else None,
                "error": o.error if o.status == UNREADABLE else None,
                "updated_at": now,
            }
        with self.store.session() as s, s.begin():
            _insert(s, Image, list(images.values()), ["sha256"])
            _insert(s, Result, list(results.values()), ["image_sha256", "model_version"])
            _insert(
                s,
                RescoreFile,
                list(files.values()),
                ["source"],
                ("flight", "fingerprint", "image_sha256", "error_reason", "error", "updated_at"),
            )

    def start_run(self, model_version: str, mode: str, archives: list[str], found: int, skipped: int) -> int:
        with self.store.session() as s, s.begin():
            run = RescoreRun(
                model_version=model_version,
                mode=mode,
                archives={"paths": archives},
                status="running",
                found=found,
                skipped=skipped,
                started_at=utcnow(),
            )
            s.add(run)
            s.flush()
            return int(run.id)

    def finish_run(self, run_id: int, status: str, scored: int, unreadable: int, stats: dict[str, Any]) -> None:
        with self.store.session() as s, s.begin():
            s.execute(
                update(RescoreRun)
                .where(RescoreRun.id == run_id)
                .values(status=status, scored=scored, unreadable=unreadable, stats=stats, finished_at=utcnow())
            )


def scored_hashes(store: Store, shas: Iterable[str], model_version: str) -> set[str]:
    keys = sorted(set(shas))
    out: set[str] = set()
    with store.session() as s:
        for i in range(0, len(keys), QUERY_CHUNK):
            q = select(Result.image_sha256).where(
                Result.model_version == model_version, Result.image_sha256.in_(keys[i : i + QUERY_CHUNK])
            )
            out.update(s.scalars(q))
    return out


class KnownResults:
    """A worker's read-only view of the store: which content hashes this model already scored
    (an image moved or copied since the last run is not scored again). Disabled when the
    store cannot be reached from the worker (e.g. a SQLite file on another Ray node)."""

    def __init__(self, url: str | None, model_version: str) -> None:
        self.model_version = model_version
        self.store: Store | None = None
        if not url:
            return
        try:
            u = make_url(url)
            if u.get_backend_name() == "sqlite":
                from pathlib import Path

                if not u.database or not Path(u.database).is_file():
                    return
            self.store = Store(make_db_engine(url, create=False))
        except Exception:  # noqa: BLE001 - only an optimisation; the writer dedupes anyway
            self.store = None

    def __call__(self, shas: Iterable[str]) -> set[str]:
        if self.store is None:
            return set()
        try:
            return scored_hashes(self.store, shas, self.model_version)
        except Exception:  # noqa: BLE001 - a busy or unreachable store: score the images
            return set()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def media_type(fmt: str | None) -> str:
    return MEDIA_TYPES.get((fmt or "").upper(), "application/octet-stream")
