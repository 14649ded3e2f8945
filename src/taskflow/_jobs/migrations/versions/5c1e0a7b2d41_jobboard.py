"""The SQL jobboard's tables: jobs (live and trashed) and registered entities.

Revision ID: 5c1e0a7b2d41
Revises: (none: the base of the jobboard chain)

``taskflow_jobs`` has one row per posted job of each ``namespace`` (boards sharing a
database): the posting as JSON text, and the claim (owner, fencing token, lease expiry in
epoch seconds of the database's clock). ``seq`` orders jobs of equal priority oldest first.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "5c1e0a7b2d41"
down_revision = None
branch_labels = None
depends_on = None

# MySQL's TEXT holds 64 KiB: postings and metadata get LONGTEXT there.
_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")
_TABLE_ARGS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "taskflow_jobs",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: the rowid
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("posting", _TEXT, nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("lease_expires", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False, server_default="live"),
        sa.Column("reason", _TEXT, nullable=True),
        sa.Column("modified", sa.Double(), nullable=True),
        sa.UniqueConstraint("namespace", "uuid", name="uq_taskflow_jobs_namespace_uuid"),
        **_TABLE_ARGS,
    )
    op.create_index(
        "ix_taskflow_jobs_listing", "taskflow_jobs", ["namespace", "status", "priority", "seq"]
    )
    op.create_table(
        "taskflow_job_entities",
        sa.Column("namespace", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("metadata", _TEXT, nullable=False),
        sa.Column("modified", sa.Double(), nullable=True),
        **_TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("taskflow_job_entities")
    op.drop_index("ix_taskflow_jobs_listing", table_name="taskflow_jobs")
    op.drop_table("taskflow_jobs")
