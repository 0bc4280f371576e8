"""AWS helpers shared by the IAM actions, the wiring, the inventory and the sandbox:
one-line errors, an IAM user's keys, and the representative check call.

Plain functions of a boto3 client: no step context, no action registry, so any module in
`steps` may import this one without a cycle. botocore is imported inside the functions
that need it, so importing this module stays cheap (`handrail --help`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steps.clock import human_duration, iso, utc

READ_ONLY_PREFIXES = ("List", "Get", "Describe", "Head")


class AwsCallFailed(Exception):
    """An AWS call failed; `str()` is the one line for the operator."""


# -- errors -------------------------------------------------------------------------------------


def aws_error(exc: BaseException) -> str:
    """One line for any botocore failure."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', 'Error')}: {err.get('Message', '').strip() or 'no message'}"
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return "no AWS credentials found (set AWS_PROFILE, or pass --profile)"
    return f"{name}: {exc}"


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


# -- an IAM user's access keys ----------------------------------------------------------------


@dataclass
class KeyInfo:
    key_id: str
    status: str
    created: datetime
    last_used: datetime | None
    service: str | None
    region: str | None

    def describe(self, now: datetime) -> str:
        age = human_duration((now - self.created).total_seconds())
        return f"{self.key_id}  {self.status:<8}  created {iso(self.created)} ({age} ago)  last used {self.last_used_text(now)}"

    def last_used_text(self, now: datetime) -> str:
        if self.last_used is None:
            return "never"
        ago = human_duration((now - self.last_used).total_seconds())
        where = ", ".join(x for x in (self.service, self.region) if x and x != "N/A")
        return f"{iso(self.last_used)} ({ago} ago{', ' + where if where else ''})"


def list_keys(iam: Any, user: str, *, with_last_used: bool = True, account: str = "?") -> list[KeyInfo]:
    """The user's keys, oldest first. `account` only names the account in an error."""
    try:
        metadata = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            raise AwsCallFailed(f"IAM user {user!r} does not exist in account {account}") from None
        raise AwsCallFailed(f"list-access-keys for {user}: {aws_error(exc)}") from None
    keys = []
    for item in metadata:
        last_used = service = region = None
        if with_last_used:
            last_used, service, region = key_last_used(iam, item["AccessKeyId"])
        keys.append(KeyInfo(item["AccessKeyId"], item["Status"], utc(item["CreateDate"]), last_used, service, region))
    return sorted(keys, key=lambda k: k.created)


def key_last_used(iam: Any, key_id: str) -> tuple[datetime | None, str | None, str | None]:
    try:
        info = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    except Exception as exc:
        raise AwsCallFailed(f"get-access-key-last-used {key_id}: {aws_error(exc)}") from None
    when = info.get("LastUsedDate")
    return (utc(when) if when else None), info.get("ServiceName"), info.get("Region")


def find_key(keys: list[KeyInfo], key_id: str | None) -> KeyInfo | None:
    return next((k for k in keys if k.key_id == key_id), None)


def set_key_status(iam: Any, user: str, key_id: str, status: str) -> None:
    try:
        iam.update_access_key(UserName=user, AccessKeyId=key_id, Status=status)
    except Exception as exc:
        raise AwsCallFailed(f"update-access-key {key_id} --status {status}: {aws_error(exc)}") from None


def delete_key(iam: Any, user: str, key_id: str) -> None:
    try:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return  # already gone: the goal is reached
        raise AwsCallFailed(f"delete-access-key {key_id}: {aws_error(exc)}") from None


# -- the representative call ---------------------------------------------------------------


@dataclass(frozen=True)
class CheckCall:
    """A read-only call the target user is known to be allowed to make, e.g.
    `s3:ListObjectsV2 Bucket=raxx-backups`."""

    service: str
    operation: str
    params: dict[str, Any]

    def cli(self) -> str:
        from botocore import xform_name

        args = " ".join(f"--{xform_name(k, '-')} {shlex.quote(str(v))}" for k, v in self.params.items())
        service = "s3api" if self.service == "s3" else self.service
        return f"aws {service} {xform_name(self.operation, '-')} {args}".strip()


def parse_check_call(text: str) -> CheckCall:
    """Parse `service:Operation Key=Value ...`; raise ValueError with a one-line reason."""
    parts = shlex.split(text)
    if not parts or ":" not in parts[0]:
        raise ValueError(f"{text!r}: write it as service:Operation Key=Value, e.g. 's3:ListObjectsV2 Bucket=raxx-backups'")
    service, operation = parts[0].split(":", 1)
    if not service or not operation[:1].isupper():
        raise ValueError(f"{text!r}: the operation is CamelCase, as in the API reference (ListObjectsV2)")
    if not operation.startswith(READ_ONLY_PREFIXES):
        raise ValueError(f"{text!r}: only read-only calls ({', '.join(READ_ONLY_PREFIXES)}...) may serve as a check")
    params: dict[str, Any] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"{text!r}: parameter {part!r} is not Key=Value")
        params[key] = int(value) if value.isdigit() else value
    return CheckCall(service, operation, params)


def check_call_field(value: str | None) -> str | None:
    """A pydantic field validator for `check_call` fields (inventory, scenarios)."""
    if value is not None:
        parse_check_call(value)
    return value


def run_check_call(client: Any, call: CheckCall) -> str:
    """Make the call with `client` (its failure propagates, for the caller to word); a
    short summary of the answer: the length of each list in it."""
    from botocore import xform_name

    response = getattr(client, xform_name(call.operation))(**call.params)
    response.pop("ResponseMetadata", None)
    counts = [f"{len(v)} {k}" for k, v in response.items() if isinstance(v, list)]
    return ", ".join(counts) or "ok"
