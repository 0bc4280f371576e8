"""CloudTrail evidence for the rotation's steps (see steps.cloudtrail for the lookups).

- step 1: `callers_before` — who used the old key in the last 7 days, matched against the
  inventory's consumers; a caller that matches none is a warning the next change must be
  confirmed over (fact `ack_needed:forgotten-consumer`, see the engine);
- step 7b: `uses_after` — every use of the old key after its deactivation (a block);
- step 8: `corroborate` — the session's own writes (`expect`, recorded as they are made)
  looked up in CloudTrail, their event ids kept beside the audit record.

Where CloudTrail cannot be asked (denied, unreachable) each says so in one line, the
last use alone decides, and the session's facts record that the evidence was partial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from steps import cloudtrail as ct
from steps.actions.base import StepContext
from steps.aws import aws_error
from steps.clock import iso, parse_iso

HOME = "us-east-1"  # IAM and STS's global endpoint log there
_NEAR = 600.0  # seconds between a write and the event that shows it, at most
FORGOTTEN = "ack_needed:forgotten-consumer"


@dataclass
class Found:
    """What one phase found: lines for the step's evidence, facts for the journal."""

    lines: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    lookup: ct.Lookup | None = None

    @property
    def unavailable(self) -> bool:
        return self.lookup is None or self.lookup.unavailable is not None


def _regions(ctx: StepContext) -> tuple[list[str], str | None]:
    """The enabled regions, the home region first; if they cannot be listed, the home
    region alone, and why."""
    try:
        regions = ctx.wiring.enabled_regions()
    except Exception as exc:
        return [HOME], f"ec2 describe-regions: {aws_error(exc)}: looked in {HOME} only"
    return sorted(regions, key=lambda r: (r != HOME, r)), None


def _lookup(ctx: StepContext, attribute: str, value: str, start: datetime, end: datetime, regions: list[str] | None = None) -> ct.Lookup:
    note = None
    if regions is None:
        regions, note = _regions(ctx)
    found = ct.lookup(lambda region: ctx.wiring.aws_client("cloudtrail", region=region), regions, attribute, value, start, end, ctx.clock)
    if note and not found.unavailable:
        found.failed["other regions"] = note
    return found


def _partial(ctx: StepContext, facts: dict[str, str], phase: str, why: str) -> None:
    facts[ct.FACT_PARTIAL] = ct.add_partial({**ctx.facts, **facts}, phase, why)


def expect(ctx: StepContext, event: str, user: str, key_id: str = "", status: str = "") -> None:
    """Record a write this session just made, for step 8 to find in CloudTrail."""
    item = {"event": event, "user": user, "key_id": key_id, "status": status, "at": iso(ctx.now()), "step": ctx.step_id}
    ctx.record({f"{ct.EXPECT_PREFIX}{event}:{key_id or user}:{status}": json.dumps({k: v for k, v in item.items() if v})})


# -- step 1 ----------------------------------------------------------------------------------


def callers_before(ctx: StepContext, user: str, key_id: str) -> Found:
    now = ctx.now()
    out = Found()
    found = out.lookup = _lookup(ctx, "AccessKeyId", key_id, now - timedelta(seconds=ct.PRE_WINDOW), now)
    if found.unavailable:
        out.lines.append(f"CloudTrail: {found.unavailable}: the last use alone tells who used {key_id}")
        _partial(ctx, out.facts, "step 1", found.unavailable)
        out.facts[ct.FACT_CALLERS] = json.dumps({**ct.lookup_dict(found), "callers": [], "unmatched": 0})
        return out
    entry = ctx.wiring.entry(user)
    consumers = list(entry.consumers) if entry is not None else []
    matchers = [c.matcher(c.name) for c in consumers]
    callers = ct.callers(found.events, matchers)
    unmatched = [c for c in callers if c.consumer is None]
    regions = len(found.regions)
    out.lines.append(
        f"CloudTrail: {len(callers)} caller(s) of {key_id} in the last 7 days "
        f"(LookupEvents in {regions} region(s), {found.calls} call(s); events of the last ~15 min may not show yet):"
    )
    out.lines += ["  " + c.line() for c in callers]
    own = sum(1 for e in found.events if e.own)
    if own:
        out.lines.append(f"  and {own} call(s) by handrail itself (its user agent says so): not a consumer's")
    if consumers and not any(m.declares for m in matchers):
        out.lines.append(f"  no consumer of {user} declares source_ips or user_agents in the inventory: no caller can be matched to one")
    if found.partial:
        out.lines.append(f"  partial: {found.partial}")
        _partial(ctx, out.facts, "step 1", found.partial)
    data = {**ct.lookup_dict(found), "callers": [c.as_dict() for c in callers], "unmatched": len(unmatched)}
    out.facts[ct.FACT_CALLERS] = json.dumps(data)
    if unmatched:
        who = "; ".join(f"{c.source_ip} ({c.user_agent}), last seen {iso(c.last_seen) if c.last_seen else '?'}" for c in unmatched)
        out.facts[FORGOTTEN] = (
            f"CloudTrail shows {len(unmatched)} caller(s) of the old key {key_id} that match no consumer in the inventory "
            f"(a forgotten consumer?): {who}. It will fail once the old key is deactivated; add it to the inventory, "
            "or go on knowing step 7b will block while it still uses the old key"
        )
    return out


