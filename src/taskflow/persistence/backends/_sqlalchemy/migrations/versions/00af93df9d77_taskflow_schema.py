"""The persistence schema of upstream TaskFlow 6.5, created in one step.

Revision ID: 00af93df9d77
Revises: (none: the base of this project's chain)

The id is upstream TaskFlow's head revision, on purpose: a PostgreSQL or MySQL database that
upstream migrated already carries it, so ``upgrade()`` finds it current and changes
nothing; a database this revision creates is one upstream's Alembic chain also accepts as
current. SQLite databases upstream created without Alembic are adopted (stamped with this id
after their tables are checked) by ``migration.py`` instead of being recreated.

Tables, columns, types, indexes and constraint names are the ones upstream leaves on each
database (observed, not derived). Two deliberate differences on MySQL/MariaDB, where
upstream's choice loses data: ``DATETIME(6)`` instead of ``DATETIME`` (rows created in the
same second keep their order) and ``utf8mb4`` tables instead of ``utf8mb3`` (names may hold
any character). Neither changes a column's name or kind, so either side reads the other's
databases.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "00af93df9d77"
down_revision = None
branch_labels = None
depends_on = None

_ATOM_TYPES = ("RETRY_DETAIL", "TASK_DETAIL")
_INTENTIONS = ("EXECUTE", "IGNORE", "REVERT", "RETRY")


def _uuid(**kwargs: object) -> sa.Column[str]:
    return sa.Column("uuid", sa.String(64), nullable=False, **kwargs)  # type: ignore[arg-type]


def _sqlite() -> None:
    """What upstream's ``create_all`` makes: TEXT JSON, VARCHAR enums, UNIQUE(uuid)."""
    op.create_table(
        "logbooks",
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("meta", sa.Text),
        sa.Column("name", sa.String(255)),
        _uuid(primary_key=True, unique=True),
    )
    op.create_table(
        "flowdetails",
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("parent_uuid", sa.String(64), sa.ForeignKey("logbooks.uuid", ondelete="CASCADE")),
        sa.Column("meta", sa.Text),
        sa.Column("name", sa.String(255)),
        sa.Column("state", sa.String(255)),
        _uuid(primary_key=True, unique=True),
    )
    op.create_table(
        "atomdetails",
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("meta", sa.Text),
        sa.Column(
            "parent_uuid", sa.String(64), sa.ForeignKey("flowdetails.uuid", ondelete="CASCADE")
        ),
        sa.Column("name", sa.String(255)),
        sa.Column("version", sa.String(64)),
        sa.Column("state", sa.String(255)),
        _uuid(primary_key=True, unique=True),
        sa.Column("failure", sa.Text),
        sa.Column("results", sa.Text),
        sa.Column("revert_results", sa.Text),
        sa.Column("revert_failure", sa.Text),
        sa.Column("atom_type", sa.Enum(*_ATOM_TYPES, name="atom_types")),
        sa.Column("intention", sa.Enum(*_INTENTIONS, name="intention_type")),
    )


