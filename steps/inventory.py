"""The inventory: per IAM user, where its pair lives in the vault and who consumes it.

A YAML file, validated like runbooks (one line naming file and field). It holds
addresses and names only: credentials come from the environment, the way each vendor's
own tools read them (INFISICAL_*, HEROKU_API_KEY or ~/.netrc, GH_TOKEN/GITHUB_TOKEN,
the SSH agent and ~/.ssh/config), or, in training, from the sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from steps.text import shown
from steps.yamlfile import RunbookError, parse_file

if TYPE_CHECKING:
    from steps.cloudtrail import Matcher

USER_NAME = r"^[\w+=,.@-]{1,64}$"
PERSON_NAME = r"^[\w.@+-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Seen(_Strict):
    """How a consumer shows in CloudTrail, to tell its calls from a forgotten consumer's
    (steps.cloudtrail.Matcher): the addresses it calls AWS from (IPs or CIDR blocks) and
    its user agents (glob patterns, e.g. "aws-sdk-ruby3/*"). Both optional; a consumer
    declaring neither matches no caller."""

    source_ips: list[str] = Field(default_factory=list, max_length=64)
    user_agents: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(default_factory=list, max_length=16)

    @field_validator("source_ips")
    @classmethod
    def _blocks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for block in value:
            try:
                ipaddress.ip_network(block, strict=False)
            except ValueError:
                raise ValueError(f"{block!r} is not an IP address or a CIDR block (e.g. 203.0.113.7 or 203.0.113.0/24)") from None
        return value

    def matcher(self, name: str) -> Matcher:
        from steps.cloudtrail import Matcher

        return Matcher(name, tuple(self.source_ips), tuple(self.user_agents))


class InfisicalEntry(_Strict):
    type: Literal["infisical"] = "infisical"
    site_url: str = Field("https://app.infisical.com", pattern=r"^https?://")
    project_id: str = Field(min_length=1)
    environment: str = Field(min_length=1)
    path: str = Field("/", pattern=r"^/")
    key_id_name: str = "AWS_ACCESS_KEY_ID"
    secret_name: str = "AWS_SECRET_ACCESS_KEY"


class HerokuEntry(_Seen):
    type: Literal["heroku"]
    app: str = Field(pattern=r"^[a-z][a-z0-9-]{1,29}$")
    api_url: str = Field("https://api.heroku.com", pattern=r"^https?://")
    verify_url: str | None = Field(None, pattern=r"^https?://")
    key_id_var: str = "AWS_ACCESS_KEY_ID"
    secret_var: str = "AWS_SECRET_ACCESS_KEY"

    @property
    def name(self) -> str:
        return f"heroku:{self.app}"


class GitHubEntry(_Seen):
    type: Literal["github"]
    base_url: str = Field("https://api.github.com", pattern=r"^https?://")
    repository: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    environment: str | None = None
    organization: str | None = None
    visibility: Literal["all", "private", "selected"] = "private"
    selected_repositories: list[str] = Field(default_factory=list)
    key_id_name: str = "AWS_ACCESS_KEY_ID"
    secret_name: str = "AWS_SECRET_ACCESS_KEY"
    verify_workflow: str | None = None
    verify_ref: str = "main"

    @model_validator(mode="after")
    def _one_target(self) -> GitHubEntry:
        if bool(self.repository) == bool(self.organization):
            raise ValueError("give either 'repository' (with an optional 'environment') or 'organization'")
        if self.environment and not self.repository:
            raise ValueError("'environment' belongs to a repository")
        if self.selected_repositories and self.visibility != "selected":
            raise ValueError("'selected_repositories' needs visibility: selected")
        return self

    @property
    def name(self) -> str:
        if self.organization:
            return f"github-org:{self.organization}"
        return f"github:{self.repository}" + (f"@{self.environment}" if self.environment else "")


class SshEntry(_Seen):
    type: Literal["ssh"]
    label: str = Field(pattern=r"^[\w.-]+$")
    host: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    user: str | None = None
    key_file: str | None = None
    use_agent: bool = True
    known_hosts: str | None = None
    env_file: str = Field("/etc/raxx/credentials.env", pattern=r"^/")
    service: str | None = None
    restart: str | None = None
    verify: str | None = None
    key_id_var: str = "AWS_ACCESS_KEY_ID"
    secret_var: str = "AWS_SECRET_ACCESS_KEY"

    @property
    def name(self) -> str:
        return f"ssh:{self.label}"

    @property
    def restart_command(self) -> str | None:
        if self.restart:
            return self.restart
        return f"sudo systemctl restart {self.service}" if self.service else None


Consumer = Annotated[HerokuEntry | GitHubEntry | SshEntry, Field(discriminator="type")]


class UserEntry(_Strict):
    check_call: str | None = None
    # Rotating or offboarding it needs the runbook's elevated_role (steps.roles), even
    # when none of its policies is admin-equivalent.
    elevated: bool = False
    vault: InfisicalEntry | None = None
    consumers: list[Consumer] = Field(default_factory=list)

    @field_validator("check_call")
    @classmethod
    def _call(cls, value: str | None) -> str | None:
        from steps.aws import check_call_field

        return check_call_field(value)

    @model_validator(mode="after")
    def _unique_names(self) -> UserEntry:
        seen: set[str] = set()
        for consumer in self.consumers:
            if consumer.name in seen:
                raise ValueError(f"consumer {consumer.name} is listed twice")
            seen.add(consumer.name)
        return self


class Person(_Strict):
    """Someone whose leaving matters: the IAM users that are theirs (offboarded), and the
    inventory's pairs they could read (rotated: their blast radius)."""

    iam_users: list[Annotated[str, Field(pattern=USER_NAME)]] = Field(default_factory=list)
    could_read: list[str] = Field(default_factory=list)


