"""What the journal asks of a database, whichever it is: SQLite (the embedded default,
steps/db_sqlite.py) or PostgreSQL (a team's shared journal, steps/db_postgres.py).

The journal's SQL is written once, with `?` placeholders and a few templates that each
backend fills in: `{now}` (the database's clock, in epoch seconds: on a shared server every
host reads one clock), `{rowid}` (insertion order) and `{for_update}` (a row lock where the
database has one; SQLite's write transaction already excludes every other writer). What
cannot be said in common SQL (the schema, its migrations, connecting) lives in the
backend's own module.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

# The schema this handrail reads and writes. Each backend's MIGRATIONS reach it.
SCHEMA_VERSION = 3

URL_PREFIXES = ("postgresql://", "postgres://")


class JournalUnavailable(Exception):
    """The journal's database cannot be reached: nothing more is written until it is back."""


class DatabaseUrlError(ValueError):
    """A database URL handrail cannot use."""


class SchemaMismatch(Exception):
    """The database's schema is not the one this handrail needs (`handrail db upgrade`)."""


class Tx(Protocol):
    """One transaction (or, for reads, one consistent look)."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        ...

    def many(self, sql: str, seq: Sequence[Sequence[Any]]) -> None: ...


class Backend(Protocol):
    kind: str  # "sqlite" | "postgresql"
    where: str  # for messages: a path, or the URL without its password

    def tx(self) -> AbstractContextManager[Tx]:
        """A write transaction: committed at the end, rolled back on an exception."""
        ...

    def read(self) -> AbstractContextManager[Tx]: ...

    def schema_version(self) -> int: ...

    def upgrade(self) -> list[int]:
        """Apply the migrations this database lacks; the versions applied."""
        ...

    def close(self) -> None: ...


def is_url(where: str | Path) -> bool:
    return isinstance(where, str) and where.startswith(URL_PREFIXES)


def template(sql: str, now: str, rowid: str, for_update: str) -> str:
    return sql.replace("{now}", now).replace("{rowid}", rowid).replace("{for_update}", for_update)
