"""Private machinery of :mod:`taskflow.persistence.backends.impl_sqlalchemy`.

* :mod:`.dialects` -- what differs between SQLite, PostgreSQL and MySQL/MariaDB (engine
  options, session setup, transactions, JSON binding), one small class per database.
* :mod:`.tables` -- the tables as the backend reads and writes them, and the row codecs.
* :mod:`.migration` -- ``upgrade()``: Alembic, plus adoption of databases upstream TaskFlow
  created without Alembic.
* ``migrations/`` -- the Alembic environment and revision scripts (package data).
"""

from __future__ import annotations

__all__: list[str] = []