def _postgresql() -> None:
    """Native json columns and enum types; index and constraint names from upstream's chain."""
    json = postgresql.JSON
    op.create_table(
        "logbooks",
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("meta", json),
        sa.Column("name", sa.String(255)),
        _uuid(primary_key=True),
        sa.Index("logbook_uuid_idx", "uuid"),
    )
    op.create_table(
        "flowdetails",
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("parent_uuid", sa.String(64)),
        sa.Column("meta", json),
        sa.Column("state", sa.String(255)),
        sa.Column("name", sa.String(255)),
        _uuid(primary_key=True),
        sa.ForeignKeyConstraint(
            ["parent_uuid"], ["logbooks.uuid"], name="flowdetails_ibfk_1", ondelete="CASCADE"
        ),
        sa.Index("flowdetails_uuid_idx", "uuid"),
    )
    op.create_table(
        "atomdetails",
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("parent_uuid", sa.String(64)),
        sa.Column("meta", json),
        sa.Column("name", sa.String(255)),
        sa.Column("results", json),
        sa.Column("version", sa.String(64)),
        sa.Column("state", sa.String(255)),
        _uuid(),
        sa.Column("failure", json),
        sa.Column("atom_type", sa.Enum(*_ATOM_TYPES, name="atom_types")),
        sa.Column(
            "intention",
            sa.Enum(*_INTENTIONS, name="intention_type"),
            server_default="EXECUTE",
        ),
        sa.Column("revert_results", json),
        sa.Column("revert_failure", json),
        # Upstream's table was once called taskdetails; its constraints kept those names.
        sa.PrimaryKeyConstraint("uuid", name="taskdetails_pkey"),
        sa.ForeignKeyConstraint(
            ["parent_uuid"], ["flowdetails.uuid"], name="taskdetails_ibfk_1", ondelete="CASCADE"
        ),
        sa.Index("taskdetails_uuid_idx", "uuid"),
    )


def _mysql() -> None:
    """TEXT/LONGTEXT JSON columns and inline enums, as upstream's chain leaves them."""
    options: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
    when = mysql.DATETIME(fsp=6)
    op.create_table(
        "logbooks",
        sa.Column("created_at", when),
        sa.Column("updated_at", when),
        sa.Column("meta", sa.Text),
        sa.Column("name", sa.String(255)),
        _uuid(primary_key=True),
        sa.Index("logbook_uuid_idx", "uuid", unique=True),
        **options,
    )
    op.create_table(
        "flowdetails",
        sa.Column("created_at", when),
        sa.Column("updated_at", when),
        sa.Column("parent_uuid", sa.String(64)),
        sa.Column("meta", mysql.LONGTEXT),
        sa.Column("state", sa.String(255)),
        sa.Column("name", sa.String(255)),
        _uuid(primary_key=True),
        sa.ForeignKeyConstraint(
            ["parent_uuid"], ["logbooks.uuid"], name="flowdetails_ibfk_1", ondelete="CASCADE"
        ),
        sa.Index("flowdetails_uuid_idx", "uuid", unique=True),
        **options,
    )
    op.create_table(
        "atomdetails",
        sa.Column("created_at", when),
        sa.Column("updated_at", when),
        sa.Column("parent_uuid", sa.String(64)),
        sa.Column("meta", sa.Text),
        sa.Column("name", sa.String(255)),
        sa.Column("results", mysql.LONGTEXT),
        sa.Column("version", sa.String(64)),
        sa.Column("state", sa.String(255)),
        _uuid(primary_key=True),
        sa.Column("failure", mysql.LONGTEXT),
        sa.Column("atom_type", mysql.ENUM(*_ATOM_TYPES)),
        sa.Column("intention", mysql.ENUM(*_INTENTIONS), server_default="EXECUTE"),
        sa.Column("revert_results", sa.Text),
        sa.Column("revert_failure", mysql.LONGTEXT),
        sa.ForeignKeyConstraint(
            ["parent_uuid"], ["flowdetails.uuid"], name="atomdetails_ibfk_1", ondelete="CASCADE"
        ),
        sa.Index("taskdetails_uuid_idx", "uuid", unique=True),
        # Created after the table: MySQL then drops the index it made for the foreign key.
        sa.Index("taskdetails_ibfk_1", "parent_uuid"),
        **options,
    )


_CREATE = {"sqlite": _sqlite, "postgresql": _postgresql, "mysql": _mysql}


def upgrade() -> None:
    name = op.get_bind().dialect.name
    try:
        create = _CREATE[name]
    except KeyError:
        raise NotImplementedError(f"No taskflow schema for the {name!r} database") from None
    create()


def downgrade() -> None:
    for table in ("atomdetails", "flowdetails", "logbooks"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        for enum in ("intention_type", "atom_types"):
            op.execute(sa.text(f"DROP TYPE IF EXISTS {enum}"))
