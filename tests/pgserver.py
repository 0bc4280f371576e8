"""A throwaway PostgreSQL server for the tests and the benchmark: initdb and pg_ctl in a
temporary directory, as a non-root user (PostgreSQL refuses to run as root), listening on
127.0.0.1 at a free port and on a unix socket in that directory. Trust authentication:
it is reachable from this machine only, and lives as long as the run.

    eval "$(python3 tests/pgserver.py start)"   # exports HANDRAIL_TEST_DATABASE_URL, HANDRAIL_TEST_PGDIR
    python3 tests/pgserver.py stop "$HANDRAIL_TEST_PGDIR"
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "handrail"  # the server's superuser (the tests create and drop databases)


def admin(url: str, *statements: str) -> None:
    """Statements outside a transaction (CREATE/DROP DATABASE), as the server's superuser."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def with_database(url: str, name: str) -> str:
    """The same server's URL, for another database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class NoPostgres(Exception):
    pass


def bindir() -> Path:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    raise NoPostgres("no initdb/pg_ctl on PATH or under /usr/lib/postgresql (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user() -> tuple[list[str], int | None, int | None]:
    """(command prefix, uid, gid) to run the server as someone other than root."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], entry.pw_uid, entry.pw_gid
    raise NoPostgres("running as root and there is no 'postgres' or 'nobody' user to run the server as")


@dataclass
class Server:
    directory: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str, *extra: str) -> subprocess.CompletedProcess[str]:
        prefix, _, _ = _as_server_user()
        return subprocess.run(
            [
                *prefix,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-l",
                str(self.directory / "log"),
                "-w",
                *extra,
                action,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self, remove: bool = True) -> None:
        self.ctl("stop", "-m", "fast")
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)

    def start(self) -> None:
        done = self.ctl("start", "-o", self._options)
        if done.returncode != 0:
            log = (self.directory / "log").read_text(errors="replace")[-2000:] if (self.directory / "log").exists() else ""
            raise NoPostgres(f"pg_ctl start failed: {done.stderr.strip()} {log}")

    _options = ""


def start(durable: bool = False) -> Server:
    """A new server. Not `durable`: fsync off (tests: a crash of the machine loses nothing that matters)."""
    binary = bindir()
    prefix, uid, gid = _as_server_user()
    directory = Path(tempfile.mkdtemp(prefix="handrail-pg-"))
    if uid is not None and gid is not None:
        os.chown(directory, uid, gid)
    init = subprocess.run(
        [*prefix, str(binary / "initdb"), "-D", str(directory / "data"), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise NoPostgres(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
    server = Server(directory, _free_port(), binary)
    options = f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
    server._options = options
    server.start()
    return server


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        try:
            server = start(durable="--durable" in argv)
        except NoPostgres as exc:
            print(f"echo 'pgserver: {exc}' >&2; false")
            return 1
        print(f"export HANDRAIL_TEST_DATABASE_URL='{server.url}'")
        print(f"export HANDRAIL_TEST_PGDIR='{server.directory}'")
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        # stop removes the directory: only one `start` made (an empty argument, from an
        # unset variable, would be the working directory, the checkout itself).
        directory = Path(argv[1])
        if not argv[1] or not directory.name.startswith("handrail-pg-") or not (directory / "data" / "PG_VERSION").is_file():
            print(f"pgserver: {argv[1]!r} is not a directory `pgserver.py start` made: nothing stopped or removed", file=sys.stderr)
            return 2
        Server(directory, 0, bindir()).stop()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
