"""CloudTrail evidence: who used an access key, and whether AWS logged handrail's own writes.

Plain functions of boto3 clients and plain data, like `steps.aws`: no step context, so
the actions, the `handrail evidence` command and a session's report all read the same
findings. What a session found is kept in its journal facts (`FACTS`), as JSON without a
secret (CloudTrail never logs one; the redactor scrubs every string anyway).

- `enabled_regions`: the regions LookupEvents must be asked in (event history is regional).
- `lookup`: LookupEvents by one attribute in every region, paginated, at most `RATE`
  requests per second per region (a token bucket on the session's clock, so the
  simulated clock can fast-forward it), over a window.
- `callers`: events grouped by caller (source IP, user agent), each matched against the
  inventory's consumers (`Matcher`: the `source_ips` and `user_agents` a consumer declares).
- `session_findings`: everything a session recorded, as plain data (for `handrail
  evidence` and the session report).

handrail's own calls carry `OWN_AGENT` in their user agent (every client the wiring
builds adds it), so they are told apart from a consumer's.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from steps.aws import aws_error, error_code
from steps.clock import Clock, iso, parse_iso, utc
from steps.secrets import contains_secret, redact

RATE = 2.0  # LookupEvents: AWS allows 2 requests per second per region and account
PAGE = 50  # LookupEvents' largest page
MAX_EVENTS = 500  # per region and lookup: beyond it the lookup says it stopped short
DELIVERY_DELAY = 15 * 60.0  # CloudTrail delivers an event "within about 15 minutes"
OWN_AGENT = "handrail/"  # in the user agent of every call handrail makes
KEPT = 25  # events kept per finding in the journal (counts are kept whole)
PRE_WINDOW = 7 * 86400.0

# The writes of a rotation that CloudTrail must show (the IAM events of the session).
WRITES = ("CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey", "TagUser", "UntagUser")

# Journal facts holding a session's findings (JSON).
FACT_CALLERS = "cloudtrail:callers"  # step 1: who used the old key in the last 7 days
FACT_AFTER = "cloudtrail:after_deactivation"  # step 7b: uses of the old key after its deactivation
FACT_CORROBORATION = "cloudtrail:corroboration"  # step 8: the session's own writes, as CloudTrail logged them
FACT_PARTIAL = "cloudtrail:partial"  # why the evidence was partial (one line per phase)
EXPECT_PREFIX = "cloudtrail:expect:"  # one per write the session made: `{event, user, key_id, at}`
FACTS = (FACT_CALLERS, FACT_AFTER, FACT_CORROBORATION)

_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException", "OptInRequired")


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrailEvent:
    event_id: str
    name: str
    at: datetime
    region: str
    source_ip: str
    user_agent: str
    key_id: str
    user: str = ""  # the IAM user the request names (requestParameters.userName)
    target_key: str = ""  # the access key it names (request, or a CreateAccessKey's response)
    status: str = ""  # UpdateAccessKey's status

    @property
    def own(self) -> bool:
        return OWN_AGENT in self.user_agent

    def as_dict(self) -> dict[str, str]:
        out = {
            "event_id": self.event_id,
            "event": self.name,
            "time": iso(self.at),
            "region": self.region,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "access_key_id": self.key_id,
        }
        out.update({k: v for k, v in (("user", self.user), ("target_key", self.target_key), ("status", self.status)) if v})
        return out

    def line(self) -> str:
        return f"{iso(self.at)}  {self.name}  {self.region}  from {self.source_ip}  ({self.user_agent})"

    @classmethod
    def parse(cls, item: Mapping[str, Any], region: str) -> TrailEvent:
        """One LookupEvents entry. Only named fields are read from the raw record: the
        request's user, key and status, never a value that could hold a secret."""
        try:
            raw = json.loads(item.get("CloudTrailEvent") or "{}")
        except ValueError:
            raw = {}
        request = raw.get("requestParameters") or {}
        response = raw.get("responseElements") or {}
        created = response.get("accessKey") if isinstance(response, dict) else None
        when = item.get("EventTime") or raw.get("eventTime")
        at = utc(when) if isinstance(when, datetime) else parse_iso(str(when))

        values = {
            "event_id": (item.get("EventId") or raw.get("eventID"), 64),
            "name": (item.get("EventName") or raw.get("eventName"), 128),
            "region": (raw.get("awsRegion") or region, 32),
            "source_ip": (raw.get("sourceIPAddress") or "?", 128),
            "user_agent": (raw.get("userAgent") or "?", 300),
            "key_id": (item.get("AccessKeyId") or (raw.get("userIdentity") or {}).get("accessKeyId"), 32),
            "user": (request.get("userName") if isinstance(request, dict) else "", 64),
            "target_key": (
                (request.get("accessKeyId") if isinstance(request, dict) else None)
                or (created.get("accessKeyId") if isinstance(created, dict) else None),
                32,
            ),
            "status": (request.get("status") if isinstance(request, dict) else "", 16),
        }
        texts = {name: str(value or "") for name, (value, _) in values.items()}
        # Every field scrubbed; asked once for them all (a lookup parses hundreds of
        # events): a secret in any field is in their join, and then each is scrubbed.
        if contains_secret("\n".join(texts.values())):
            texts = {name: redact(text) for name, text in texts.items()}
        return cls(at=at, **{name: texts[name][:limit] for name, (_, limit) in values.items()})


