"""Roles: who may run a runbook on whom, and which steps wait for a second operator.

A roles file (YAML, beside the inventory) maps operator identities to roles, the way
AWS names them: IAM group membership, principal ARN patterns, assumed-role name
patterns, SSO permission sets (the role `AWSReservedSSO_<PermissionSet>_<id>` that IAM
Identity Center creates). The runbook's header names the role it needs
(`required_role`) and the one an elevated target needs (`elevated_role`).

A target IAM user is elevated when the inventory says so, or when a policy of its own
or of one of its groups is admin-equivalent: AdministratorAccess, IAMFullAccess, or an
Allow statement whose Action is `*` or `iam:*`. Each check is read-only and is made
before anything is written; a refusal names the identity, its roles and the role needed.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from steps.model import parse_duration
from steps.yamlfile import RunbookError, parse_file

if TYPE_CHECKING:
    from steps.inventory import Inventory
    from steps.model import Runbook
    from steps.wiring import Wiring

ROLE_NAME = r"^[A-Za-z][\w.-]{0,63}$"
DEFAULT_APPROVAL_TTL = 3600.0
ADMIN_POLICIES = frozenset({"AdministratorAccess", "IAMFullAccess"})
ADMIN_ACTIONS = frozenset({"*", "iam:*"})
_SSO_ROLE = re.compile(r"^AWSReservedSSO_(?P<set>.+)_[0-9a-f]{8,}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleRule(_Strict):
    """Who holds a role: any one match is enough."""

    iam_groups: list[str] = Field(default_factory=list)
    principals: list[str] = Field(default_factory=list)  # ARN patterns (fnmatch): users, roles, assumed roles
    assumed_roles: list[str] = Field(default_factory=list)  # role name patterns
    sso_permission_sets: list[str] = Field(default_factory=list)  # permission set name patterns
    includes: list[Annotated[str, Field(pattern=ROLE_NAME)]] = Field(default_factory=list)  # roles this one also grants

    @field_validator("principals")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if pattern != "*" and not pattern.startswith("arn:"):
                raise ValueError(f"{pattern!r} is not an ARN pattern (write arn:aws:iam::123456789012:user/alice, or use * in it)")
        return value


class Approvals(_Strict):
    # Live mode: every irreversible step waits until another identity approves it.
    irreversible: bool = False
    expire_after: float = DEFAULT_APPROVAL_TTL

    @field_validator("expire_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError("an approval must last longer than 0s")
        return seconds


class RolesFile(_Strict):
    version: Literal[1] = 1
    roles: dict[Annotated[str, Field(pattern=ROLE_NAME)], RoleRule]
    approvals: Approvals = Approvals()

    @model_validator(mode="after")
    def _includes_known(self) -> RolesFile:
        for name, rule in self.roles.items():
            for i, other in enumerate(rule.includes):
                if other not in self.roles:
                    raise ValueError(f"roles.{name}.includes[{i}]: {other!r} is not one of the roles ({', '.join(self.roles)})")
        return self

    def expand(self, names: Iterable[str]) -> set[str]:
        """The roles held, with every role they include."""
        held: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in held:
                continue
            held.add(name)
            rule = self.roles.get(name)
            todo += rule.includes if rule else []
        return held

    @property
    def uses_groups(self) -> bool:
        return any(rule.iam_groups for rule in self.roles.values())


def load(path: str | Path) -> RolesFile:
    return parse_file(Path(path).expanduser(), RolesFile, str(path))


# -- who the operator is ------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """A caller ARN from STS GetCallerIdentity, read the way the roles file matches it."""

    arn: str
    kind: str  # user | assumed-role | root | federated-user | other
    name: str  # the user name, or the role name of an assumed role
    account: str

    @property
    def role_arn(self) -> str | None:
        return f"arn:aws:iam::{self.account}:role/{self.name}" if self.kind == "assumed-role" else None

    @property
    def permission_set(self) -> str | None:
        match = _SSO_ROLE.match(self.name) if self.kind == "assumed-role" else None
        return match.group("set") if match else None

    @classmethod
    def parse(cls, arn: str) -> Principal:
        parts = arn.split(":", 5)
        if len(parts) < 6:
            return cls(arn, "other", arn, "")
        account, resource = parts[4], parts[5]
        if resource == "root":
            return cls(arn, "root", "root", account)
        kind, _, rest = resource.partition("/")
        if kind == "user":
            return cls(arn, "user", rest.rpartition("/")[2], account)
        if kind == "assumed-role":
            return cls(arn, "assumed-role", rest.split("/")[0], account)
        if kind == "federated-user":
            return cls(arn, "federated-user", rest, account)
        return cls(arn, "other", rest or resource, account)


GroupsOf = Callable[[str], list[str]]


def roles_of(principal: Principal, roles: RolesFile, groups_of: GroupsOf | None = None) -> tuple[set[str], str | None]:
    """(the roles this principal holds, a note when its groups could not be read)."""
    groups: list[str] = []
    note = None
    if roles.uses_groups and principal.kind == "user" and groups_of is not None:
        try:
            groups = groups_of(principal.name)
        except Exception as exc:  # said in the refusal, never a crash
            from steps.aws import aws_error

            note = f"its IAM groups could not be read ({aws_error(exc)})"
    held = set()
    for name, rule in roles.roles.items():
        if _matches(principal, rule, groups):
            held.add(name)
    return roles.expand(held), note


def _matches(principal: Principal, rule: RoleRule, groups: list[str]) -> bool:
    arns = [principal.arn] + ([principal.role_arn] if principal.role_arn else [])
    if any(fnmatch.fnmatchcase(arn, pattern) for arn in arns for pattern in rule.principals):
        return True
    if principal.kind == "assumed-role" and any(fnmatch.fnmatchcase(principal.name, p) for p in rule.assumed_roles):
        return True
    pset = principal.permission_set
    if pset is not None and any(fnmatch.fnmatchcase(pset, p) for p in rule.sso_permission_sets):
        return True
    return any(g in groups for g in rule.iam_groups)


def iam_groups(wiring: Wiring) -> GroupsOf:
    def lookup(user: str) -> list[str]:
        pages = wiring.aws_client("iam").get_paginator("list_groups_for_user").paginate(UserName=user)
        return [g["GroupName"] for page in pages for g in page["Groups"]]

    return lookup


# -- whether the target is elevated -------------------------------------------------------------


def _document(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    text = unquote(str(value))
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def admin_statement(document: Any) -> bool:
    """An Allow statement whose Action is `*` or `iam:*` (a string or in a list)."""
    statements = _document(document).get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        for action in actions if isinstance(actions, list) else [actions]:
            if str(action) in ADMIN_ACTIONS:
                return True
    return False


def _managed_admin(iam: Any, attached: list[dict[str, str]]) -> str | None:
    for policy in attached:
        name, arn = policy["PolicyName"], policy["PolicyArn"]
        if name in ADMIN_POLICIES:
            return f"policy {name} attached"
        if arn.startswith("arn:aws:iam::aws:"):
            continue  # AWS-managed and not one of the two: not admin-equivalent here
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        if admin_statement(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]):
            return f"managed policy {name} allows Action *"
    return None


def elevation(wiring: Wiring, user: str, inventory: Inventory | None = None) -> str | None:
    """Why `user` is elevated, or None. A policy that cannot be read counts as elevated
    (said in the reason): handrail does not guess in the operator's favour."""
    from steps.aws import aws_error

    entry = inventory.user(user) if inventory is not None else None
    if entry is not None and entry.elevated:
        return "the inventory marks it elevated"
    iam = wiring.aws_client("iam")
    try:
        why = _managed_admin(iam, _all(iam, "list_attached_user_policies", "AttachedPolicies", UserName=user))
        if why:
            return why
        for name in _all(iam, "list_user_policies", "PolicyNames", UserName=user):
            if admin_statement(iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]):
                return f"inline policy {name} allows Action *"
        for group in _all(iam, "list_groups_for_user", "Groups", UserName=user):
            gname = group["GroupName"]
            why = _managed_admin(iam, _all(iam, "list_attached_group_policies", "AttachedPolicies", GroupName=gname))
            if why:
                return f"via group {gname}: {why}"
            for name in _all(iam, "list_group_policies", "PolicyNames", GroupName=gname):
                if admin_statement(iam.get_group_policy(GroupName=gname, PolicyName=name)["PolicyDocument"]):
                    return f"via group {gname}: inline policy {name} allows Action *"
    except Exception as exc:
        return f"its policies could not be read ({aws_error(exc)}), so it counts as elevated"
    return None


