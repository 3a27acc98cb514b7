"""baseline: the schema of the releases before Alembic (``create_all`` of storage/tables.py, version 1)

Revision ID: 0001
Revises:
Create Date: 2026-12-02

A database made by such a release already has these tables: ``open_engine`` stamps it 0001
instead of running this.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("media_type", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "image_blobs",
        sa.Column("sha256", sa.String(64), sa.ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("image_sha256", sa.String(64), sa.ForeignKey("images.sha256", ondelete="CASCADE"), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("n_defects", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(8), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("image_sha256", "model_version", name="uq_result_image_model"),
    )
    op.create_index("ix_results_image_sha256", "results", ["image_sha256"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("asset_type", sa.String(8), nullable=False),
        sa.Column("site", sa.String(200), nullable=True),
        sa.Column("flight", sa.String(200), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_table(
        "job_items",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("image_sha256", sa.String(64), sa.ForeignKey("images.sha256"), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("error_code", sa.String(40), nullable=True),
        sa.Column("error_status", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("result_id", sa.Integer(), sa.ForeignKey("results.id"), nullable=True),
    )
    op.create_index("ix_job_items_job_status", "job_items", ["job_id", "status"])
    op.create_table(
        "rescore_files",
        sa.Column("source", sa.Text(), primary_key=True),
        sa.Column("flight", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("error_reason", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_rescore_files_image_sha256", "rescore_files", ["image_sha256"])
    op.create_table(
        "rescore_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("archives", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("found", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.Column("unreadable", sa.Integer(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )


def downgrade() -> None:
    for table in ("rescore_runs", "rescore_files", "job_items", "jobs", "results", "image_blobs", "images"):
        op.drop_table(table)