# -- regions and the rate limit ---------------------------------------------------------------


def enabled_regions(ec2: Any) -> list[str]:
    """The account's enabled regions: opt-in-not-required, or opted in."""
    answer = ec2.describe_regions(AllRegions=True)
    return sorted(
        r["RegionName"]
        for r in answer.get("Regions", [])
        if r.get("OptInStatus", "opt-in-not-required") in ("opt-in-not-required", "opted-in")
    )


class TokenBucket:
    """At most `rate` takes per second, on `clock` (a simulated clock's sleep advances it).
    A capacity of one: no burst, so no one-second window ever holds more than `rate`."""

    def __init__(self, clock: Clock, rate: float = RATE) -> None:
        self.clock = clock
        # 2% over the bare interval: what happens between a take and the request's
        # sending (signing it) must not squeeze two requests closer than the limit.
        self.interval = 1.02 / rate
        self._next = clock.monotonic()

    def take(self) -> float:
        """Wait for a token; returns the seconds waited. The next token is counted from
        when this one was handed out, not from when it was due."""
        wait = max(0.0, self._next - self.clock.monotonic())
        if wait > 0:
            self.clock.sleep(wait)
        self._next = self.clock.monotonic() + self.interval
        return wait


# -- a lookup ---------------------------------------------------------------------------------


@dataclass
class Lookup:
    """What LookupEvents answered for one attribute over a window, in every region asked."""

    attribute: str
    value: str
    start: datetime
    end: datetime
    regions: list[str] = field(default_factory=list)
    events: list[TrailEvent] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # region -> one line
    unavailable: str | None = None  # CloudTrail could not be asked at all: the one line why
    truncated: list[str] = field(default_factory=list)  # regions where it stopped at MAX_EVENTS
    calls: int = 0
    waited: float = 0.0  # seconds the rate limit waited

    @property
    def partial(self) -> str | None:
        """Why these events may not be all of them, or None."""
        if self.unavailable:
            return self.unavailable
        parts = []
        if self.failed:
            parts.append("not looked up in " + ", ".join(f"{r} ({m})" for r, m in sorted(self.failed.items())))
        if self.truncated:
            parts.append(f"stopped at {MAX_EVENTS} events in {', '.join(self.truncated)}")
        return "; ".join(parts) or None


ClientFor = Callable[[str], Any]  # region -> a boto3 cloudtrail client of that region


def lookup(
    client_for: ClientFor,
    regions: Iterable[str],
    attribute: str,
    value: str,
    start: datetime,
    end: datetime,
    clock: Clock,
    *,
    max_events: int = MAX_EVENTS,
    rate: float = RATE,
) -> Lookup:
    """LookupEvents by `attribute` = `value` over [start, end] in each region, newest
    first, page after page. A denial stops at once (it is the account's, not a region's);
    a region that cannot be reached is named and the others still asked."""
    found = Lookup(attribute, value, start, end, list(regions))
    for region in found.regions:
        bucket = TokenBucket(clock, rate)
        token: str | None = None
        seen = 0
        try:
            client = client_for(region)
            while True:
                found.waited += bucket.take()
                kwargs: dict[str, Any] = {
                    "LookupAttributes": [{"AttributeKey": attribute, "AttributeValue": value}],
                    "StartTime": start,
                    "EndTime": end,
                    "MaxResults": PAGE,
                }
                if token:
                    kwargs["NextToken"] = token
                answer = client.lookup_events(**kwargs)
                found.calls += 1
                for item in answer.get("Events", []):
                    found.events.append(TrailEvent.parse(item, region))
                    seen += 1
                token = answer.get("NextToken")
                if not token:
                    break
                if seen >= max_events:
                    found.truncated.append(region)
                    break
        except Exception as exc:
            line = aws_error(exc)
            if error_code(exc) in _DENIED and region == found.regions[0]:
                # Denied in the home region: the operator may not look up at all. Denied
                # elsewhere (an SCP closing unused regions): that region is named, and
                # the evidence is partial.
                found.unavailable = f"CloudTrail LookupEvents was denied ({line})"
                break
            found.failed[region] = line
            if not error_code(exc) and len(found.failed) == 1 and region == found.regions[0]:
                # The first region could not even be connected to: the network, not a
                # region, is the trouble. Asking every other region would only wait.
                found.unavailable = f"CloudTrail could not be reached ({line})"
                break
    if found.regions and len(found.failed) == len(found.regions):
        first = next(iter(found.failed.values()))
        found.unavailable = f"CloudTrail could not be reached ({first})"
    found.events.sort(key=lambda e: e.at, reverse=True)
    return found