def _all(client: Any, operation: str, key: str, **params: str) -> list[Any]:
    return [item for page in client.get_paginator(operation).paginate(**params) for item in page[key]]


# -- the decision -------------------------------------------------------------------------------


def role_name(text: str | None) -> str | None:
    """A header's role: its first word (`superadmin (for IAM users with elevated privileges)`)."""
    match = re.match(r"\s*([A-Za-z][\w.-]*)", text or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class Governance:
    """The roles in force for a session and where they came from."""

    roles: RolesFile | None
    source: str  # the roles file's path, "scenario NAME", or "" (none)
    enforce_approvals: bool = True  # dry runs change nothing: no step waits for a second operator

    @classmethod
    def open(cls) -> Governance:
        """Training without roles in its scenario: its operator holds every role."""
        return cls(RolesFile(roles={}), "training (every role)")

    @property
    def everyone(self) -> bool:
        return self.roles is not None and not self.roles.roles and self.source.startswith("training")


class RoleRefused(Exception):
    """The operator lacks the role the runbook needs for this target (exit 3, nothing changed)."""


@dataclass
class Authority:
    """Who the operator is, what they hold, what this target needed: recorded with the session."""

    operator_arn: str
    roles: list[str]
    needed: str | None
    elevated: str | None  # why the target is elevated; None: it is not (or it was not looked at)
    source: str
    approvals_irreversible: bool = False
    approval_ttl: float = DEFAULT_APPROVAL_TTL
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "operator_arn": self.operator_arn,
            "roles": self.roles,
            "needed": self.needed,
            "elevated": self.elevated,
            "roles_source": self.source,
            "approvals_irreversible": self.approvals_irreversible,
            "approval_ttl": self.approval_ttl,
            "notes": self.notes,
        }


