"""job conditions: a job's flight conditions (irradiance, emissivity, ...) as given at upload

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

One nullable JSON column; jobs of earlier releases have none (the service's configured values).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("conditions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("conditions")