# -- step 7b ---------------------------------------------------------------------------------


def uses_after(ctx: StepContext, key_id: str, deactivated: datetime) -> tuple[Found, list[ct.TrailEvent]]:
    """Every use of `key_id` after `deactivated` that was not handrail's own."""
    now = ctx.now()
    out = Found()
    found = out.lookup = _lookup(ctx, "AccessKeyId", key_id, deactivated, now)
    until = ct.inconclusive_until(deactivated)
    conclusive = now >= until
    if found.unavailable:
        out.lines.append(f"CloudTrail: {found.unavailable}: the last use alone decides")
        _partial(ctx, out.facts, "step 7b", found.unavailable)
        out.facts[ct.FACT_AFTER] = json.dumps({**ct.lookup_dict(found), "uses": [], "deactivated_at": iso(deactivated)})
        return out, []
    uses = [e for e in found.events if not e.own and e.at > deactivated]
    own = sum(1 for e in found.events if e.own)
    if uses:
        out.lines.append(f"CloudTrail: {len(uses)} use(s) of {key_id} after its deactivation at {iso(deactivated)}:")
        out.lines += ["  USED " + e.line() for e in uses[: ct.KEPT]]
        if len(uses) > ct.KEPT:
            out.lines.append(f"  ... and {len(uses) - ct.KEPT} more")
    else:
        out.lines.append(
            f"CloudTrail: no use of {key_id} after its deactivation at {iso(deactivated)} "
            f"(LookupEvents in {len(found.regions)} region(s), {found.calls} call(s))"
        )
    if own:
        out.lines.append(f"  {own} call(s) with it by handrail itself (step 7's checks): not a consumer's")
    if not conclusive:
        why = (
            f"not yet conclusive: CloudTrail delivers events up to 15 min late, and the deactivation was "
            f"{int((now - deactivated).total_seconds() // 60)} min ago (conclusive from {iso(until)})"
        )
        out.lines.append(f"CloudTrail: {why}; the last use decides meanwhile")
        _partial(ctx, out.facts, "step 7b", why)
    if found.partial:
        out.lines.append(f"  partial: {found.partial}")
        _partial(ctx, out.facts, "step 7b", found.partial)
    data = {
        **ct.lookup_dict(found),
        "deactivated_at": iso(deactivated),
        "uses": [e.as_dict() for e in uses[: ct.KEPT]],
        "uses_total": len(uses),
        "inconclusive_until": None if conclusive else iso(until),
    }
    out.facts[ct.FACT_AFTER] = json.dumps(data)
    return out, uses


# -- step 8 ----------------------------------------------------------------------------------


