"""What every vault and consumer adapter speaks.

An adapter wraps one real client (infisicalsdk, requests, PyGithub, paramiko) pointed
at one place that holds an AWS key pair. Adapters know nothing of runbooks, sessions or
modes: the engine's actions call them, and the wiring decides where they point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from steps.secrets import Secret


@dataclass(frozen=True)
class Pair:
    """An AWS access key pair. The secret half stays a `Secret`."""

    key_id: str
    secret: Secret

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


class AdapterError(Exception):
    """A failure talking to a vault or consumer, with a message fit for the operator."""


class Vault(Protocol):
    name: str

    def command(self, pair_key_id: str) -> str:
        """The CLI equivalent of writing the pair, for display (no secret in it)."""

    def read_pair(self) -> tuple[Pair | None, dict[str, int]]:
        """The pair held now, and the version of each of the two secrets."""

    def read_pair_at(self, versions: dict[str, int]) -> Pair:
        """The pair as it was at the given versions (for undo in a new process)."""

    def write_pair(self, pair: Pair) -> tuple[dict[str, int], list[str]]:
        """Write both halves; return the new versions and evidence lines."""


class Consumer(Protocol):
    name: str  # e.g. "heroku:raxx-api-prod", "github:raxx/infra", "ssh:vault-host"
    kind: str  # heroku | github | ssh

    def command(self, pair_key_id: str) -> str:
        """The CLI equivalent of writing the pair, for display (no secret in it)."""

    def read_key_id(self) -> str | None:
        """The access key id this consumer holds now, or None where it cannot be read
        back (GitHub secrets are write-only)."""

    def write_pair(self, pair: Pair) -> Result:
        """Write both halves, read back what can be read back, and say what was done."""

    def verify(self, pair: Pair) -> Result:
        """Check that the consumer works on `pair` (its own representative workload)."""


# The sandbox's simulated consumers "really use the key they hold": they call this with
# the pair they hold; it signs a request with that pair against the simulated AWS and
# answers (ok, message), e.g. (False, "InvalidClientTokenId: ...") for a deactivated key.
AwsProbe = Callable[[str, Secret], tuple[bool, str]]
