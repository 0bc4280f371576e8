"""What every vault and consumer adapter speaks.

An adapter wraps one real client (infisicalsdk, requests, PyGithub, paramiko) pointed
at one place that holds an AWS key pair. Adapters know nothing of runbooks, sessions or
modes: the engine's actions call them, and the wiring decides where they point.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from steps.clock import Progress
from steps.secrets import Secret


@dataclass(frozen=True)
class Pair:
    """An AWS access key pair. The secret half stays a `Secret`."""

    key_id: str
    secret: Secret
    # "new" or "old": a read-back says which pair it matches (a rollback writes the old one)
    role: str = field(default="", compare=False)

    def fingerprint(self) -> str:
        return self.secret.fingerprint()

    def __repr__(self) -> str:
        return f"Pair({self.key_id}, {self.secret!r})"


@dataclass
class Result:
    """The outcome of one adapter operation: ok or not, a summary, evidence lines.

    Evidence lines are what the operator sees as proof; they never hold a secret value.
    """

    ok: bool
    summary: str
    evidence: list[str] = field(default_factory=list)
    # A write's time by the clock the consumer stamps its own records with, where that
    # matters to verify it later (GitHub's updated_at); None: the caller's clock will do.
    written_at: datetime | None = None


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
ELIDED_PORT = "…"


def shown_url(url: str) -> str:
    """`url` for a displayed command: a loopback port (a sandbox's, new on every run)
    is elided, so what the operator reads, and a screen's snapshot, stays the same."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname in LOOPBACK and parts.port is not None:
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.hostname}:{ELIDED_PORT}"))
    return url


class AdapterError(Exception):
    """A failure talking to a vault or consumer, with a message fit for the operator."""


@dataclass(frozen=True)
class Check:
    """One read-only check of a probe: what was checked, whether it passed, one line
    fit for the operator (names and metadata only, never a secret value)."""

    what: str  # e.g. "login", "app", "config vars", "host key", "restart command"
    ok: bool
    line: str


@dataclass
class ProbeResult:
    """What a probe found about one vault or consumer, check by check. A failed check
    that later checks depend on ends the probe: they are not run."""

    name: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def passed(self, what: str, line: str) -> None:
        self.checks.append(Check(what, True, line))

    def failed(self, what: str, line: str) -> None:
        self.checks.append(Check(what, False, line))

    def _said(self, check: Check) -> str:
        # An adapter's errors start with its name; said under that name once is enough.
        return check.line.removeprefix(f"{self.name}: ")

    def summary(self) -> str:
        """One line: ready, or the first problem."""
        problem = next((c for c in self.checks if not c.ok), None)
        if problem is not None:
            return f"{self.name}: NOT READY: {self._said(problem)}"
        if not self.checks:
            return f"{self.name}: NOT READY: nothing was checked"
        return f"{self.name}: ready ({', '.join(c.what for c in self.checks)} checked)"

    def lines(self) -> list[str]:
        return [f"{'ok' if c.ok else 'FAILED'}: {c.what}: {self._said(c)}" for c in self.checks]


class Vault(Protocol):
    """Where the pair is kept, with history (Infisical). Every method raises
    AdapterError for a failure the operator should read."""

    name: str

    def command(self, pair_key_id: str) -> str:
        """The CLI equivalent of writing the pair, for display (no secret in it)."""
        ...

    def read_pair(self) -> tuple[Pair | None, dict[str, int]]:
        """The pair held now, and the version of each of the two secrets."""
        ...

    def read_pair_at(self, versions: dict[str, int]) -> Pair:
        """The pair as it was at the given versions (for undo in a new process)."""
        ...

    def write_pair(self, pair: Pair) -> tuple[dict[str, int], list[str]]:
        """Write both halves; return the new versions and evidence lines."""
        ...

    def probe(self) -> ProbeResult:
        """Read-only pre-flight: login works and both names exist at the path. Reads
        no secret value; a failure is a failed check, not an exception."""
        ...

    def close(self) -> None:
        """Let go of connections (the wiring calls it when the session ends)."""
        ...


class Consumer(Protocol):
    """A place that uses the pair (a Heroku app, GitHub Actions secrets, a host's env
    file). Every method raises AdapterError for a failure the operator should read."""

    name: str  # e.g. "heroku:raxx-api-prod", "github:raxx/infra", "ssh:vault-host"
    kind: str  # heroku | github | ssh

    def command(self, pair_key_id: str) -> str:
        """The CLI equivalent of writing the pair, for display (no secret in it)."""
        ...

    def verification(self) -> str:
        """The CLI equivalent of `verify`, for display."""
        ...

    def probe(self) -> ProbeResult:
        """Read-only pre-flight: credentials work, the place exists and holds both names,
        and what write and verify need is there. Changes nothing and shows no secret
        value; a failure is a failed check, not an exception."""
        ...

    def read_key_id(self) -> str | None:
        """The access key id this consumer holds now, or None where it cannot be read
        back (GitHub secrets are write-only)."""
        ...

    def write_pair(self, pair: Pair) -> Result:
        """Write both halves, read back what can be read back, and say what was done
        (with `written_at` where verify will need it)."""
        ...

    def verify(self, pair: Pair, *, written_at: datetime | None = None, progress: Progress | None = None) -> Result:
        """Check that the consumer works on `pair` (its own representative workload).

        `written_at`: when this session wrote `pair` here (the `written_at` of the write's
        Result), for a consumer that cannot read its value back and did not make the
        write itself (a new process). `progress`: told about any wait inside the check.
        """
        ...

    def close(self) -> None:
        """Let go of connections (the wiring calls it when the session ends)."""
        ...


# The sandbox's simulated consumers "really use the key they hold": they call this with
# the pair they hold; it signs a request with that pair against the simulated AWS and
# answers (ok, message), e.g. (False, "InvalidClientTokenId: ...") for a deactivated key.
AwsProbe = Callable[[str, Secret], tuple[bool, str]]
