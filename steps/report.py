"""The report of a session or a campaign, in every mode: who, what, when, each step's
evidence, every decision taken against the runbook's defaults (skips, overrides,
approvals), the CloudTrail findings, the end state, and the audit chain's check.

Built from the journal and the audit log alone (never from AWS), so it can be written
at any time, on any machine that shares them. Every text passes the redactor.
"""

from __future__ import annotations

import json
from typing import Any

from steps.audit import AuditLog
from steps.journal import CampaignNotFound, Journal, SessionNotFound, SessionRow
from steps.secrets import redact

NO_CLOUDTRAIL = "no CloudTrail evidence gathered"

# What the audit log says an operator decided instead of the runbook's default path.
_DECISIONS = {
    "step.skipped": "skipped",
    "gate.override": "gate passed early",
    "block.override": "block overridden",
    "step.irreversible_confirmed": "irreversible step confirmed",
    "clock.fast_forward": "simulated clock fast-forwarded",
    "session.taken_over": "taken over",
    "approval.granted": "approved",
    "approval.refused": "approval refused",
    "approval.used": "approval used",
    "session.abandon": "abandoned",
    "rollback.started": "rollback started",
}
_END_FACTS = ("old_key_id", "new_key_id", "deleted_key_id", "target_deleted_at", "new_key_valid_after")


def build(journal: Journal, audit: AuditLog, ref: str) -> dict[str, Any]:
    """A session's report, or a campaign's when `ref` names one (a campaign id or name;
    `last` is the last session)."""
    try:
        row = journal.find_session(ref)
    except SessionNotFound as missing:
        if ref == "last":
            raise
        try:
            campaign = journal.find_campaign(ref)
        except CampaignNotFound:
            raise missing from None
        return campaign_report(journal, audit, campaign.id)
    records = list(audit.records())
    return session_report(journal, row, records, _chain(audit))


def _chain(audit: AuditLog) -> dict[str, Any]:
    verdict = audit.verify()
    return {"ok": verdict.ok, "lines": verdict.lines, "bad_line": verdict.bad_line, "reason": verdict.reason, "note": verdict.note}


def session_report(journal: Journal, row: SessionRow, records: list[dict[str, Any]], chain: dict[str, Any]) -> dict[str, Any]:
    events = journal.events(row.id)
    facts = journal.facts(row.id)
    mine = [r for r in records if r.get("session") == row.id]
    governance = row.options.get("governance") or {}
    binding = row.options.get("binding") or {}
    os_user, _, actor_arn = row.actor.rpartition(" as ")
    approvals = journal.approvals(row.id)
    return {
        "kind": "session",
        "session": row.id,
        "campaign": row.campaign_id,
        "mode": row.mode,
        "status": row.status,
        "who": {
            "operator_arn": binding.get("operator_arn") or actor_arn,
            "os_user": os_user,
            "account": row.account,
            "roles": governance.get("roles"),
            "role_needed": governance.get("needed"),
            "roles_source": governance.get("roles_source"),
            "target_elevated": governance.get("elevated"),
            "notes": governance.get("notes", []),
            "taken_over_by": [r.get("actor") for r in mine if r.get("action") == "session.taken_over"],
            "approvers": [
                {"step": a.step_id, "approver": a.approver, "reason": a.reason, "at": a.created_at, "expires_at": a.expires_at}
                for a in approvals
            ],
        },
        "what": {
            "runbook": row.runbook_id,
            "version": row.options.get("runbook_version") or _version(row),
            "sha256": row.runbook_sha,
            "path": row.runbook_path,
            "target_user": row.target,
            "target_arn": binding.get("target_arn"),
            "reason": row.reason,
            "scenario": row.options.get("scenario") if row.mode == "training" else None,
        },
        "when": {
            "started": row.created_at,
            "last_change": row.updated_at,
            "timeline": [
                {"real": e.ts_real, "simulated": e.ts_sim, "step": e.step_id, "kind": e.kind, "status": e.status, "summary": e.summary}
                for e in events
            ],
        },
        "steps": _steps(row, events),
        "decisions": [
            {
                "at": r.get("ts"),
                "what": _DECISIONS[r["action"]],
                "step": (r.get("context") or {}).get("step"),
                "by": r.get("actor"),
                "detail": _detail(r),
            }
            for r in mine
            if r.get("action") in _DECISIONS
        ],
        "cloudtrail": _cloudtrail(facts),
        "end_state": {"status": row.status, **{name: facts[name] for name in _END_FACTS if name in facts}},
        "audit": _audit_check(mine, chain),
    }


def _version(row: SessionRow) -> int | None:
    """An older session recorded no version: the file's, if it is still the file it ran."""
    from steps.engine import runbook_sha
    from steps.loader import load

    try:
        from pathlib import Path

        if runbook_sha(Path(row.runbook_path)) == row.runbook_sha:
            return load(row.runbook_path).version
    except Exception:
        return None
    return None


