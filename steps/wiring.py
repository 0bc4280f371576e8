"""Modes are wiring: which endpoints the real clients talk to, which clock runs.

- live: boto3's own credential chain (profile, environment, SSO), real endpoints
  (or whatever AWS_ENDPOINT_URL says, as boto3 honours it);
- dry-run: live reads; the engine does not run mutating steps and shows them instead;
- training: every client points at the embedded sandbox; the clock is simulated.

Actions never ask which mode they are in; they ask the wiring for a client.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from steps.aws import aws_error, error_code
from steps.clock import Clock, SimClock
from steps.consumers.base import Consumer, Pair, ProbeResult, Vault
from steps.secrets import Secret, redact
from steps.status import Mode

if TYPE_CHECKING:
    from steps.consumers.factory import Credentials
    from steps.inventory import Inventory, UserEntry


class SimAws(Protocol):
    operator: Pair | None
    enabled_regions: list[str] | None  # the account's, once found (shared by a campaign's wirings)

    @property
    def account_id(self) -> str: ...

    def client(self, service: str, pair: Pair | None = None, region: str | None = None) -> Any: ...


class SimWorld(Protocol):
    """What a training wiring needs of the simulated world (steps.sandbox.world.World),
    named here so the wiring does not import the sandbox."""

    # Read-only here (properties), so the world's own, narrower types match.
    @property
    def clock(self) -> SimClock: ...

    @property
    def inventory(self) -> Inventory | None: ...

    @property
    def creds(self) -> Credentials: ...

    @property
    def aws(self) -> SimAws: ...

    @property
    def scenario(self) -> Any: ...  # the scenario it was seeded from (its id names the training)

    def before_step(self, step_id: str, attempt: int) -> None: ...

    def after_step(self, step_id: str) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Wiring:
    mode: Mode = Mode.LIVE
    dry_run = False

    def __init__(self, clock: Clock, inventory: Inventory | None = None, creds: Credentials | None = None) -> None:
        from steps.consumers.factory import Credentials

        self.clock = clock
        self.inventory = inventory
        self.creds = creds or Credentials()
        self._vaults: dict[str, Vault] = {}
        self._consumers: dict[str, list[Consumer]] = {}
        self._probes: dict[str, ProbeResult] = {}
        self._adapter_lock = threading.Lock()
        self._regions: list[str] | None = None
        # The operator's (account, ARN): asked once per wiring and operator (the roles
        # check and the session's binding both need it, a moment apart).
        self._identity: tuple[str, str] | None = None

    # -- the vault and the consumers of a user (from the inventory) -------------------------

    def entry(self, user: str) -> UserEntry | None:
        return self.inventory.user(user) if self.inventory is not None else None

    def vault_for(self, user: str) -> Vault | None:
        entry = self.entry(user)
        if entry is None or entry.vault is None:
            return None
        with self._adapter_lock:
            if user not in self._vaults:
                from steps.consumers.factory import build_vault

                self._vaults[user] = build_vault(entry.vault, self.creds)
            return self._vaults[user]

    def consumers_for(self, user: str) -> list[Consumer]:
        entry = self.entry(user)
        if entry is None or not entry.consumers:
            return []
        with self._adapter_lock:
            if user not in self._consumers:
                from steps.consumers.factory import build_consumer_or_reason

                # One consumer that cannot be set up is that consumer's failure, not the session's.
                self._consumers[user] = [
                    build_consumer_or_reason(c, self.creds, sleep=self.clock.sleep, monotonic=self.clock.monotonic) for c in entry.consumers
                ]
            return self._consumers[user]

    def display_values(self, values: Mapping[str, str]) -> dict[str, str]:
        """The inventory's names for a runbook's displayed commands (steps.consumers.display)."""
        from steps.consumers.display import display_values

        user = values.get("target_user", "")
        try:
            return display_values(self.vault_for(user), self.consumers_for(user), values)
        except Exception:  # an adapter that cannot be built: its placeholders stay; its step says why
            return {}

    def probe(self, adapter: Vault | Consumer) -> ProbeResult:
        """The adapter's read-only probe, made once per wiring: a dry run's later steps
        show what the first one found instead of asking again."""
        with self._adapter_lock:
            found = self._probes.get(adapter.name)
        if found is None:
            try:
                found = adapter.probe()
            except Exception as exc:  # a probe's own bug is a failed check, not a crash
                found = ProbeResult(adapter.name)
                found.failed("probe", f"{type(exc).__name__}: {redact(str(exc))}")
            with self._adapter_lock:
                found = self._probes.setdefault(adapter.name, found)
        return found

    def recover_secret(self, name: str, facts: dict[str, str]) -> Secret | None:
        """After a restart: the new secret is in the vault once step 4 stored it; the
        old one is in the vault's history at the versions recorded before step 4."""
        vault = self.vault_for(facts.get("target_user", ""))
        if vault is None:
            return None
        try:
            if name == "new_secret" and facts.get("new_key_id"):
                pair, _ = vault.read_pair()
                return pair.secret if pair is not None and pair.key_id == facts["new_key_id"] else None
            if name == "old_secret" and facts.get("vault_versions_before") and facts.get("old_key_id"):
                pair = vault.read_pair_at(json.loads(facts["vault_versions_before"]))
                return pair.secret if pair.key_id == facts["old_key_id"] else None
        except Exception:  # the vault is down: the caller falls back as if it were absent
            return None
        return None

    def _close_adapters(self) -> None:
        for adapter in [*self._vaults.values(), *(c for cs in self._consumers.values() for c in cs)]:
            close = getattr(adapter, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass
        self._vaults.clear()
        self._consumers.clear()
        self._probes.clear()

    def aws_client(self, service: str, pair: Pair | None = None, region: str | None = None) -> Any:
        """A boto3 client signed with `pair` (the operator's credentials by default), in
        `region` (the wiring's own by default). Every one names handrail in its user
        agent (steps.cloudtrail.OWN_AGENT), so CloudTrail tells its calls apart."""
        raise NotImplementedError

    def enabled_regions(self) -> list[str]:
        """The account's enabled regions (ec2 describe-regions), asked once per wiring.
        Raises what the call raises."""
        with self._adapter_lock:
            found = self._regions
        if found is None:
            from steps.cloudtrail import enabled_regions

            found = enabled_regions(self.aws_client("ec2"))
            with self._adapter_lock:
                self._regions = found
        return list(found)

    def identity(self) -> tuple[str, str]:
        """(account id, caller ARN) of the operator's credentials; asked once until the
        operator changes (a failure is not kept: the next call asks again)."""
        with self._adapter_lock:
            known = self._identity
        if known is not None:
            return known
        try:
            ident = self.aws_client("sts").get_caller_identity()
        except Exception as exc:
            raise WiringError(f"cannot tell who you are (sts get-caller-identity): {aws_error(exc)}") from None
        known = (ident["Account"], ident["Arn"])
        with self._adapter_lock:
            self._identity = known
        return known

    def _operator_changed(self) -> None:
        with self._adapter_lock:
            self._identity = None

    def target_identity(self, user: str) -> tuple[str, str]:
        """(ARN, user id) of an IAM user. The user id changes when a user is deleted and
        re-created under the same name, so a session can tell it is the same user."""
        try:
            found = self.aws_client("iam").get_user(UserName=user)["User"]
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                raise NoSuchUser(user) from None
            raise WiringError(f"cannot read IAM user {user!r} (iam get-user): {aws_error(exc)}") from None
        return str(found["Arn"]), str(found["UserId"])

    def switch_operator(self, pair: Pair) -> None:
        """Self-rotation: sign the operator's calls with `pair` from now on."""
        raise NotImplementedError

    def before_step(self, step_id: str, attempt: int) -> None:
        """Called before each attempt of a step runs (training schedules its faults on it)."""

    def after_step(self, step_id: str) -> None:
        """Called after each attempt of a step, however it ended."""

    def checkpoint(self) -> str | None:
        return None

    def describe(self) -> str:
        return self.mode

    def close(self) -> None:
        self._close_adapters()


class WiringError(Exception):
    pass


class NoSuchUser(WiringError):
    def __init__(self, user: str) -> None:
        super().__init__(f"IAM user {user!r} does not exist in this account (iam get-user: NoSuchEntity)")
        self.user = user


_loaders: dict[Any, Any] = {}  # botocore's data_path setting -> its loader
_loaders_lock = threading.Lock()


def _boto3_session(profile: str | None, region: str | None) -> Any:
    """A boto3 session whose botocore loader is shared with every other in the process.

    A loader parses botocore's JSON models (endpoints, each service's API) when first
    asked and keeps them: ~0.1 s of CPU that every session of a live campaign paid again.
    The models are read-only data; credentials and configuration stay the session's own."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    if profile is not None:
        core.set_config_variable("profile", profile)
    data_path = core.get_config_variable("data_path")
    with _loaders_lock:
        loader = _loaders.get(data_path)
        if loader is None:
            _loaders[data_path] = core.get_component("data_loader")
        else:
            core.register_component("data_loader", loader)
        session = boto3.Session(botocore_session=core, profile_name=profile, region_name=region)
        # boto3 adds its own data folder to the loader's paths: once is enough.
        paths = core.get_component("data_loader").search_paths
        paths[:] = list(dict.fromkeys(paths))
    return session


def _client_config() -> Any:
    from botocore.config import Config

    from steps import __version__
    from steps.cloudtrail import OWN_AGENT

    return Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60, user_agent_extra=f"{OWN_AGENT}{__version__}"
    )


class LiveWiring(Wiring):
    def __init__(
        self, profile: str | None = None, region: str | None = None, dry_run: bool = False, inventory: Inventory | None = None
    ) -> None:
        super().__init__(Clock(), inventory=inventory)
        self.profile = profile
        self.region = region
        self.dry_run = dry_run
        self.mode = Mode.DRY_RUN if dry_run else Mode.LIVE
        self._session: Any = None  # a boto3.Session, made on first use (boto3 is slow to import)
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()
        self._operator: Pair | None = None

    def switch_operator(self, pair: Pair) -> None:
        self._operator = pair
        self._operator_changed()

    def aws_client(self, service: str, pair: Pair | None = None, region: str | None = None) -> Any:
        pair = pair or self._operator
        key = (service, f"{pair.key_id}:{pair.fingerprint()}" if pair else "operator", region or "")
        with self._lock:
            if key not in self._clients:
                if self._session is None:
                    self._session = _boto3_session(self.profile, self.region)
                region = region or self._session.region_name or "us-east-1"
                if pair is None:
                    client = self._session.client(service, region_name=region, config=_client_config())
                else:
                    client = self._session.client(
                        service,
                        region_name=region,
                        aws_access_key_id=pair.key_id,
                        aws_secret_access_key=pair.secret.reveal(),
                        config=_client_config(),
                    )
                self._clients[key] = client
            return self._clients[key]

    def describe(self) -> str:
        where = f"profile {self.profile}" if self.profile else "default credentials"
        return f"{self.mode} ({where})"


class TrainingWiring(Wiring):
    mode = Mode.TRAINING

    def __init__(self, world: SimWorld) -> None:
        super().__init__(world.clock, inventory=world.inventory, creds=world.creds)
        self.world = world

    def aws_client(self, service: str, pair: Pair | None = None, region: str | None = None) -> Any:
        return self.world.aws.client(service, pair, region)

    def switch_operator(self, pair: Pair) -> None:
        self.world.aws.operator = pair
        self._operator_changed()

    def before_step(self, step_id: str, attempt: int) -> None:
        self.world.before_step(step_id, attempt)

    def after_step(self, step_id: str) -> None:
        self.world.after_step(step_id)

    def checkpoint(self) -> str | None:
        return json.dumps(self.world.snapshot())

    def describe(self) -> str:
        return f"training (scenario {self.world.scenario.id}, simulated account {self.world.aws.account_id})"

    def close(self) -> None:
        self._close_adapters()
        self.world.close()


class SharedTrainingWiring(TrainingWiring):
    """One session's wiring onto a world that many sessions share (a training campaign).

    The session has its own adapters and its own operator identity (self-rotation
    switches this session only); the world, its clock and its moto account are shared
    and outlive the session: closing this wiring leaves them running, and the campaign,
    not each session, saves the world (one snapshot per campaign, not one per step per
    session, which would grow with the square of the fleet)."""

    def __init__(self, world: SimWorld, on_checkpoint: Callable[[], None] | None = None) -> None:
        super().__init__(world)
        self._operator: Pair | None = None
        self._on_checkpoint = on_checkpoint

    def aws_client(self, service: str, pair: Pair | None = None, region: str | None = None) -> Any:
        return self.world.aws.client(service, pair or self._operator, region)

    def switch_operator(self, pair: Pair) -> None:
        self._operator = pair
        self._operator_changed()

    def enabled_regions(self) -> list[str]:
        """The account is the world's: its regions are asked once per world, not per session."""
        aws = self.world.aws
        if aws.enabled_regions is None:
            aws.enabled_regions = super().enabled_regions()
        return list(aws.enabled_regions)

    def before_step(self, step_id: str, attempt: int) -> None:
        """Step faults are a single session's (compose refuses them for a campaign)."""

    def after_step(self, step_id: str) -> None:
        pass

    def checkpoint(self) -> str | None:
        """The world is the campaign's: it saves it (`on_checkpoint`), not the session."""
        if self._on_checkpoint is not None:
            self._on_checkpoint()
        return None

    def close(self) -> None:
        self._close_adapters()


def training_clock(headless: bool, offset: float = 0.0) -> SimClock:
    # Headless training has nobody to watch a wait: simulated waits pass at once.
    return SimClock(offset=offset, auto_advance=headless)