def corroborate(ctx: StepContext) -> Found:
    """Each write the session recorded (`expect`), found in CloudTrail in the home region
    (IAM logs there), or pending (within the delivery delay), or missing.

    Looked up by `ResourceName` = the IAM user the writes name: event history lists the
    user (and the access key) a request names among an event's resources, so one lookup
    reads this user's events only, not every write of a fleet rotated at the same time
    (by event name, each session paged through all of them, at 2 requests a second).
    A write not found that way after the delivery delay is looked for once more by its
    event name, around its own time, before it is called missing."""
    now = ctx.now()
    out = Found()
    expected = [json.loads(v) for k, v in ctx.facts.items() if k.startswith(ct.EXPECT_PREFIX)]
    if not expected:
        out.lines.append("CloudTrail: this session recorded no write to look for")
        return out
    start = min(parse_iso(e["at"]) for e in expected) - timedelta(minutes=5)
    users = sorted({e["user"] for e in expected})
    events: list[ct.TrailEvent] = []
    calls, failed = 0, []
    for user in users:
        found = _lookup(ctx, "ResourceName", user, start, now, regions=[HOME])
        calls += found.calls
        if found.unavailable:
            out.lines.append(
                f"CloudTrail: {found.unavailable}: the session's writes are not corroborated (the audit log alone records them)"
            )
            _partial(ctx, out.facts, "step 8", found.unavailable)
            out.lookup = found
            out.facts[ct.FACT_CORROBORATION] = json.dumps({**ct.lookup_dict(found), "writes": [], "missing": 0, "pending": 0})
            return out
        out.lookup = found
        events += found.events
        if found.partial:
            failed.append(found.partial)
    writes = _match(expected, events, now)
    unfound = [w for w in writes if w["state"] == "missing"]
    names: list[str] = []
    if unfound:
        # Missing by resource name: by event name, within the writes' own time, before saying so.
        names = sorted({w["event"] for w in unfound})
        first = min(parse_iso(w["at"]) for w in unfound) - timedelta(minutes=5)
        last = min(now, max(parse_iso(w["at"]) for w in unfound) + timedelta(seconds=_NEAR))
        for name in names:
            found = _lookup(ctx, "EventName", name, first, last, regions=[HOME])
            calls += found.calls
            if found.unavailable or found.partial:
                failed.append(found.partial or found.unavailable or "")
            events += found.events
        writes = _match(expected, events, now)
    missing = [w for w in writes if w["state"] == "missing"]
    pending = [w for w in writes if w["state"] == "pending"]
    out.lines.append(
        f"CloudTrail corroborates {len(writes) - len(missing) - len(pending)} of the session's {len(writes)} write(s) "
        f"(LookupEvents by resource name {', '.join(users)}"
        + (f", then by event name {', '.join(names)}" if names else "")
        + f" in {HOME}, {calls} call(s)):"
    )
    for w in writes:
        what = f"{w['event']} {w.get('key_id') or w['user']}" + (f" -> {w['status']}" if w.get("status") else "")
        if w["state"] == "found":
            out.lines.append(f"  {what} at {w['at']}: CloudTrail event {w['event_id']}")
        elif w["state"] == "pending":
            out.lines.append(
                f"  {what} at {w['at']}: not delivered yet (within CloudTrail's 15 min delay): look again with `handrail evidence`"
            )
        else:
            out.lines.append(
                f"  {what} at {w['at']}: MISSING from CloudTrail after its delivery delay: check the trail and who made this call"
            )
    if failed:
        _partial(ctx, out.facts, "step 8", "; ".join(failed))
    data = {
        "attribute": "ResourceName",
        "value": ",".join(users),
        "by_event_name": names,  # looked for again by event name: not found by resource name
        "window": {"start": iso(start), "end": iso(now)},
        "regions": [HOME],
        "calls": calls,
        "partial": "; ".join(failed) or None,
        "writes": writes,
        "missing": len(missing),
        "pending": len(pending),
    }
    out.facts[ct.FACT_CORROBORATION] = json.dumps(data)
    return out


def _match(expected: list[dict[str, str]], events: list[ct.TrailEvent], now: datetime) -> list[dict[str, str]]:
    """Each expected write with the closest event that shows it (each event used once):
    found, or pending (within the delivery delay), or missing."""
    events = list({e.event_id: e for e in events}.values())  # a fallback lookup may find one again
    used: set[str] = set()
    writes = []
    for item in sorted(expected, key=lambda e: e["at"]):
        at = parse_iso(item["at"])
        match = [
            e
            for e in events
            if e.name == item["event"]
            and e.event_id not in used
            and e.user == item["user"]
            and (not item.get("key_id") or e.target_key == item["key_id"])
            and (not item.get("status") or e.status == item["status"])
            and abs((e.at - at).total_seconds()) < _NEAR
        ]
        match.sort(key=lambda e: abs((e.at - at).total_seconds()))
        row = {**item}
        if match:
            used.add(match[0].event_id)
            row.update(state="found", event_id=match[0].event_id, logged_at=iso(match[0].at), source_ip=match[0].source_ip)
        elif now < at + timedelta(seconds=ct.DELIVERY_DELAY):
            row["state"] = "pending"
        else:
            row["state"] = "missing"
        writes.append(row)
    return writes