def _steps(row: SessionRow, events: list[Any]) -> list[dict[str, Any]]:
    from steps.loader import load

    try:
        runbook = load(row.runbook_path)
        order = [(s.id, s.number, s.title) for s in runbook.steps]
    except Exception:  # the runbook file moved: the journal's step ids, in the order they ran
        seen: list[str] = []
        for e in events:
            if e.step_id and e.step_id not in seen:
                seen.append(e.step_id)
        order = [(sid, "", sid) for sid in seen]
    out = []
    for step_id, number, title in order:
        last = [e for e in events if e.step_id == step_id and e.kind in ("step", "undone", "reopened")]
        final = last[-1] if last else None
        out.append(
            {
                "id": step_id,
                "number": number,
                "title": title,
                "status": final.status if final else "pending",
                "summary": final.summary if final else "",
                "evidence": final.evidence if final else [],
                "attempts": sum(1 for e in events if e.step_id == step_id and e.kind == "started"),
            }
        )
    return out


def _detail(record: dict[str, Any]) -> str:
    ctx = record.get("context") or {}
    action = record.get("action")
    if action == "step.irreversible_confirmed":
        return f"{ctx.get('confirmed')} ({ctx.get('how')})"
    if action == "clock.fast_forward":
        return f"{ctx.get('seconds') or ctx.get('during') or ''}".strip() + (" s" if ctx.get("seconds") else "")
    if action == "approval.granted":
        return f"{ctx.get('reason')} (until {ctx.get('expires_at')})"
    if action == "approval.used":
        return f"approval by {ctx.get('approver')}"
    if action == "session.taken_over":
        return f"started by {ctx.get('started_by')}"
    if action == "rollback.started":
        return "; ".join(ctx.get("plan") or []) or "nothing to undo"
    return str(ctx.get("reason") or ctx.get("why") or "")


def _cloudtrail(facts: dict[str, str]) -> dict[str, Any]:
    from steps.cloudtrail import session_findings

    found = session_findings(facts)
    gathered = any(found[k] is not None for k in ("callers", "after_deactivation", "corroboration")) or bool(found["partial"])
    return {"gathered": gathered, "findings": found, "note": "" if gathered else NO_CLOUDTRAIL}


def _audit_check(mine: list[dict[str, Any]], chain: dict[str, Any]) -> dict[str, Any]:
    seqs = [int(r["seq"]) for r in mine if isinstance(r.get("seq"), int)]
    first, last = (min(seqs), max(seqs)) if seqs else (None, None)
    if chain["ok"]:
        verdict = "intact" + (f" ({chain['note']})" if chain["note"] else "")
    elif last is not None and chain["bad_line"] is not None and chain["bad_line"] > last:
        verdict = f"this session's lines are intact; the chain breaks later, at line {chain['bad_line']}: {chain['reason']}"
    else:
        verdict = f"BROKEN at line {chain['bad_line']}: {chain['reason']}"
    return {"session_lines": len(seqs), "first_line": first, "last_line": last, "chain": chain, "verdict": verdict}


# -- campaigns -----------------------------------------------------------------------------------


def campaign_report(journal: Journal, audit: AuditLog, campaign_id: str) -> dict[str, Any]:
    from steps import campaign as campaigns

    row = journal.campaign(campaign_id)
    summary = campaigns.summary(journal, campaign_id)
    records = list(audit.records())
    chain = _chain(audit)
    sessions = journal.campaign_sessions(campaign_id)
    targets = []
    for result in summary.results:
        session = sessions.get(result.session_id or "")
        targets.append(
            {
                **result.as_dict(),
                "report": session_report(journal, session, records, chain) if session is not None else None,
            }
        )
    refused = [r for r in records if r.get("action") == "session.refused" and (r.get("context") or {}).get("campaign") == campaign_id]
    return {
        "kind": "campaign",
        "campaign": row.id,
        "name": row.name,
        "campaign_kind": row.kind,
        "mode": row.mode,
        "account": row.account,
        "actor": row.actor,
        "created_at": row.created_at,
        "ended": summary.ended,
        "counts": dict(sorted(summary.counts.items())),
        "refusals": [{"at": r.get("ts"), "by": r.get("actor"), "why": (r.get("context") or {}).get("why")} for r in refused],
        "targets": targets,
        "audit": {"chain": chain, "verdict": "intact" if chain["ok"] else f"BROKEN at line {chain['bad_line']}: {chain['reason']}"},
    }


# -- rendering -----------------------------------------------------------------------------------


