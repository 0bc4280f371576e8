"""The sandbox's CloudTrail: what the SigV4 gate saw, served back by LookupEvents.

moto has no LookupEvents. The gate records every IAM and STS call it lets through (and
S3's ListBuckets; S3's object calls are data events, which event history does not keep):
the key that signed it, the operation, the region, and the simulated caller's source
address and user agent (each simulated consumer calls from its own `Caller`). An event
shows in LookupEvents `delay` simulated seconds after it happened (CloudTrail's delivery
delay). `mode` makes CloudTrail answer AccessDenied (`denied`) or not at all
(`unreachable`). DescribeRegions is answered here too (moto's EC2 takes seconds to load).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from steps.clock import Clock, iso

SERVED = ("cloudtrail", "ec2")  # answered here, counted apart from the rotation's calls
UNREACHABLE_URL = "http://127.0.0.1:9"  # the discard port: nothing listens
DEFAULT_DELAY = 300.0  # five simulated minutes from the call to LookupEvents
MAX_KEPT = 20000  # events kept per account (the oldest go first)
SNAPSHOT_KEPT = 2000

# A commercial account: the 17 regions enabled by default, some opt-in ones left off,
# one opted in.
REGIONS: dict[str, str] = {
    **dict.fromkeys(
        [
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "ca-central-1",
            "sa-east-1",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "eu-central-1",
            "eu-north-1",
            "ap-south-1",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-southeast-1",
            "ap-southeast-2",
        ],
        "opt-in-not-required",
    ),
    "eu-south-1": "opted-in",
    "af-south-1": "not-opted-in",
    "ap-east-1": "not-opted-in",
    "me-south-1": "not-opted-in",
}

_RECORDED = {
    "iam": None,  # every IAM call (IAM events are global: logged in us-east-1)
    "sts": None,
    "s3": ("ListBuckets",),
}
_GLOBAL = ("iam",)
# LookupEvents' attributes -> the event's field. `Username` is the caller's; `ResourceName`
# is any name in the entry's Resources (the IAM user and access key a request names).
_FIELDS = {
    "AccessKeyId": "key",
    "EventName": "name",
    "Username": "user",
    "EventId": "id",
    "EventSource": "source",
    "ResourceName": "resource",
}
_READ_ONLY = ("Get", "List", "Describe", "Head")


@dataclass(frozen=True)
class Caller:
    """Where a simulated call comes from: a source address and a user agent."""

    source_ip: str
    user_agent: str
    own: bool = False  # handrail's own clients: botocore's agent plus handrail's mark

    def agent(self) -> dict[str, str]:
        return {"user_agent_extra": self.user_agent} if self.own else {"user_agent": self.user_agent}

    def attach(self, client: Any) -> None:
        """The address goes in a header only the gate reads (unsigned, after signing)."""
        ip = self.source_ip

        def add(request: Any, **_: Any) -> None:
            request.headers["x-sandbox-source-ip"] = ip

        client.meta.events.register("before-send", add)


def _own_agent() -> str:
    from steps import __version__
    from steps.cloudtrail import OWN_AGENT

    return f"{OWN_AGENT}{__version__}"


# Documentation addresses (RFC 5737): nothing real.
HANDRAIL = Caller("198.51.100.10", _own_agent(), own=True)  # the operator's workstation
UNKNOWN = Caller("192.0.2.200", "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64 prompt/off")
HEROKU = Caller("203.0.113.10", "aws-sdk-ruby3/3.190.0 ua/2.0 api/sts#1.11.0 os/linux md/x86_64 lang/ruby#3.2.2 md/3.2.2")
GITHUB = Caller(
    "192.0.2.40", "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-azure exe/x86_64.ubuntu.22 prompt/off command/sts.get-caller-identity"
)
SSH = Caller("198.51.100.25", "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.1.0 lang/python#3.11.2 raxx-vault/2.3")
FORGOTTEN = Caller("192.0.2.99", "aws-sdk-go/1.50.0 (go1.21.6; linux; amd64) nightly-report/1.4")

# What the sandbox's inventory declares of each kind of consumer (steps.inventory._Seen).
# (source_ips, user_agents)
DECLARED: dict[str, tuple[list[str], list[str]]] = {
    "heroku": (["203.0.113.0/26"], ["aws-sdk-ruby3/*"]),
    "github": (["192.0.2.32/27"], ["aws-cli/*"]),
    "ssh": (["198.51.100.25"], ["*raxx-vault/*"]),
}
CALLERS = {"heroku": HEROKU, "github": GITHUB, "ssh": SSH}


class Trail:
    """One account's event history."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.delay = DEFAULT_DELAY
        self.mode = "on"  # on | denied | unreachable
        self.denied_regions: set[str] = set()  # an SCP closing these regions: AccessDenied there only
        self._events: list[dict[str, Any]] = []
        # LookupEvents asks by one attribute in one region: the events are indexed by
        # (region, field, value) and by region, as (sequence number, event); those before
        # `_first` were dropped (MAX_KEPT) and are skipped. A lookup reads its own few
        # events, not the whole history (which grows with a campaign's fleet).
        self._index: dict[tuple[str, str, str], list[tuple[int, dict[str, Any]]]] = {}
        self._by_region: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._first = 0
        self._next = 0
        # LookupEvents' entry of an event, made once (an event does not change once
        # logged; a fleet's corroborations page through the same events again and again).
        self._entries: dict[int, dict[str, Any]] = {}  # sequence number -> entry
        self.lookups: list[tuple[str, str, float]] = []  # (region, attribute value, simulated monotonic time)
        self._lock = threading.Lock()

    @staticmethod
    def records(service: str, operation: str) -> bool:
        if service not in _RECORDED:
            return False
        only = _RECORDED[service]
        return only is None or operation in only

    def record(
        self,
        world: Any,
        key: Any,
        service: str,
        operation: str,
        region: str,
        body: bytes,
        environ: dict[str, Any],
        status: int,
        created: str,
    ) -> None:
        request: dict[str, Any] = {}
        if service == "iam" and body:
            params = parse_qs(body.decode(errors="replace"))
            # Named fields only: nothing a request could carry a secret in.
            for name, field in (("UserName", "userName"), ("AccessKeyId", "accessKeyId"), ("Status", "status")):
                if name in params:
                    request[field] = params[name][0]
            tag_keys = sorted({v[0] for k, v in params.items() if k.endswith(".Key") or k.startswith("TagKeys.member")})
            if tag_keys:
                request["tagKeys"] = tag_keys
        self.add(
            {
                "id": str(uuid.uuid4()),
                "name": operation,
                "source": f"{service}.amazonaws.com",
                "at": self.clock.now(),
                "region": "us-east-1" if service in _GLOBAL else region,
                "ip": environ.get("HTTP_X_SANDBOX_SOURCE_IP") or environ.get("REMOTE_ADDR", "127.0.0.1"),
                "ua": environ.get("HTTP_USER_AGENT", ""),
                "key": key.access_key_id,
                "user": key.user_name,
                "account": world.account_id,
                "request": request,
                "created": created,
                "error": "" if 200 <= status < 300 else f"HTTP {status}",
            }
        )

    @property
    def events(self) -> list[dict[str, Any]]:
        return self._events

    @events.setter
    def events(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._events, self._index, self._by_region, self._entries = [], {}, {}, {}
            self._first = self._next = 0
            for event in events:
                self._add(event)

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._add(event)

    def _add(self, event: dict[str, Any]) -> None:
        seq, self._next = self._next, self._next + 1
        self._events.append(event)
        item = (seq, event)
        region = event["region"]
        self._by_region.setdefault(region, []).append(item)
        for name in _FIELDS.values():
            for value in _resource_names(event) if name == "resource" else (event[name],):
                self._index.setdefault((region, name, value), []).append(item)
        if len(self._events) > MAX_KEPT:
            dropped = len(self._events) - MAX_KEPT
            del self._events[:dropped]
            self._first += dropped
            if len(self._entries) > MAX_KEPT:
                self._entries = {seq: entry for seq, entry in self._entries.items() if seq >= self._first}

    def _candidates(self, region: str, field: str | None, value: str | None) -> list[tuple[int, dict[str, Any]]]:
        """The kept events of `region` (with `field` == `value`), oldest first. Call with the lock held."""
        if field is None:
            items = self._by_region.get(region, [])
        else:
            items = self._index.get((region, field, value), []) if value is not None else []
        if items and items[0][0] < self._first:
            items[:] = [(seq, e) for seq, e in items if seq >= self._first]
        return items

    def seed(self, key_id: str, user: str, account: str, caller: Caller, times: Iterable[datetime], region: str = "us-east-1") -> None:
        """Past calls of a consumer (a scenario's history before the session)."""
        for at in times:
            self.add(
                {
                    "id": str(uuid.uuid4()),
                    "name": "GetCallerIdentity",
                    "source": "sts.amazonaws.com",
                    "at": at,
                    "region": region,
                    "ip": caller.source_ip,
                    "ua": caller.user_agent,
                    "key": key_id,
                    "user": user,
                    "account": account,
                    "request": {},
                    "created": "",
                    "error": "",
                }
            )

    # -- LookupEvents -----------------------------------------------------------------------

    def lookup(self, region: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        attributes = params.get("LookupAttributes") or []
        if len(attributes) > 1:
            return 400, _error("InvalidLookupAttributesException", "You cannot specify more than one lookup attribute.")
        now = self.clock.now()
        token = params.get("NextToken")
        if token:
            try:
                state = json.loads(base64.b64decode(token))
                offset, cutoff = int(state["o"]), datetime.fromisoformat(state["c"])
            except (ValueError, KeyError, TypeError):
                return 400, _error("InvalidNextTokenException", "Invalid NextToken.")
        else:
            offset, cutoff = 0, now - timedelta(seconds=self.delay)
        start = _time(params.get("StartTime"), now - timedelta(days=90))
        end = min(_time(params.get("EndTime"), now), cutoff)
        key, value = (attributes[0].get("AttributeKey"), attributes[0].get("AttributeValue")) if attributes else (None, None)
        field = _FIELDS.get(key or "")
        if key and field is None:
            return 400, _error("InvalidLookupAttributesException", f"Lookup attribute {key} is not supported by the sandbox.")
        with self._lock:
            self.lookups.append((region, value or "", self.clock.monotonic()))
            chosen = [(seq, e) for seq, e in self._candidates(region, field, value) if start <= e["at"] <= end and not e["error"]]
        chosen.sort(key=lambda item: item[1]["at"], reverse=True)
        size = max(1, min(50, int(params.get("MaxResults") or 50)))
        page = chosen[offset : offset + size]
        out: dict[str, Any] = {"Events": [self._entry_of(seq, e) for seq, e in page]}
        if offset + size < len(chosen):
            out["NextToken"] = base64.b64encode(json.dumps({"o": offset + size, "c": cutoff.isoformat()}).encode()).decode()
        return 200, out

    def _entry_of(self, seq: int, e: dict[str, Any]) -> dict[str, Any]:
        entry = self._entries.get(seq)
        if entry is None:
            entry = self._entries[seq] = self._entry(e)
        return entry

    def _entry(self, e: dict[str, Any]) -> dict[str, Any]:
        read_only = e["name"].startswith(_READ_ONLY)
        arn = f"arn:aws:iam::{e['account']}:user/{e['user']}"
        record: dict[str, Any] = {
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "arn": arn, "accountId": e["account"], "accessKeyId": e["key"], "userName": e["user"]},
            "eventTime": iso(e["at"]),
            "eventSource": e["source"],
            "eventName": e["name"],
            "awsRegion": e["region"],
            "sourceIPAddress": e["ip"],
            "userAgent": e["ua"],
            "requestParameters": e["request"] or None,
            # AWS never logs a created key's secret: its id, status and user only.
            "responseElements": {
                "accessKey": {"accessKeyId": e["created"], "status": "Active", "userName": e["request"].get("userName", "")}
            }
            if e["created"]
            else None,
            "eventID": e["id"],
            "readOnly": read_only,
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": e["account"],
        }
        return {
            "EventId": e["id"],
            "EventName": e["name"],
            "ReadOnly": "true" if read_only else "false",
            "AccessKeyId": e["key"],
            "EventTime": e["at"].timestamp(),
            "EventSource": e["source"],
            "Username": e["user"],
            "Resources": [{"ResourceType": kind, "ResourceName": name} for kind, name in _resources(e)],
            "CloudTrailEvent": json.dumps(record),
        }

    # -- saving -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            kept = self.events[-SNAPSHOT_KEPT:]
        return {"delay": self.delay, "mode": self.mode, "events": [{**e, "at": e["at"].isoformat()} for e in kept]}

    def restore(self, data: dict[str, Any]) -> None:
        self.delay = float(data.get("delay", self.delay))
        self.mode = str(data.get("mode", self.mode))
        self.events = [{**e, "at": datetime.fromisoformat(e["at"])} for e in data.get("events", [])]


def _resources(e: dict[str, Any]) -> list[tuple[str, str]]:
    """What an event's Resources name, as CloudTrail's event history lists them for IAM:
    the user a request names and the access key it names (or creates)."""
    out = []
    if e["request"].get("userName"):
        out.append(("AWS::IAM::User", e["request"]["userName"]))
    if e["request"].get("accessKeyId") or e["created"]:
        out.append(("AWS::IAM::AccessKey", e["request"].get("accessKeyId") or e["created"]))
    return out


def _resource_names(e: dict[str, Any]) -> list[str]:
    return [name for _, name in _resources(e)]


def _time(value: Any, default: datetime) -> datetime:
    if value in (None, ""):
        return default
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _error(code: str, message: str) -> dict[str, Any]:
    return {"__type": code, "message": message}


def _describe_regions(body: bytes) -> str:
    params = parse_qs(body.decode(errors="replace"))
    every = params.get("AllRegions", ["false"])[0].lower() == "true"
    items = "".join(
        f"<item><regionName>{name}</regionName><regionEndpoint>ec2.{name}.amazonaws.com</regionEndpoint>"
        f"<optInStatus>{status}</optInStatus></item>"
        for name, status in sorted(REGIONS.items())
        if every or status != "not-opted-in"
    )
    return (
        '<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>{uuid.uuid4()}</requestId><regionInfo>{items}</regionInfo></DescribeRegionsResponse>"
    )


def serve(world: Any, service: str, operation: str, region: str, body: bytes, start_response: Callable[..., Any]) -> list[bytes]:
    """CloudTrail's LookupEvents and EC2's DescribeRegions, for the gate."""
    if service == "ec2":
        if operation != "DescribeRegions":
            status, text, kind = 400, "<Response><Errors><Error><Code>UnsupportedOperation</Code></Error></Errors></Response>", "text/xml"
        else:
            status, text, kind = 200, _describe_regions(body), "text/xml"
    else:
        kind = "application/x-amz-json-1.1"
        trail: Trail = world.trail
        if trail.mode == "denied" or region in trail.denied_regions:
            user = "handrail-operator"
            status, payload = (
                400,
                _error(
                    "AccessDeniedException",
                    f"User: arn:aws:iam::{world.account_id}:user/{user} is not authorized to perform: cloudtrail:LookupEvents "
                    "because no identity-based policy allows the cloudtrail:LookupEvents action",
                ),
            )
        elif operation != "LookupEvents":
            status, payload = 400, _error("UnsupportedOperationException", f"{operation} is not served by the sandbox")
        else:
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                params = {}
            status, payload = trail.lookup(region, params)
        text = json.dumps(payload)
    data = text.encode()
    start_response(f"{status} {'OK' if status == 200 else 'Bad Request'}", [("Content-Type", kind), ("Content-Length", str(len(data)))])
    return [data]
