"""Build vault and consumer adapters from inventory entries.

Credentials are not in the inventory: live, each adapter reads them where its vendor's
own tools do; in training, `Credentials` carries the sandbox's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from steps.clock import Progress
from steps.consumers.base import AdapterError, Consumer, Pair, ProbeResult, Result, Vault
from steps.secrets import Secret

if TYPE_CHECKING:  # the adapters are imported where used: each pulls in its vendor's client
    import paramiko

    from steps.consumers.github import Target
    from steps.consumers.infisical import InfisicalAuth

# `entry` below is an inventory entry (steps.inventory's InfisicalEntry, HerokuEntry,
# GitHubEntry or SshEntry), typed Any: steps.inventory imports the runbook loader, which
# imports the actions, which import the consumers; importing it here, even for type
# checking only, would close an import cycle (tests/test_import_hygiene.py).


@dataclass
class Credentials:
    """What the sandbox hands its clients. Live, every field stays None."""

    infisical: InfisicalAuth | None = None
    heroku_token: Secret | None = None
    github_token: Secret | None = None
    ssh_pkey: paramiko.PKey | None = None
    github_now: Callable[[], datetime] | None = None


class UnbuiltConsumer:
    """A consumer whose adapter could not be set up (a key file that is not there, an
    ssh config that does not parse): every operation fails with that reason, so the
    step reports this consumer and goes on with the others instead of crashing."""

    def __init__(self, name: str, kind: str, reason: str) -> None:
        self.name, self.kind, self.reason = name, kind, reason

    def _fail(self) -> AdapterError:
        return AdapterError(f"cannot set up {self.name}: {self.reason}")

    def command(self, pair_key_id: str) -> str:
        return f"# {self.name}: cannot be set up: {self.reason}"

    def verification(self) -> str:
        return self.command("")

    def probe(self) -> ProbeResult:
        result = ProbeResult(self.name)
        result.failed("setup", str(self._fail()))
        return result

    def read_key_id(self) -> str | None:
        raise self._fail()

    def write_pair(self, pair: Pair) -> Result:
        raise self._fail()

    def verify(self, pair: Pair, *, written_at: datetime | None = None, progress: Progress | None = None) -> Result:
        raise self._fail()

    def close(self) -> None:
        pass


def build_consumer_or_reason(
    entry: Any, creds: Credentials, sleep: Callable[[float], None] | None = None, monotonic: Callable[[], float] | None = None
) -> Consumer:
    """`build_consumer`, or an UnbuiltConsumer that says why it could not be built."""
    try:
        return build_consumer(entry, creds, sleep=sleep, monotonic=monotonic)
    except (AdapterError, ValueError) as exc:
        return UnbuiltConsumer(entry.name, entry.type, str(exc).removeprefix(f"{entry.name}: "))


def build_vault(entry: Any, creds: Credentials) -> Vault:
    from steps.consumers.infisical import InfisicalVault

    return InfisicalVault(
        entry.site_url,
        entry.project_id,
        entry.environment,
        entry.path,
        key_id_name=entry.key_id_name,
        secret_name=entry.secret_name,
        auth=creds.infisical,
    )


def build_consumer(
    entry: Any, creds: Credentials, sleep: Callable[[float], None] | None = None, monotonic: Callable[[], float] | None = None
) -> Consumer:
    # The clock an adapter's own waits run on (the engine's, so training fast-forwards them).
    clock: dict[str, Any] = {}
    if sleep is not None:
        clock["sleep"] = sleep
    if monotonic is not None:
        clock["monotonic"] = monotonic
    if entry.type == "heroku":
        from steps.consumers.heroku import HerokuConsumer

        return HerokuConsumer(
            entry.app,
            api_url=entry.api_url,
            token=creds.heroku_token,
            verify_url=entry.verify_url,
            key_id_var=entry.key_id_var,
            secret_var=entry.secret_var,
            **clock,
        )
    if entry.type == "github":
        from steps.consumers.github import EnvironmentTarget, GitHubSecretsConsumer, OrgTarget, RepoTarget

        target: Target
        if entry.organization:
            target = OrgTarget(entry.organization, entry.visibility, tuple(entry.selected_repositories))
        elif entry.environment:
            target = EnvironmentTarget(entry.repository, entry.environment)
        else:
            target = RepoTarget(entry.repository)
        extra: dict[str, Any] = dict(clock)
        if creds.github_now is not None:
            extra["now"] = creds.github_now
        return GitHubSecretsConsumer(
            target,
            token=creds.github_token,
            base_url=entry.base_url,
            key_id_name=entry.key_id_name,
            secret_name=entry.secret_name,
            verify_workflow=entry.verify_workflow,
            verify_ref=entry.verify_ref,
            **extra,
        )
    if entry.type == "ssh":
        from steps.consumers.ssh import SshHostConsumer

        return SshHostConsumer(
            entry.label,
            entry.host,
            port=entry.port,
            user=entry.user,
            key_filename=entry.key_file,
            pkey=creds.ssh_pkey,
            use_agent=entry.use_agent and creds.ssh_pkey is None,
            known_hosts=entry.known_hosts,
            env_file=entry.env_file,
            restart_command=entry.restart_command,
            verify_command=entry.verify,
            key_id_var=entry.key_id_var,
            secret_var=entry.secret_var,
        )
    raise ValueError(f"unknown consumer type {entry.type!r}")