# -- callers and the inventory's consumers ---------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """How a consumer shows in CloudTrail: the inventory's `source_ips` (addresses or
    CIDR blocks) and `user_agents` (glob patterns). A caller matches when every kind the
    consumer declares matches; a consumer declaring neither matches no caller."""

    name: str
    source_ips: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()

    @property
    def declares(self) -> bool:
        return bool(self.source_ips or self.user_agents)

    def matches(self, source_ip: str, user_agent: str) -> bool:
        if not self.declares:
            return False
        if self.source_ips and not any(ip_in(source_ip, block) for block in self.source_ips):
            return False
        return not self.user_agents or any(fnmatch.fnmatchcase(user_agent, p) for p in self.user_agents)


def ip_in(address: str, block: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(block, strict=False)
    except ValueError:  # "AWS Internal", a service name: no address to match
        return False


@dataclass
class Caller:
    source_ip: str
    user_agent: str
    events: dict[str, int] = field(default_factory=dict)
    regions: set[str] = field(default_factory=set)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    count: int = 0
    consumer: str | None = None  # the inventory consumer it matches; None: a forgotten consumer?

    def add(self, event: TrailEvent) -> None:
        self.count += 1
        self.events[event.name] = self.events.get(event.name, 0) + 1
        self.regions.add(event.region)
        self.first_seen = event.at if self.first_seen is None else min(self.first_seen, event.at)
        self.last_seen = event.at if self.last_seen is None else max(self.last_seen, event.at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "events": dict(sorted(self.events.items())),
            "regions": sorted(self.regions),
            "count": self.count,
            "first_seen": iso(self.first_seen) if self.first_seen else None,
            "last_seen": iso(self.last_seen) if self.last_seen else None,
            "consumer": self.consumer,
        }

    def line(self) -> str:
        names = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in sorted(self.events.items()))
        who = f"= {self.consumer}" if self.consumer else "matches NO consumer in the inventory"
        last = iso(self.last_seen) if self.last_seen else "?"
        return f"{self.source_ip} ({self.user_agent}): {names} in {', '.join(sorted(self.regions))}; last seen {last}; {who}"


def callers(events: Iterable[TrailEvent], matchers: Iterable[Matcher]) -> list[Caller]:
    """Each distinct (source IP, user agent) of the events, handrail's own left out, most
    recent first, matched against the consumers."""
    matchers = list(matchers)
    by: dict[tuple[str, str], Caller] = {}
    for event in events:
        if event.own:
            continue
        caller = by.setdefault((event.source_ip, event.user_agent), Caller(event.source_ip, event.user_agent))
        caller.add(event)
    for caller in by.values():
        caller.consumer = next((m.name for m in matchers if m.matches(caller.source_ip, caller.user_agent)), None)
    return sorted(by.values(), key=lambda c: c.last_seen or datetime.min, reverse=True)


# -- what a session found, as plain data ------------------------------------------------------


def lookup_dict(found: Lookup) -> dict[str, Any]:
    return {
        "attribute": found.attribute,
        "value": found.value,
        "window": {"start": iso(found.start), "end": iso(found.end)},
        "regions": found.regions,
        "calls": found.calls,
        "partial": found.partial,
        "events_total": len(found.events),
        "events": [e.as_dict() for e in found.events[:KEPT]],
    }


def inconclusive_until(deactivated: datetime) -> datetime:
    return deactivated + timedelta(seconds=DELIVERY_DELAY)


def session_findings(facts: Mapping[str, str]) -> dict[str, Any]:
    """A session's CloudTrail findings from its journal facts, as plain data:

    - `callers` (step 1): who used the old key in the 7 days before the rotation, each
      matched to a consumer or not (`unmatched` lists those that match none);
    - `after_deactivation` (step 7b): every use of the old key after its deactivation,
      whether it was conclusive yet (CloudTrail's delivery delay);
    - `corroboration` (step 8): each write the session made and the CloudTrail event id
      that shows it, or `missing` / `pending` (still within the delivery delay);
    - `partial`: why any of it is partial (CloudTrail off, denied or unreachable: then
      the last use alone decided), else an empty list;
    - `expected`: the writes the session made, as it recorded them.
    A phase that has not run is None."""
    out: dict[str, Any] = {}
    for name, fact in (("callers", FACT_CALLERS), ("after_deactivation", FACT_AFTER), ("corroboration", FACT_CORROBORATION)):
        raw = facts.get(fact)
        out[name] = json.loads(raw) if raw else None
    out["partial"] = [line for line in (facts.get(FACT_PARTIAL) or "").split("\n") if line]
    out["expected"] = sorted(
        (json.loads(v) for k, v in facts.items() if k.startswith(EXPECT_PREFIX)), key=lambda e: (e.get("at") or "", e.get("event") or "")
    )
    return out


def add_partial(facts: Mapping[str, str], phase: str, why: str) -> str:
    """The FACT_PARTIAL value with `phase: why` added (once)."""
    lines = [line for line in (facts.get(FACT_PARTIAL) or "").split("\n") if line and not line.startswith(f"{phase}: ")]
    return "\n".join([*lines, f"{phase}: {why}"])


def to_text(session_id: str, findings: Mapping[str, Any]) -> list[str]:
    """`handrail evidence` in lines."""
    lines = [f"CloudTrail evidence of session {session_id}"]
    pre = findings.get("callers")
    lines.append("")
    lines.append("Before the rotation (step 1): who used the old key in the last 7 days")
    if pre is None:
        lines.append("  not looked up (step 1 has not run with CloudTrail)")
    else:
        lines += _lookup_head(pre)
        for c in pre.get("callers", []):
            lines.append("  " + _caller_line(c))
        if not pre.get("callers"):
            lines.append("  no caller but handrail itself")
    after = findings.get("after_deactivation")
    lines.append("")
    lines.append("Before the delete (step 7b): uses of the old key after its deactivation")
    if after is None:
        lines.append("  not looked up (step 7b has not run with CloudTrail)")
    else:
        lines += _lookup_head(after)
        if after.get("inconclusive_until"):
            lines.append(f"  NOT YET CONCLUSIVE: CloudTrail may deliver events until {after['inconclusive_until']}")
        for e in after.get("uses", []):
            lines.append(f"  USED {e['time']}  {e['event']}  {e['region']}  from {e['source_ip']}  ({e['user_agent']})")
        if not after.get("uses"):
            lines.append("  no use after the deactivation")
    cor = findings.get("corroboration")
    lines.append("")
    lines.append("After the rotation (step 8): the session's writes, as CloudTrail logged them")
    if cor is None:
        lines.append("  not looked up (step 8 has not run with CloudTrail)")
    else:
        lines += _lookup_head(cor)
        if cor.get("by_event_name"):
            lines.append(f"  then by EventName ({', '.join(cor['by_event_name'])}) for the writes not found by resource name")
        for item in cor.get("writes", []):
            what = f"{item['event']} {item.get('key_id') or item.get('user') or ''}".rstrip()
            if item.get("event_id"):
                lines.append(f"  {what} at {item['at']}: CloudTrail event {item['event_id']}")
            else:
                lines.append(f"  {what} at {item['at']}: {item['state'].upper()}")
    if findings.get("partial"):
        lines.append("")
        lines.append("PARTIAL EVIDENCE (the last use alone decided):")
        lines += [f"  {line}" for line in findings["partial"]]
    return lines


def _lookup_head(found: Mapping[str, Any]) -> list[str]:
    window = found.get("window") or {}
    regions = found.get("regions") or []
    head = f"  LookupEvents {found.get('attribute')}={found.get('value')} from {window.get('start')} to {window.get('end')}"
    head += f" in {len(regions)} region(s), {found.get('calls', 0)} call(s)"
    lines = [head]
    if found.get("partial"):
        lines.append(f"  partial: {found['partial']}")
    return lines


def _caller_line(c: Mapping[str, Any]) -> str:
    names = ", ".join(f"{n} x{k}" if k > 1 else n for n, k in (c.get("events") or {}).items())
    who = f"= {c['consumer']}" if c.get("consumer") else "matches NO consumer"
    return f"{c['source_ip']} ({c['user_agent']}): {names} in {', '.join(c.get('regions') or [])}; last seen {c.get('last_seen')}; {who}"
