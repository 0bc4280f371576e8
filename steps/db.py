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
    """A database URL (or database setting) handrail cannot use: bad input, exit 2."""


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


def check_url(url: str, source: str) -> str:
    """A database URL as given (--database, $HANDRAIL_DATABASE_URL), checked before any
    command uses it: a PostgreSQL URL that parses, or one line naming what is wrong (never
    its password). Whether the server answers is found when the journal opens."""
    from urllib.parse import urlsplit

    if not url.strip():
        raise DatabaseUrlError(f"{source} is empty: give a postgresql://user@host:5432/db URL (the local journal needs none)")
    if not is_url(url):
        said = url.split("://")[0] + "://…" if "://" in url else "a value that is not a URL"
        raise DatabaseUrlError(
            f"{source}: {said} is not a PostgreSQL URL: give postgresql://user@host:5432/db (the local SQLite journal needs none)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
        import psycopg.conninfo

        psycopg.conninfo.conninfo_to_dict(url)
    except Exception:
        raise DatabaseUrlError(
            f"{source}: {url.split('://')[0]}://… does not parse as a PostgreSQL URL (postgresql://user@host:5432/db)"
        ) from None
    return url


def template(sql: str, now: str, rowid: str, for_update: str) -> str:
    return sql.replace("{now}", now).replace("{rowid}", rowid).replace("{for_update}", for_update)
