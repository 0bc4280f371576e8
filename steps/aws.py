"""AWS helpers shared by the IAM actions, the wiring, the inventory and the sandbox:
one-line errors, an IAM user's keys, and the representative check call.

Plain functions of a boto3 client: no step context, no action registry, so any module in
`steps` may import this one without a cycle. botocore is imported inside the functions
that need it, so importing this module stays cheap (`handrail --help`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steps.clock import human_duration, iso, parse_iso, utc

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

    def describe(self, now: datetime, last: LastUse | None = None) -> str:
        """One line; with `last` (see `judge_last_use`), the last use as handrail judges it."""
        age = human_duration((now - self.created).total_seconds())
        used = last.text(now) if last is not None else self.last_used_text(now)
        return f"{self.key_id}  {self.status:<8}  created {iso(self.created)} ({age} ago)  last used {used}"

    @property
    def use(self) -> Use | None:
        """The last use AWS reports (whoever made it)."""
        return Use(self.last_used, self.service, self.region) if self.last_used else None

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


# -- last use: a consumer's, or handrail's own ------------------------------------------------
#
# AWS keeps one last use per key, so a call handrail signs with a key overwrites the use
# of whatever consumer used it before. handrail therefore reads a key's last use before it
# signs with it, and records the interval of its own call. Facts, per key:
#   use_seen:<key id>  the latest use by anything but handrail it has read (JSON, or "never")
#   own_use:<key id>   its own latest accepted call with the key: "<start>/<end>" (ISO 8601
#                      interval, full precision, on the session's clock)


def iso_full(dt: datetime) -> str:
    """ISO 8601 at full precision (microseconds): comparisons are never cut to the second."""
    return utc(dt).isoformat(timespec="microseconds").replace("+00:00", "Z")


def floor_second(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


@dataclass(frozen=True)
class Use:
    """One use of a key as get-access-key-last-used reports it."""

    at: datetime
    service: str | None = None
    region: str | None = None

    def text(self, now: datetime) -> str:
        ago = human_duration((now - self.at).total_seconds())
        where = ", ".join(x for x in (self.service, self.region) if x and x != "N/A")
        return f"{iso(self.at)} ({ago} ago{', ' + where if where else ''})"

    def fact(self) -> str:
        return json.dumps({"at": iso_full(self.at), "service": self.service, "region": self.region})

    @classmethod
    def from_fact(cls, text: str | None) -> Use | None:
        if not text or text == "never":
            return None
        data = json.loads(text)
        return cls(parse_iso(data["at"]), data.get("service"), data.get("region"))


def latest(*uses: Use | None) -> Use | None:
    known = [u for u in uses if u is not None]
    return max(known, key=lambda u: u.at) if known else None


@dataclass(frozen=True)
class OwnUse:
    """handrail's own accepted call with a key: it started and ended at these instants."""

    start: datetime
    end: datetime

    def covers(self, at: datetime) -> bool:
        """Is a reported last use at `at` this call? AWS stamps its own instant between the
        call's start and end, and may cut it to the second (the sandbox does not): so from
        the start's second to the end. A consumer's use later in the end's second would be
        taken for handrail's own; nothing finer can tell them apart."""
        return floor_second(self.start) <= at <= self.end

    def fact(self) -> str:
        return f"{iso_full(self.start)}/{iso_full(self.end)}"

    @classmethod
    def from_fact(cls, text: str | None) -> OwnUse | None:
        if not text:
            return None
        start, _, end = text.partition("/")
        return cls(parse_iso(start), parse_iso(end or start))


@dataclass(frozen=True)
class LastUse:
    """A key's last use as handrail judges it: `consumer` is the latest use by anything but
    handrail that it knows of; `own` is set when AWS's last use is handrail's own call."""

    consumer: Use | None
    own: Use | None = None

    def text(self, now: datetime) -> str:
        theirs = self.consumer.text(now) if self.consumer else "never"
        if self.own is None:
            return theirs
        what = f"{self.own.service} call" if self.own.service and self.own.service != "N/A" else "call"
        return f"{theirs}; then handrail's own {what} at {iso_full(self.own.at)} (not a consumer's use)"


def judge_last_use(key_id: str, reported: Use | None, facts: Any) -> LastUse:
    """A key's last use as AWS `reported` it, with handrail's own calls told apart (facts above)."""
    seen = Use.from_fact(facts.get(f"use_seen:{key_id}"))
    own = OwnUse.from_fact(facts.get(f"own_use:{key_id}"))
    if reported is not None and own is not None and own.covers(reported.at):
        return LastUse(seen, reported)
    return LastUse(latest(reported, seen))


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