class UnknownPerson(ValueError):
    """A person the inventory does not list (one line)."""


class Inventory(_Strict):
    version: Literal[1] = 1
    users: dict[Annotated[str, Field(pattern=USER_NAME)], UserEntry]
    people: dict[Annotated[str, Field(pattern=PERSON_NAME)], Person] = Field(default_factory=dict)

    def user(self, name: str) -> UserEntry | None:
        return self.users.get(name)

    @model_validator(mode="after")
    def _people_read_listed_pairs(self) -> Inventory:
        for name, person in self.people.items():
            for i, user in enumerate(person.could_read):
                if user not in self.users:
                    raise ValueError(f"people.{name}.could_read[{i}]: {user!r} is not one of the inventory's users")
            for field_name, names in (("iam_users", person.iam_users), ("could_read", person.could_read)):
                twice = sorted({n for n in names if names.count(n) > 1})
                if twice:
                    raise ValueError(f"people.{name}.{field_name}: {twice[0]!r} is listed twice")
        return self

    def person(self, name: str) -> Person:
        found = self.people.get(name)
        if found is None:
            known = ", ".join(sorted(self.people)) or "none"
            raise UnknownPerson(f"no person {shown(name)} in the inventory's people (known: {known})")
        return found

    def blast_radius(self, name: str) -> list[str]:
        """Every pair the person could read: the inventory users whose keys their leaving
        puts at risk, in the order listed."""
        return list(self.person(name).could_read)


def load(path: str | Path) -> Inventory:
    return parse_file(Path(path).expanduser(), Inventory, str(path))


def dump(inventory: Inventory) -> dict[str, Any]:
    return inventory.model_dump(mode="json", exclude_defaults=True)


__all__ = [
    "GitHubEntry",
    "HerokuEntry",
    "InfisicalEntry",
    "Inventory",
    "Person",
    "RunbookError",
    "SshEntry",
    "UnknownPerson",
    "UserEntry",
    "load",
]
