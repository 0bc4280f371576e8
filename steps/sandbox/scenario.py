"""Training scenarios: YAML files that seed the simulated world and schedule its faults.

Validated like runbooks: a bad scenario is one line naming the file and the field.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from steps.inventory import Person
from steps.model import SLUG, parse_duration
from steps.roles import Governance, RolesFile
from steps.yamlfile import RunbookError, parse_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> float:
    return parse_duration(value)


class KeySeed(_Strict):
    status: Literal["Active", "Inactive"] = "Active"
    age: float = 90 * 86400
    last_used: float | None = 3 * 3600
    service: str = "s3"

    @field_validator("age", "last_used", mode="before")
    @classmethod
    def _d(cls, value: Any) -> float | None:
        return None if value is None else _duration(value)


Holds = str  # "active" (the target's first Active key), "none", or a key index "0" / "1"


class VaultSeed(_Strict):
    project_id: str = "raxx-prod"
    environment: str = "prod"
    path: str = Field("/", pattern=r"^/")
    holds: Holds = "active"


class HerokuSeed(_Strict):
    type: Literal["heroku"]
    app: str = Field(pattern=r"^[a-z][a-z0-9-]{1,29}$")
    holds: Holds = "active"
    health_check: bool = True


class GitHubSeed(_Strict):
    type: Literal["github"]
    repository: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    environment: str | None = None
    organization: str | None = None
    visibility: Literal["all", "private", "selected"] = "all"
    verify_workflow: str | None = None
    holds: Holds = "active"


class SshSeed(_Strict):
    type: Literal["ssh"]
    label: str = "vault-host"
    env_file: str = Field("/etc/raxx/credentials.env", pattern=r"^/")
    service: str = "raxx-vault"
    verify: str | None = "raxx-vault healthcheck"
    other_lines: list[str] = Field(
        default_factory=lambda: ["# written by ops; AWS pair rotated by handrail", "RAXX_VAULT_BUCKET=raxx-backups", "RAXX_LOG_LEVEL=info"]
    )
    holds: Holds = "active"


ConsumerSeed = Annotated[HerokuSeed | GitHubSeed | SshSeed, Field(discriminator="type")]


class UserSeed(_Strict):
    keys: list[KeySeed] = Field(default_factory=list, max_length=2)
    check_call: str | None = None
    # Everything else a user can have attached (what offboarding must remove before
    # DeleteUser): a console password, virtual MFA devices (by name), groups, inline
    # policies (name: document), managed policies (names: created in the account),
    # SSH public keys and signing certificates (how many), service-specific
    # credentials (by service, e.g. codecommit.amazonaws.com).
    login_profile: bool = False
    mfa_devices: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    inline_policies: dict[str, dict[str, Any]] = Field(default_factory=dict)
    attached_policies: list[str] = Field(default_factory=list)
    ssh_public_keys: int = Field(0, ge=0, le=5)
    signing_certificates: int = Field(0, ge=0, le=2)
    service_credentials: list[str] = Field(default_factory=list, max_length=2)
    # A user other than the target that the inventory lists (a fleet): where its pair
    # lives and who consumes it. The target's are the scenario's top-level ones.
    vault: VaultSeed | None = None
    consumers: list[ConsumerSeed] = Field(default_factory=list)

    @property
    def in_inventory(self) -> bool:
        return self.vault is not None or bool(self.consumers)

    @field_validator("mfa_devices", "groups", "attached_policies")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[\w+=,.@-]{1,128}", name):
                raise ValueError(f"{name!r} is not an IAM name (letters, digits and + = , . @ _ -)")
        return value

    @field_validator("check_call")
    @classmethod
    def _call(cls, value: str | None) -> str | None:
        from steps.aws import check_call_field

        return check_call_field(value)


class AwsSeed(_Strict):
    propagation_delay: float = 0.0
    status_delay: float = 0.0
    users: dict[str, UserSeed]
    buckets: dict[str, dict[str, int]] = Field(default_factory=dict)

    @field_validator("propagation_delay", "status_delay", mode="before")
    @classmethod
    def _d(cls, value: Any) -> float:
        return _duration(value)


class FaultSeed(_Strict):
    """Something that goes wrong when a step runs (its first `times` attempts)."""

    at: str = Field(pattern=SLUG)  # the step id
    system: Literal["infisical", "heroku", "github", "ssh"]
    route: str | None = None  # fail this route of a fake HTTP API with `status`
    status: int = Field(500, ge=400, le=599)
    down: bool = False  # the whole system is unreachable
    restart_fails: str | None = None  # ssh: this service's restart fails
    refuse_connections: bool = False  # ssh: the host refuses connections
    times: int = Field(1, ge=1, le=10)

    @model_validator(mode="after")
    def _one_kind(self) -> FaultSeed:
        kinds = [bool(self.route), self.down, bool(self.restart_fails), self.refuse_connections]
        if sum(kinds) != 1:
            raise ValueError("a fault is one of: route, down, restart_fails, refuse_connections")
        if (self.restart_fails or self.refuse_connections) and self.system != "ssh":
            raise ValueError("restart_fails and refuse_connections are ssh faults")
        if self.route and self.system == "ssh":
            raise ValueError("route faults are for the HTTP systems (infisical, heroku, github)")
        return self


class ForgottenSeed(_Strict):
    """A consumer of the pair that no inventory lists: it keeps using its key."""

    name: str
    holds: Holds = "active"
    every: float = 10.0
    call: str | None = None

    @field_validator("every", mode="before")
    @classmethod
    def _d(cls, value: Any) -> float:
        return _duration(value)


class Operator(_Strict):
    # The self-rotation trap: the operator's credentials are the target user's own key.
    as_target: bool = False
    # The IAM groups the operator's own user is in (what a roles file's iam_groups match).
    groups: list[str] = Field(default_factory=list)


class SecondOperator(_Strict):
    """Another IAM user with a key, in the same simulated account: the identity
    `handrail approve` signs as in training (a different STS principal)."""

    groups: list[str] = Field(default_factory=list)


class Scenario(_Strict):
    id: str = Field(pattern=SLUG)
    runbook: str = "aws-iam-access-key"
    title: str
    teaches: str
    difficulty: int = Field(ge=1, le=3)
    briefing: str
    goal: str
    target_user: str
    aws: AwsSeed
    operator: Operator = Operator()
    second_operator: SecondOperator | None = None
    # The roles file training plays by; without one, the operator holds every role.
    roles: RolesFile | None = None
    vault: VaultSeed | None = None
    consumers: list[ConsumerSeed] = Field(default_factory=list)
    forgotten: list[ForgottenSeed] = Field(default_factory=list)
    faults: list[FaultSeed] = Field(default_factory=list)
    # Extra inputs the scenario gives the runbook (e.g. a reason).
    inputs: dict[str, str] = Field(default_factory=dict)
    gotchas: list[str] = Field(default_factory=list)
    # Who could read which pairs (the inventory's people), for offboarding campaigns.
    people: dict[str, Person] = Field(default_factory=dict)
    # Played by a campaign (`handrail campaign start --due`), not as one rotation: the
    # app's list of scenarios leaves it out until the app has a campaign board.
    campaign: bool = False
    # The file it was loaded from, when that was not a shipped scenario (resume needs it).
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        return self._source

    def places(self) -> list[tuple[str, VaultSeed | None, list[ConsumerSeed]]]:
        """(user, vault, consumers) of every user the inventory lists: the target first."""
        out = [(self.target_user, self.vault, list(self.consumers))]
        out += [(name, u.vault, list(u.consumers)) for name, u in self.aws.users.items() if name != self.target_user and u.in_inventory]
        return out

    def governance(self) -> Governance:
        return Governance(self.roles, f"scenario {self.id}") if self.roles is not None else Governance.open()

    def inventory_users(self) -> list[str]:
        return [name for name, _, _ in self.places()]

    @model_validator(mode="after")
    def _target_exists(self) -> Scenario:
        if self.target_user not in self.aws.users:
            raise ValueError(f"target_user {self.target_user!r} is not one of aws.users")
        if self.aws.users[self.target_user].in_inventory:
            raise ValueError(f"aws.users.{self.target_user}: the target's vault and consumers are the scenario's top-level ones")
        for user, vault, consumers in self.places():
            keys = self.aws.users[user].keys
            at = "" if user == self.target_user else f"aws.users.{user}."
            for where, holds in (
                [(f"{at}vault", vault.holds if vault else "active")]
                + [(f"{at}consumers[{i}]", c.holds) for i, c in enumerate(consumers)]
                + ([(f"forgotten[{i}]", c.holds) for i, c in enumerate(self.forgotten)] if user == self.target_user else [])
            ):
                if holds not in ("active", "none") and not (holds.isdigit() and int(holds) < len(keys)):
                    raise ValueError(f"{where}.holds: {holds!r} is not 'active', 'none' or the index of one of {user}'s keys")
        self._unique_places()
        listed = set(self.inventory_users())
        for name, person in self.people.items():
            for i, user in enumerate(person.iam_users):
                if user not in self.aws.users:
                    raise ValueError(f"people.{name}.iam_users[{i}]: {user!r} is not one of aws.users")
            for i, user in enumerate(person.could_read):
                if user not in listed:
                    raise ValueError(f"people.{name}.could_read[{i}]: {user!r} is not a user the inventory lists")
        everyone = [c for _, _, consumers in self.places() for c in consumers]
        systems = {"infisical": any(v is not None for _, v, _ in self.places())} | {
            t: any(c.type == t for c in everyone) for t in ("heroku", "github", "ssh")
        }
        for i, fault in enumerate(self.faults):
            if not systems.get(fault.system):
                raise ValueError(f"faults[{i}].system: the scenario has no {fault.system}")
        return self

    def _unique_places(self) -> None:
        """Many users share one fake Heroku, GitHub, vault and host: no two hold the same place."""
        seen: dict[str, str] = {}
        for user, vault, consumers in self.places():
            names = [f"vault {vault.project_id}/{vault.environment}{vault.path}"] if vault else []
            for c in consumers:
                if isinstance(c, HerokuSeed):
                    names.append(f"heroku app {c.app}")
                elif isinstance(c, GitHubSeed):
                    names.append(f"github {c.organization or c.repository}" + (f"@{c.environment}" if c.environment else ""))
                else:
                    names += [f"ssh label {c.label}", f"ssh file {c.env_file}"]
            for name in names:
                if name in seen and seen[name] != user:
                    raise ValueError(f"{name} holds the pairs of both {seen[name]} and {user}: give each user its own")
                seen[name] = user


def scenarios_dir() -> Path:
    return Path(str(resources.files("steps.sandbox") / "scenarios"))


def shipped() -> list[Path]:
    return sorted(scenarios_dir().glob("*.yaml"))


DEFAULT = "happy-path"


def resolve(ref: str) -> Path:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or "/" in ref:
        return path
    candidate = scenarios_dir() / f"{ref}.yaml"
    if candidate.exists():
        return candidate
    known = ", ".join(p.stem for p in shipped())
    raise RunbookError(ref, "", f"no such scenario (known: {known})")


def load(ref: str | None = None) -> Scenario:
    ref = ref or DEFAULT
    path = resolve(ref)
    scenario = parse_file(path, Scenario, ref)
    from steps.loader import load as load_runbook

    steps = {s.id for s in load_runbook(scenario.runbook).steps}
    for i, fault in enumerate(scenario.faults):
        if fault.at not in steps:
            raise RunbookError(ref, f"faults[{i}].at", f"{fault.at!r} is not a step of runbook {scenario.runbook}")
    if path.resolve().parent != scenarios_dir().resolve():
        scenario._source = str(path.resolve())
    return scenario


def load_all() -> list[Scenario]:
    return [load(str(p)) for p in shipped()]