def authorise(wiring: Wiring, runbook: Runbook, target: str, governance: Governance) -> Authority:
    """May this operator run this runbook on this target? Read-only; raises RoleRefused."""
    _, operator_arn = wiring.identity()
    principal = Principal.parse(operator_arn)
    required = role_name(runbook.header.required_role)
    elevated_role = role_name(runbook.header.elevated_role)
    roles = governance.roles
    approvals = roles.approvals if roles is not None else Approvals()
    authority = Authority(
        operator_arn,
        [],
        required,
        None,
        governance.source or "none",
        approvals.irreversible and governance.enforce_approvals,
        approvals.expire_after,
    )
    if governance.everyone:
        authority.roles = sorted(r for r in (required, elevated_role) if r)
        return authority
    if roles is None:
        held: set[str] = set()
        authority.notes.append("no roles file: the runbook's roles are not enforced, except that elevated users are refused")
    else:
        held, note = roles_of(principal, roles, iam_groups(wiring))
        if note:
            authority.notes.append(note)
        if required and required not in held:
            raise RoleRefused(_refusal(authority, sorted(held), required, f"runbook {runbook.id} needs role {required}", note))
    authority.roles = sorted(held)
    if target and elevated_role and elevated_role not in held:
        why = elevation(wiring, target, wiring.inventory)
        authority.elevated = why
        if why:
            authority.needed = elevated_role
            where = " (and there is no roles file: write one, see docs/roles.md)" if roles is None else ""
            raise RoleRefused(
                _refusal(
                    authority, sorted(held), elevated_role, f"IAM user {target} is elevated ({why}): it needs role {elevated_role}{where}"
                )
            )
    elif target and elevated_role:
        authority.elevated = "not looked at: the operator holds " + elevated_role
    return authority


def _refusal(authority: Authority, held: list[str], needed: str, why: str, note: str | None = None) -> str:
    has = f"role(s) {', '.join(held)}" if held else "no role"
    extra = f"; {note}" if note else ""
    return f"refused: {authority.operator_arn} has {has} ({authority.source}); {why}{extra}; nothing changed"


def approver_may(governance: Governance, principal_arn: str, needed: str | None, groups_of: GroupsOf | None) -> str | None:
    """Why this approver may not approve (they lack the role the session needed), or None."""
    if governance.roles is None or governance.everyone or not needed:
        return None
    held, note = roles_of(Principal.parse(principal_arn), governance.roles, groups_of)
    if needed in held:
        return None
    has = f"role(s) {', '.join(sorted(held))}" if held else "no role"
    extra = f"; {note}" if note else ""
    return f"refused: {principal_arn} has {has} ({governance.source}); approving this session needs role {needed}{extra}; nothing recorded"


__all__ = ["Authority", "Governance", "Principal", "RoleRefused", "RolesFile", "RunbookError", "authorise", "elevation", "load"]
