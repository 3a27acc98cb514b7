"""Opening a database (brought to the newest schema by Alembic) and writing to it
idempotently (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from storage import migrations

QUERY_CHUNK = 500  # keys per IN (...) query
MIGRATION_LOCK = 0x70767769  # PostgreSQL advisory lock id held while a database is migrated ("pvwi")


def database_url(value: str) -> str:
    """A SQLAlchemy URL as given, or a path to a SQLite file made into one."""
    if "://" in value:
        make_url(value)  # raises ArgumentError on nonsense
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def shown_url(url: str) -> str:
    """A URL for messages: a PostgreSQL password never reaches the terminal or a log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # a SQLite file path
        return url


def open_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url``; for SQLite the parent folder is created, WAL and foreign keys are on.
    With ``create`` the database is brought to the newest schema (:func:`upgrade`)."""
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
            cur.execute("PRAGMA busy_timeout=30000")
            # switching a new database to WAL needs a moment without writers; SQLite answers
            # "database is locked" at once instead of waiting (e.g. while another instance
            # migrates it), so retry for up to the busy timeout
            for attempt in range(300):
                try:
                    cur.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or attempt == 299:
                        raise
                    time.sleep(0.1)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    if create:
        upgrade(engine)
    return engine


def schema_revision(conn: Connection) -> str | None:
    """The Alembic revision of a database; ``None`` when it has none (empty, or made before Alembic)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the database to ``revision`` (default: the newest) and return where it was:
    ``"empty"``, ``"pre-alembic"`` (a database of a release before Alembic, made by
    ``create_all``: stamped as the baseline revision, then upgraded) or its revision.

    A database already at the newest revision costs one query. The check and the migration
    run in ONE transaction under a lock (PostgreSQL: an advisory lock; SQLite: the write lock,
    ``BEGIN IMMEDIATE``), so service instances and re-scorer workers opening one database at
    the same time migrate it once."""
    with engine.connect() as conn:
        if revision == "head" and schema_revision(conn) == migrations.HEAD:
            return migrations.HEAD
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        was = schema_revision(conn)
        if was is None:
            was = "pre-alembic" if inspect(conn).has_table("images") else "empty"
        if not (revision == "head" and was == migrations.HEAD):
            _alembic(conn, was, revision)
        conn.commit()
    return was


def _alembic(conn: Connection, was: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.attributes["connection"] = conn
    if was == "pre-alembic":
        command.stamp(cfg, migrations.BASELINE)
    command.upgrade(cfg, revision)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def insert_ignore(
    session: Session, model: type, rows: list[dict[str, Any]], keys: list[str], update_cols: Sequence[str] = ()
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (or DO UPDATE ``update_cols``) on SQLite and PostgreSQL;
    other databases look first (fine for a single writer)."""
    if not rows:
        return
    # in key order, so concurrent writers of overlapping rows (two instances, the re-scorer)
    # take the row locks in the same order: PostgreSQL would otherwise abort one with a deadlock
    rows = sorted(rows, key=lambda row: tuple(row[k] for k in keys))
    dialect = session.get_bind().dialect.name
    ins = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if ins is not None:
        stmt = ins(model)
        if update_cols:
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={c: getattr(stmt.excluded, c) for c in update_cols}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        session.execute(stmt, rows)
        return
    for row in rows:
        pk = tuple(row[k] for k in keys)
        obj = session.get(model, pk if len(pk) > 1 else pk[0])
        if obj is None:
            session.add(model(**row))
        elif update_cols:
            for c in update_cols:
                setattr(obj, c, row[c])
        session.flush()
