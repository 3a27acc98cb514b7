"""A throw-away PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` on a free port.

``postgres_url`` (session scope) starts one server and yields the SQLAlchemy URL of a
database on it; ``fresh_database(url)`` creates another, empty database on the same server
for a test that needs its own tables. Tests skip (with the reason) only when the PostgreSQL
server binaries or the ``psycopg`` driver are missing. Import the fixture into a test
module with ``from pg_fixtures import postgres_url``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_USER = "postgres"  # the superuser initdb creates, and the OS user the server runs as under root


def pg_binary(name: str) -> str | None:
    """``initdb``/``pg_ctl``: on PATH, else the newest ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user() -> dict[str, Any]:
    """subprocess arguments that drop root to the ``postgres`` OS user (postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": PG_USER, "group": PG_USER, "extra_groups": []}


def _admin_connect(url: str) -> Any:
    """A psycopg connection (autocommit) to the maintenance database of the server of ``url``."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg.connect(
        host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True, connect_timeout=10
    )


def fresh_database(url: str, prefix: str = "t") -> str:
    """Create an empty database on the server of ``url``; returns its URL."""
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin_connect(url) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A running PostgreSQL server (stopped at the end of the session): the URL of a database on it."""
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg not installed (pip install -e '.[serve,postgres]')")
    drop = _as_server_user()
    # a short path outside pytest's root-only tmp folders: the server user must reach it, and the
    # socket path must stay under the 107-byte limit
    root = Path(tempfile.mkdtemp(prefix="pvwind-pg-"))
    if drop:
        shutil.chown(root, PG_USER, PG_USER)
    data, log = root / "data", root / "server.log"
    run = {"cwd": root, "capture_output": True, "text": True, "timeout": 120, **drop}
    init = [initdb, "-D", str(data), "-A", "trust", "-U", PG_USER, "-E", "UTF8", "--locale=C", "--no-sync"]
    p = subprocess.run(init, **run)
    if p.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{p.stdout}\n{p.stderr}")
    port = _free_port()
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    start = [pg_ctl, "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"]
    p = subprocess.run(start, **run)
    if p.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed:\n{p.stdout}\n{p.stderr}\n{text}")
    try:
        server = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres"
        yield fresh_database(server, prefix="pvwind")
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], **run)
        shutil.rmtree(root, ignore_errors=True)