def to_json(report: dict[str, Any]) -> str:
    return redact(json.dumps(report, indent=2))


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def session_markdown(r: dict[str, Any], level: int = 1) -> list[str]:
    h = "#" * level
    who, what, when, end = r["who"], r["what"], r["when"], r["end_state"]
    roles = ", ".join(who["roles"] or []) or "none"
    out = [
        f"{h} Session {r['session']}: {what['runbook']} on {what['target_user'] or '-'}",
        "",
        f"- Mode: {r['mode']}; status: **{r['status']}**" + (f"; campaign {r['campaign']}" if r["campaign"] else ""),
        f"- Runbook: {what['runbook']} version {what['version'] or '?'}, sha256 `{what['sha256']}`",
        "",
        f"{h}# Who",
        "",
        f"- Operator: `{who['operator_arn']}` (OS user {who['os_user'] or '?'}), account {who['account'] or '-'}",
        f"- Roles: {roles} (from {who['roles_source'] or 'not recorded'}); needed: {who['role_needed'] or '-'}",
    ]
    if who["target_elevated"]:
        out.append(f"- Target elevated: {who['target_elevated']}")
    out += [f"- Note: {note}" for note in who["notes"]]
    out += [f"- Taken over by `{arn}`" for arn in who["taken_over_by"]]
    approvers = who["approvers"]
    out += [f"- Approved step {a['step']}: `{a['approver']}` at {a['at']} (until {a['expires_at']}): {a['reason']}" for a in approvers]
    if not approvers:
        out.append("- Approvers: none")
    out += [
        "",
        f"{h}# What",
        "",
        f"- IAM user: {what['target_user'] or '-'}" + (f" (`{what['target_arn']}`)" if what["target_arn"] else ""),
        f"- Reason: {what['reason'] or '-'}",
        f"- Old key: {end.get('old_key_id') or '-'}; new key: {end.get('new_key_id') or '-'}",
    ]
    if what["scenario"]:
        out.append(f"- Training scenario: {what['scenario']}")
    out += ["", f"{h}# When", "", f"- Started {when['started']}; last change {when['last_change']}", ""]
    out += [f"{h}# Steps", "", "| # | step | status | summary |", "|---|---|---|---|"]
    out += [f"| {s['number']} | {_cell(s['title'])} | {s['status']} | {_cell(s['summary'])} |" for s in r["steps"]]
    for s in r["steps"]:
        if s["evidence"]:
            out += ["", f"Evidence of step {s['number'] or s['id']} ({s['title']}):", ""]
            out += [f"    {line}" for line in s["evidence"]]
    out += ["", f"{h}# Overrides, skips and approvals", ""]
    out += [
        f"- {d['at']}: {d['what']}" + (f" (step {d['step']})" if d["step"] else "") + f" by `{d['by']}`: {d['detail']}"
        for d in r["decisions"]
    ]
    if not r["decisions"]:
        out.append("- none: every step went the runbook's way")
    ct = r["cloudtrail"]
    out += ["", f"{h}# CloudTrail", ""]
    if ct["gathered"]:  # as `handrail evidence` says it (one renderer of the findings)
        from steps.cloudtrail import to_text

        out += ["```", *to_text(r["session"], ct["findings"])[2:], "```"]
    else:
        out.append(f"- {ct['note']}")
    out += ["", f"{h}# End state", "", f"- Status: {end['status']}"]
    out += [f"- {name.replace('_', ' ')}: {value}" for name, value in end.items() if name != "status"]
    audit = r["audit"]
    lines = f"lines {audit['first_line']}-{audit['last_line']}" if audit["first_line"] else "no lines"
    out += ["", f"{h}# Audit chain", "", f"- This session: {audit['session_lines']} record(s), {lines}; chain {audit['verdict']}"]
    out += ["", f"{h}# Timeline", "", "| real | simulated | step | event | status | summary |", "|---|---|---|---|---|---|"]
    out += [
        f"| {t['real']} | {t['simulated'] or ''} | {t['step'] or ''} | {t['kind']} | {t['status'] or ''} | {_cell(t['summary'])} |"
        for t in when["timeline"]
    ]
    return out


def to_markdown(report: dict[str, Any]) -> str:
    if report["kind"] == "session":
        return redact("\n".join(session_markdown(report)) + "\n")
    counts = ", ".join(f"{n} {state}" for state, n in report["counts"].items()) or "no targets"
    out = [
        f"# Campaign {report['campaign']}: {report['name']}",
        "",
        f"- Kind: {report['campaign_kind']}; mode: {report['mode']}; account {report['account'] or '-'}",
        f"- Started {report['created_at']} by `{report['actor']}`; {'ended' if report['ended'] else 'open'}: {counts}",
        f"- Audit chain: {report['audit']['verdict']}",
        "",
        "## Targets",
        "",
        "| user | runbook | state | session | old key | new key | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        out.append(
            f"| {t['user']} | {t['runbook']} | {t['state']} | {t['session'] or '-'} | {t['old_key_id'] or '-'} | "
            f"{t['new_key_id'] or '-'} | {_cell(t['why'])} |"
        )
    for t in report["targets"]:
        if t["report"] is None:
            out += ["", f"## {t['user']}: no session", "", f"{t['state']}: {t['detail'] or 'never started'}"]
        else:
            out += ["", *session_markdown(t["report"], level=2)]
    return redact("\n".join(out) + "\n")
