"""Alembic environment: migrates the connection :func:`storage.database.open_engine` hands
over (``config.attributes["connection"]``), or, from the alembic command line, the URL given
as ``-x url=...``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from storage.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite goes through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=context.get_x_argument(as_dictionary=True).get("url", "sqlite://"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(conn)
    else:
        url = context.get_x_argument(as_dictionary=True).get("url")
        if not url:
            raise SystemExit("give the database as: alembic -c storage/migrations/alembic.ini -x url=URL ...")
        engine = create_engine(url)
        with engine.begin() as c:
            _run(c)
        engine.dispose()
