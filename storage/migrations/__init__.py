"""Alembic migrations of the store (run by :func:`storage.database.open_engine`, no ``alembic.ini``).

``versions/0001_baseline.py`` is the schema the releases before Alembic made with
``create_all`` (images, image_blobs, results, jobs, job_items, rescore_files, rescore_runs);
a database of such a release is stamped 0001 and upgraded. Every later schema change is a
new revision here, and :data:`HEAD` names the newest (``tests/test_migrations.py`` checks it,
and that the migrated schema equals :mod:`storage.tables`).

A new revision: ``.venv/bin/alembic -c storage/migrations/alembic.ini revision -m "what"
--rev-id 0004`` (or copy a version file), then set :data:`HEAD`.
"""

BASELINE = "0001"
HEAD = "0003"
