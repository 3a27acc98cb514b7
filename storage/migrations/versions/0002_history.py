"""history: sites, flights, the images of each flight, tracks and their observations

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

New tables only (nothing of 0001 changes). Flights of earlier data (the ``site`` / ``flight``
of jobs, the folders of the re-scorer's file index) are not back-filled: re-running
``pvwind rescore`` on an archive (nothing is scored again) records its flights.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "flights",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("flown_on", sa.Date(), nullable=True),
        sa.Column("date_source", sa.String(8), nullable=False),
        sa.Column("rtk", sa.Boolean(), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("offset_east_m", sa.Float(), nullable=True),
        sa.Column("offset_north_m", sa.Float(), nullable=True),
        sa.Column("matched_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("site_id", "name", name="uq_flight_site_name"),
    )
    op.create_index("ix_flights_site_date", "flights", ["site_id", "flown_on"])
    op.create_table(
        "flight_images",
        sa.Column("flight_id", sa.Integer(), sa.ForeignKey("flights.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("image_sha256", sa.String(64), sa.ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True),
        sa.Column("model_version", sa.String(128), primary_key=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_flight_images_image", "flight_images", ["image_sha256"])
    op.create_table(
        "tracks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
        sa.Column("family", sa.String(64), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("asset", sa.String(8), nullable=True),
        sa.Column("first_flight_id", sa.Integer(), sa.ForeignKey("flights.id", ondelete="CASCADE"), nullable=False),
        sa.Column("last_flight_id", sa.Integer(), sa.ForeignKey("flights.id", ondelete="CASCADE"), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(8), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=True),
    )
    op.create_index("ix_tracks_site_open", "tracks", ["site_id", "is_open"])
    op.create_table(
        "track_observations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("track_id", sa.Integer(), sa.ForeignKey("tracks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("flight_id", sa.Integer(), sa.ForeignKey("flights.id", ondelete="CASCADE"), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("finding_index", sa.Integer(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=True),
        sa.Column("area_frac", sa.Float(), nullable=True),
        sa.Column("area_m2", sa.Float(), nullable=True),
        sa.Column("length_m", sa.Float(), nullable=True),
        sa.Column("delta_t_k", sa.Float(), nullable=True),
        sa.Column("base_priority", sa.String(8), nullable=True),
        sa.Column("priority", sa.String(8), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=True),
        sa.Column("loss_w", sa.Float(), nullable=True),
        sa.Column("loss_kwh_year", sa.Float(), nullable=True),
        sa.Column("loss", sa.JSON(), nullable=True),
        sa.UniqueConstraint("track_id", "flight_id", name="uq_observation_track_flight"),
    )
    op.create_index("ix_observations_flight_state", "track_observations", ["flight_id", "state"])


def downgrade() -> None:
    for table in ("track_observations", "tracks", "flight_images", "flights", "sites"):
        op.drop_table(table)
