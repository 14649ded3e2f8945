"""Alembic environment of the SQL persistence backend.

Migrations only run online, on the connection ``upgrade()`` hands over (already inside the
transaction it opened, holding the upgrade lock): ``config.attributes['connection']``.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError(
        "taskflow's migrations run through Connection.upgrade(), on a live connection"
    )
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
