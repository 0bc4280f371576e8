"""Which IAM users are due for rotation: each Active key's age and last use, from the account.

Age is measured from list-access-keys' CreateDate on the wiring's clock (simulated time
in training). A user is due when its oldest Active key is at least the cadence old (the
SOP: every 30 days), and overdue past 90 days: the default `maxAccessKeyAge` of AWS
Config's `access-keys-rotated` rule and the CIS benchmark's ceiling. An Inactive key
left over by the previous rotation still takes a slot; it is reported too (step 1b of
the next rotation deletes it after checking its last use).

Read-only: list-users (with every user), list-access-keys and get-access-key-last-used
per key. Users are read concurrently, a few at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from steps.aws import AwsCallFailed, KeyInfo, aws_error, list_keys
from steps.clock import human_duration, iso

if TYPE_CHECKING:
    from steps.wiring import Wiring

DEFAULT_CADENCE = 30 * 86400.0
CEILING_DAYS = 90  # AWS Config access-keys-rotated (default maxAccessKeyAge) and CIS


@dataclass
class KeyAge:
    key_id: str
    status: str
    created: str
    age_days: int
    last_used: str | None
    last_used_service: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DueRow:
    user: str
    in_inventory: bool
    age_days: int | None  # of the oldest Active key; None without one
    due: bool
    overdue: bool
    keys: list[KeyAge] = field(default_factory=list)
    inactive_left: list[str] = field(default_factory=list)
    operator: bool = False  # the identity handrail signs in as: never part of a campaign
    error: str | None = None
    last_used_ago: str | None = None  # of the oldest Active key, in words

    @property
    def rotatable(self) -> bool:
        """Due, readable, and not the operator's own user (self-rotation is one session, by hand)."""
        return self.due and self.error is None and not self.operator

    def why(self, cadence_days: float) -> str:
        """One line: why this user is (or is not) in a campaign."""
        if self.error:
            return f"cannot be read: {self.error}"
        if self.age_days is None:
            return "no Active key: nothing to rotate"
        oldest = next(k for k in self.keys if k.status == "Active" and k.age_days == self.age_days)
        parts = [f"Active key {oldest.key_id} is {self.age_days} days old"]
        if self.overdue:
            parts.append(f"past the {CEILING_DAYS}-day ceiling (AWS Config access-keys-rotated, CIS)")
        elif self.due:
            parts.append(f"due at {cadence_days:g} days")
        else:
            parts.append(f"not due until {cadence_days:g} days")
        parts.append(f"last used {self.last_used_ago or 'never'}")
        if self.inactive_left:
            parts.append(f"Inactive key {', '.join(self.inactive_left)} left over (step 1b deletes it)")
        if self.operator:
            parts.append("the operator's own user: rotate it alone (handrail run --allow-self-rotation)")
        if not self.in_inventory:
            parts.append("not in the inventory: vault and consumers are manual")
        return "; ".join(parts)

    def as_dict(self, cadence_days: float) -> dict[str, Any]:
        return {
            "user": self.user,
            "age_days": self.age_days,
            "due": self.due,
            "overdue": self.overdue,
            "in_inventory": self.in_inventory,
            "operator": self.operator,
            "inactive_left": self.inactive_left,
            "keys": [k.as_dict() for k in self.keys],
            "why": self.why(cadence_days),
            "error": self.error,
        }


def all_users(wiring: Wiring) -> list[str]:
    """Every IAM user of the account (list-users, every page)."""
    try:
        pages = wiring.aws_client("iam").get_paginator("list_users").paginate()
        return sorted(u["UserName"] for page in pages for u in page.get("Users", []))
    except Exception as exc:
        raise AwsCallFailed(f"list-users: {aws_error(exc)}") from None


def row_for(user: str, keys: list[KeyInfo], now: datetime, cadence: float, *, in_inventory: bool, operator: bool) -> DueRow:
    ages = [
        KeyAge(
            k.key_id,
            k.status,
            iso(k.created),
            int((now - k.created).total_seconds() // 86400),
            iso(k.last_used) if k.last_used else None,
            k.service,
        )
        for k in keys
    ]
    active = [(k, a) for k, a in zip(keys, ages, strict=True) if k.status == "Active"]
    oldest = min(active, key=lambda pair: pair[0].created) if active else None
    age = oldest[1].age_days if oldest else None
    seconds = (now - oldest[0].created).total_seconds() if oldest else 0.0
    last = oldest[0].last_used if oldest else None
    return DueRow(
        user=user,
        in_inventory=in_inventory,
        age_days=age,
        due=oldest is not None and seconds >= cadence,
        overdue=age is not None and age > CEILING_DAYS,
        keys=ages,
        inactive_left=[k.key_id for k in keys if k.status != "Active"],
        operator=operator,
        last_used_ago=f"{human_duration((now - last).total_seconds())} ago" if last else None,
    )


def report(
    wiring: Wiring,
    users: Iterable[str] | None = None,
    *,
    every: bool = False,
    cadence: float = DEFAULT_CADENCE,
    concurrency: int = 4,
) -> list[DueRow]:
    """One row per user: `users`, else the inventory's; with `every` (or without an
    inventory) every IAM user that has access keys. Sorted oldest key first."""
    inventory = set(wiring.inventory.users) if wiring.inventory is not None else set()
    every = every or (users is None and not inventory)
    names = all_users(wiring) if every else sorted(set(users) if users is not None else inventory)
    account, operator_arn = wiring.identity()
    operator = operator_arn.rpartition("/")[2] if ":user/" in operator_arn else None
    now = wiring.clock.now()
    iam = wiring.aws_client("iam")

    def one(user: str) -> DueRow | None:
        try:
            keys = list_keys(iam, user, with_last_used=True, account=account)
        except AwsCallFailed as exc:
            row = DueRow(user, user in inventory, None, False, False, error=str(exc))
        else:
            if every and not keys:
                return None  # --all-users: only the users that have access keys
            row = row_for(user, keys, now, cadence, in_inventory=user in inventory, operator=user == operator)
        return row

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="due") as pool:
        rows = [r for r in pool.map(one, names) if r is not None]
    return sorted(rows, key=lambda r: (r.age_days is None, -(r.age_days or 0), r.user))
