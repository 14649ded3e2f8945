"""Alembic environment of the SQL jobboard tables.

Migrations only run online, on the connection ``sql.upgrade()`` hands over (inside its
transaction, holding the upgrade lock). The version table is the jobboard's own, so the
persistence schema's ``alembic_version`` (upstream's revision) is never touched.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError("taskflow's jobboard migrations run through the board's connect()")
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=context.config.get_main_option("version_table"),
)
with context.begin_transaction():
    context.run_migrations()
