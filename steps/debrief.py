"""The debrief of a training session: what happened, which of the SOP's gotchas the
scenario held and whether each was handled, the world at the end, and whether a
rollback was needed. Built from the journal and the audit log alone, so it works for
a session finished, stopped or abandoned in another process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from steps.audit import Audit
from steps.journal import EventRow, Journal, SessionRow
from steps.status import SessionStatus, StepStatus

HANDLED, MISSED, NOT_REACHED = "handled", "missed", "not reached"


@dataclass
class Verdict:
    id: str
    title: str
    verdict: str
    detail: str


@dataclass
class Debrief:
    session: str
    scenario: str | None
    title: str
    teaches: str
    status: str
    timeline: list[dict[str, Any]]
    gotchas: list[Verdict]
    end_state: list[str]
    rollback: str
    faults: list[str] = field(default_factory=list)
    mode: str = "training"

    @property
    def training(self) -> bool:
        return self.mode == "training"

    @property
    def where(self) -> str:
        """The header's words for where it ran: a scenario in training, else the mode."""
        return f"scenario {self.scenario}" if self.training and self.scenario else f"{self.mode} mode"

    def as_dict(self) -> dict[str, Any]:
        training = {"scenario": self.scenario} if self.training else {}
        return {
            "session": self.session,
            "mode": self.mode,
            **training,
            "title": self.title,
            "teaches": self.teaches,
            "status": self.status,
            "gotchas": [v.__dict__ for v in self.gotchas],
            "end_state": self.end_state,
            "rollback": self.rollback,
            "timeline": self.timeline,
        }


@dataclass
class _Facts:
    row: SessionRow
    events: list[EventRow]
    facts: dict[str, str]
    audit: list[dict[str, Any]]
    world: dict[str, Any] | None

    def step_events(self, step_id: str) -> list[EventRow]:
        return [e for e in self.events if e.step_id == step_id and e.kind in ("step", "undone", "reopened")]

    def final(self, step_id: str) -> str | None:
        events = self.step_events(step_id)
        return events[-1].status if events else None

    def ever(self, step_id: str, status: str) -> EventRow | None:
        return next((e for e in self.step_events(step_id) if e.status == status), None)

    def audited(self, action: str, step: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.audit if r.get("action") == action and (step is None or (r.get("context") or {}).get("step") == step)]

    @property
    def rolled_back(self) -> bool:
        return self.row.status is SessionStatus.ROLLED_BACK


def _eventual_consistency(f: _Facts) -> tuple[str, str]:
    status = f.final("validate-new-key")
    if status == StepStatus.DONE:
        return (
            HANDLED,
            f"step 3 polled until the new key worked (valid after {f.facts.get('new_key_valid_after', '?')} s), instead of sleeping blindly",
        )
    if status == StepStatus.SKIPPED:
        return MISSED, "step 3 was skipped: nothing proved the new key worked before the consumers got it"
    return NOT_REACHED, "the rotation stopped before the new key was validated"


def _observation_gate(f: _Facts) -> tuple[str, str]:
    overrides = f.audited("gate.override", "delete-old-key")
    if overrides:
        return MISSED, f"the 24 h observation gate was passed early: {overrides[-1]['context'].get('reason')}"
    if f.final("delete-old-key") == StepStatus.DONE:
        ff = f.audited("clock.fast_forward", "delete-old-key")
        return HANDLED, "the old key stayed Inactive through the observation period" + (
            " (fast-forwarded on the simulated clock)" if ff else ""
        )
    return NOT_REACHED, "the delete was not reached"


def _secret_shown_once(f: _Facts) -> tuple[str, str]:
    reopened = [e for e in f.events if e.kind == "reopened" and e.step_id == "create-key"]
    reveals = f.audited("secret.revealed")
    if reopened:
        return MISSED, "the new secret was lost when the session stopped before the vault stored it; the key had to be replaced"
    if f.final("create-key") is None:
        return NOT_REACHED, "no key was created"
    extra = f" It was revealed {len(reveals)} time(s), each audited." if reveals else " It was never shown on screen."
    return HANDLED, "the secret was captured once at creation and held in memory only." + extra


def _inactive_is_not_deleted(f: _Facts) -> tuple[str, str]:
    status = f.final("free-key-slot")
    if status == StepStatus.SKIPPED:
        return MISSED, "freeing the slot was skipped: an Inactive key still takes one of the 2 slots (create-key cannot succeed)"
    if status == StepStatus.DONE and f.facts.get("retired_key_id"):
        return HANDLED, f"deleted the Inactive key {f.facts['retired_key_id']} after its last use was shown (step 1b evidence)"
    if status == StepStatus.DONE:
        return HANDLED, "a slot was already free"
    return NOT_REACHED, "step 1b was not reached"


def _two_keys(f: _Facts) -> tuple[str, str]:
    refused = [e for e in f.step_events("free-key-slot") if e.status == StepStatus.REFUSED and "the key the vault holds" in e.summary]
    retired = f.facts.get("retired_key_id")
    note = f" (first chose {refused[0].summary.split()[0]}, the key in use; handrail refused)" if refused else ""
    if retired and f.final("free-key-slot") == StepStatus.DONE:
        verdict = MISSED if refused else HANDLED
        # Only a finished session rotated the key in use: an unfinished one says where it stands.
        rotated = "rotated the one in use" if f.row.status is SessionStatus.DONE else f"the rotation is not finished ({f.row.status})"
        return verdict, f"retired {retired}, the unused key; {rotated}{note}"
    if refused:
        return MISSED, f"chose to retire the key every consumer uses{note}"
    return NOT_REACHED, "the choice of the key to retire was not reached"


def _self_rotation(f: _Facts) -> tuple[str, str]:
    if f.row.inputs.get("allow_self_rotation") == "yes":
        return MISSED, "forced a self-rotation with --allow-self-rotation instead of signing in as a different identity"
    refused = next((e for e in f.step_events("pre-checks") if e.status == StepStatus.REFUSED), None)
    if refused is not None:
        return HANDLED, "stopped at step 1: signed in as the user being rotated"
    return NOT_REACHED, "the operator identity was never the target's"


def _consumer_fails(f: _Facts) -> tuple[str, str]:
    failed = f.ever("propagate", StepStatus.FAILED)
    if f.final("propagate") == StepStatus.SKIPPED:
        return MISSED, "propagation was skipped after a consumer failed: that consumer stayed on the old key"
    if failed is None:
        return NOT_REACHED, "no consumer failed"
    if f.final("propagate") == StepStatus.DONE:
        return HANDLED, f"a consumer failed ({failed.summary}); retried until every consumer held the new key"
    if f.rolled_back:
        return HANDLED, f"a consumer failed ({failed.summary}); rolled back: every consumer is on the old pair again"
    return NOT_REACHED, f"a consumer failed ({failed.summary}) and the session stopped there"


def _deactivate_before_verified(f: _Facts) -> tuple[str, str]:
    overrides = f.audited("block.override", "deactivate-old-key")
    if overrides:
        return MISSED, f"deactivated the old key before every consumer verified: {overrides[-1]['context'].get('reason')}"
    if f.final("deactivate-old-key") == StepStatus.DONE:
        if f.final("verify-downstream") == StepStatus.DONE:
            return HANDLED, "deactivated the old key only after every consumer verified on the new one"
        return MISSED, "deactivated the old key although downstream verification did not pass"
    return NOT_REACHED, "the deactivation was not reached"


def _last_used_before_delete(f: _Facts) -> tuple[str, str]:
    blocked = f.ever("delete-old-key", StepStatus.BLOCKED)
    overrides = f.audited("block.override", "delete-old-key")
    if overrides:
        return MISSED, f"deleted the old key although it was used after its deactivation: {overrides[-1]['context'].get('reason')}"
    if blocked is not None:
        end = "rolled back, so the consumer that still holds it works again" if f.rolled_back else "left the old key in place"
        return HANDLED, f"the last-use check blocked the delete ({blocked.summary.split('. ')[0]}), and you {end}"
    if f.final("delete-old-key") == StepStatus.DONE:
        return HANDLED, "checked the last use before deleting: no use after the deactivation"
    return NOT_REACHED, "the delete was not reached"


def _vault_unreachable(f: _Facts) -> tuple[str, str]:
    status = f.final("store-in-vault")
    failed = f.ever("store-in-vault", StepStatus.FAILED)
    if status == StepStatus.SKIPPED:
        return MISSED, "storing in the vault was skipped: the source of truth never got the new pair"
    if failed is not None and status == StepStatus.DONE:
        return HANDLED, "the store failed while the vault was down; it was retried once the vault answered again"
    if failed is not None and f.rolled_back:
        return HANDLED, "the store failed while the vault was down; rolled back instead of going on without it"
    if failed is not None:
        return NOT_REACHED, "the store failed and the session stopped there"
    return NOT_REACHED, "the vault never went down"


def _contain_before_delete(f: _Facts) -> tuple[str, str]:
    gate = f.audited("gate.override", "observe")
    if gate:
        return MISSED, f"the observation was cut short: {gate[-1]['context'].get('reason')}"
    overrides = f.audited("block.override", "observe") + f.audited("block.override", "delete-access-keys")
    if overrides:
        return MISSED, f"tore down although a key was used after its deactivation: {overrides[-1]['context'].get('reason')}"
    if f.final("observe") == StepStatus.DONE:
        ff = " (fast-forwarded on the simulated clock)" if f.audited("clock.fast_forward", "observe") else ""
        return HANDLED, f"the user stayed contained through the observation{ff}, and no key was used after its deactivation"
    if f.ever("observe", StepStatus.BLOCKED) is not None:
        return HANDLED, "a key was used after its deactivation: the teardown was stopped"
    return NOT_REACHED, "the observation was not reached"


def _delete_user_order(f: _Facts) -> tuple[str, str]:
    conflict = next((e for e in f.step_events("delete-user") if e.status == StepStatus.FAILED and "DeleteConflict" in e.summary), None)
    if f.final("delete-user") == StepStatus.DONE:
        if conflict is not None:
            return MISSED, f"DeleteUser refused first ({conflict.summary.split(': ', 1)[-1]}); the user went only after that was removed"
        return HANDLED, "everything attached was removed in DeleteUser's order; the user is gone (get-user: NoSuchEntity)"
    if conflict is not None:
        return MISSED, f"DeleteUser refused: {conflict.summary.split(': ', 1)[-1]} (a teardown step was skipped)"
    return NOT_REACHED, "the user was not deleted"


def _elevated_role(f: _Facts) -> tuple[str, str]:
    governance = f.row.options.get("governance") or {}
    elevated = governance.get("elevated")
    roles = ", ".join(governance.get("roles") or []) or "no role"
    if elevated:
        return HANDLED, f"the rotation ran as {roles}: the elevated user's role was held ({elevated})"
    return NOT_REACHED, "an operator without the elevated role is refused before a session exists (exit 3)"


@dataclass(frozen=True)
class Check:
    name: str  # what the gotcha is about, without the answer (for a briefing)
    title: str  # the lesson (for the debrief)
    check: Callable[[_Facts], tuple[str, str]]


CHECKS: dict[str, Check] = {
    "eventual-consistency": Check("Eventual consistency", "Eventual consistency: poll, do not sleep", _eventual_consistency),
    "observation-gate": Check("The observation period", "Observe 24 h with the old key Inactive before deleting", _observation_gate),
    "secret-shown-once": Check("The secret is shown once", "The secret is shown once", _secret_shown_once),
    "inactive-is-not-deleted": Check(
        "Inactive is not Deleted", "Inactive is not Deleted: an Inactive key takes a slot", _inactive_is_not_deleted
    ),
    "two-keys": Check("Two keys per user at most", "Two keys at most: choose which Active key to retire", _two_keys),
    "self-rotation": Check("Whose credentials you act with", "Rotate as a different identity", _self_rotation),
    "consumer-fails": Check("A consumer that fails", "One failing consumer must not hide the others", _consumer_fails),
    "deactivate-before-verified": Check(
        "When to deactivate the old key", "Deactivate only after every consumer verified", _deactivate_before_verified
    ),
    "last-used-before-delete": Check("Before deleting the old key", "get-access-key-last-used before the delete", _last_used_before_delete),
    "vault-unreachable": Check("The vault as the source of truth", "The vault first: no new pair outside it", _vault_unreachable),
    "contain-before-delete": Check(
        "Contain before you delete", "Contain, observe, then tear down: a use after deactivation stops it", _contain_before_delete
    ),
    "elevated-needs-superadmin": Check(
        "Who may rotate an elevated user", "An elevated user needs the elevated role, checked before anything changes", _elevated_role
    ),
    "delete-user-order": Check("What DeleteUser needs first", "Tear down in DeleteUser's order, then delete the user", _delete_user_order),
}


# The gotchas of the offboarding runbook; every other one is the rotation's.
_GOTCHA_RUNBOOK = {"contain-before-delete": "aws-iam-user-offboarding", "delete-user-order": "aws-iam-user-offboarding"}


def gotcha_name(gotcha_id: str) -> str:
    """A gotcha's name for a briefing; an unknown id (a trainer's own) as words."""
    check = CHECKS.get(gotcha_id)
    return check.name if check else gotcha_id.replace("-", " ").capitalize()


def _end_state(world: dict[str, Any] | None, target: str, key_ids: set[str] | None = None) -> list[str]:
    """The target's keys and attachments, and the places holding a pair; `key_ids` (a
    campaign's shared world): only the places holding one of these keys or the target's."""
    if not world:
        return ["(the simulated world was not saved)"]
    lines: list[str] = []
    if target and target not in world["aws"]["users"]:
        return [f"{target}: deleted"]
    keys = world["aws"]["users"].get(target, [])
    lines.append(f"{target}: " + (", ".join(f"{k['id']} {k['status']}" for k in keys) or "no keys"))
    held = (world["aws"].get("attachments") or {}).get(target) or {}
    kinds = [(k, held.get(k)) for k in ("mfa_devices", "ssh_public_keys", "signing_certificates", "service_credentials", "groups")]
    attached = [f"{len(v)} {k.replace('_', ' ')}" for k, v in kinds if v]
    attached += [f"{len(held[k])} {k.replace('_', ' ')}" for k in ("inline_policies", "attached_policies") if held.get(k)]
    if held.get("login_profile"):
        attached.insert(0, "a console password")
    if attached:  # what else the user has (offboarding removes all of it)
        lines.append(f"{target} also has: " + ", ".join(attached))
    active = {k["id"] for k in keys if k["status"] == "Active"}
    mine = None if key_ids is None else key_ids | {k["id"] for k in keys}
    for place, held in sorted(world.get("places", {}).items()):
        key_id, owner = held.get("key_id"), held.get("secret_of")
        if mine is not None and key_id not in mine:
            continue
        status = next((k["status"] for k in keys if k["id"] == key_id), None)
        if key_id is None:
            state = "holds no pair"
        elif status is None:
            state = f"holds {key_id}, a deleted key: it is broken"
        elif owner != key_id:
            state = f"holds {key_id} with a secret that does not match it"
        elif key_id in active:
            state = f"holds {key_id} (Active)"
        else:
            state = f"holds {key_id} ({status}): it is broken"
        lines.append(f"{place}: {state}")
    return lines


def _journal_end_state(f: _Facts) -> list[str]:
    """Outside training there is no saved world: the end state as the journal records it."""
    target = f.row.target or "-"
    if f.facts.get("target_deleted_at"):
        return [f"{target}: deleted at {f.facts['target_deleted_at']}"]
    old, new = f.facts.get("old_key_id"), f.facts.get("new_key_id")
    lines = [f"{target}: old key {old or '-'}, new key {new or '-'} (as the journal records them; AWS was not asked)"]
    return lines


def _changed_anything(f: _Facts) -> bool:
    """Did a mutating step of this session change the world?"""
    from steps.actions import registry
    from steps.loader import load

    try:
        mutating = {s.id for s in load(f.row.runbook_path).steps if s.run and registry()[s.run].mutates}
    except Exception:  # the runbook file moved or broke: assume the worst
        mutating = None
    for event in f.events:
        if event.kind != "step" or event.status != StepStatus.DONE or not event.step_id:
            continue
        if f.facts.get(f"changed:{event.step_id}") == "no":
            continue
        if mutating is None or event.step_id in mutating:
            return True
    return False


def build(journal: Journal, audit: Audit, ref: str, *, world: dict[str, Any] | None = None) -> Debrief:
    """A session's debrief; `world`: the one it shared with its campaign (a campaign's
    sessions save none of their own)."""
    from steps.sandbox import scenario as scenarios

    row = journal.find_session(ref)
    shared = world is not None
    if world is None:
        world = json.loads(row.world) if row.world else None
    facts = _Facts(row, journal.events(row.id), journal.facts(row.id), audit.for_session(row.id), world)
    training = row.mode == "training"
    scenario_id = ((world or {}).get("scenario") or row.options.get("scenario")) if training else None
    scenario = None
    if scenario_id:
        try:
            scenario = scenarios.load(scenario_id)
        except Exception:  # a scenario file that changed or vanished: debrief what we can
            scenario = None
    verdicts = []
    for gotcha in scenario.gotchas if scenario else []:
        if shared and _GOTCHA_RUNBOOK.get(gotcha, "aws-iam-access-key") != row.runbook_id:
            continue  # a campaign mixes runbooks: each target is judged on its own runbook's gotchas
        known = CHECKS.get(gotcha)
        verdict, detail = known.check(facts) if known else (NOT_REACHED, "no check for this gotcha")
        verdicts.append(Verdict(gotcha, known.title if known else gotcha, verdict, detail))
    timeline = [
        {"real": e.ts_real, "simulated": e.ts_sim, "step": e.step_id, "kind": e.kind, "status": e.status, "summary": e.summary}
        for e in facts.events
    ]
    if row.status is SessionStatus.ROLLED_BACK:
        rollback = "rolled back: " + ", ".join(e.step_id or "" for e in facts.events if e.kind == "undone")
    elif row.status is SessionStatus.DONE:
        rollback = f"not needed: the {'rotation' if row.runbook_id == 'aws-iam-access-key' else 'session'} completed"
    elif not _changed_anything(facts):
        rollback = "not needed: nothing was changed"
    elif row.status in (SessionStatus.FAILED, SessionStatus.BLOCKED, SessionStatus.REFUSED, SessionStatus.ROLLBACK_FAILED):
        rollback = f"may be needed: the session stopped ({row.status}) after changing things, and was not rolled back"
    else:
        rollback = f"may be needed: the session is {row.status}, part-way, after changing things"
    return Debrief(
        session=row.id,
        scenario=scenario_id,
        title=scenario.title if scenario else row.runbook_id,
        teaches=scenario.teaches if scenario else "",
        status=row.status,
        timeline=timeline,
        gotchas=verdicts,
        end_state=_end_state(world, row.target, _keys_of(facts.facts) if shared else None) if training else _journal_end_state(facts),
        rollback=rollback,
        mode=row.mode,
    )


def _keys_of(facts: dict[str, str]) -> set[str]:
    return {facts[name] for name in ("old_key_id", "new_key_id", "retired_key_id") if facts.get(name)}


# -- a campaign ---------------------------------------------------------------------------------


@dataclass
class TargetDebrief:
    position: int
    user: str
    runbook: str
    why: str
    state: str
    detail: str
    debrief: Debrief | None  # None: no session was started


@dataclass
class CampaignDebrief:
    """A campaign's debrief: each target's verdicts and end state, and where the campaign ended."""

    campaign: str
    name: str
    kind: str
    mode: str
    ended: bool
    exit_code: int
    counts: dict[str, int]
    targets: list[TargetDebrief]

    @property
    def end(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts.items()))
        where = "ended" if self.ended else "open (not every target has ended)"
        return f"{len(self.targets)} target(s): {counts or 'none'}; {where}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "name": self.name,
            "kind": self.kind,
            "mode": self.mode,
            "ended": self.ended,
            "exit_code": self.exit_code,
            "counts": dict(sorted(self.counts.items())),
            "end": self.end,
            "targets": [
                {
                    "position": t.position,
                    "user": t.user,
                    "runbook": t.runbook,
                    "why": t.why,
                    "state": t.state,
                    "detail": t.detail,
                    "debrief": t.debrief.as_dict() if t.debrief else None,
                }
                for t in self.targets
            ],
        }


def build_campaign(journal: Journal, audit: Audit, ref: str) -> CampaignDebrief:
    """Every target's debrief on the campaign's one saved world, and the campaign's end state."""
    from steps import campaign as campaigns

    row = journal.find_campaign(ref)
    summary = campaigns.summary(journal, row.id)
    world = json.loads(row.world) if row.world else None
    targets = []
    for r in summary.results:
        d = build(journal, audit, r.session_id, world=world if world is not None else {}) if r.session_id else None
        targets.append(TargetDebrief(r.position, r.user, r.runbook, r.why, str(r.state), r.detail, d))
    return CampaignDebrief(row.id, row.name, row.kind, row.mode, summary.ended, summary.code, dict(summary.counts), targets)


def campaign_to_text(d: CampaignDebrief) -> str:
    out = [f"debrief: campaign {d.campaign} ({d.name}, {d.mode})", f"  end: {d.end}; exit {d.exit_code}"]
    for t in d.targets:
        out.append(f"  {t.user} ({t.runbook}): {t.state}" + (f" - {t.detail}" if t.detail and t.state not in ("done",) else ""))
        if t.debrief is None:
            out.append("    never started: nothing changed")
            continue
        for v in t.debrief.gotchas:
            out.append(f"    [{v.verdict}] {v.title}: {v.detail}")
        out.append(f"    rollback: {t.debrief.rollback}")
        out += [f"    end: {line}" for line in t.debrief.end_state]
    return "\n".join(out)


def campaign_to_markdown(d: CampaignDebrief) -> str:
    out = [f"# Debrief: campaign {d.name}", "", f"Campaign `{d.campaign}` · {d.kind} · {d.mode} · **{d.end}** (exit {d.exit_code})", ""]
    out += ["| target | runbook | state | verdicts |", "|---|---|---|---|"]
    for t in d.targets:
        verdicts = ", ".join(f"{v.title}: {v.verdict}" for v in (t.debrief.gotchas if t.debrief else [])) or "-"
        out.append(f"| {t.user} | {t.runbook} | **{t.state}** | {verdicts} |")
    for t in d.targets:
        out += ["", f"## {t.user}", "", f"*{t.why}*", ""]
        if t.debrief is None:
            out.append("Never started: nothing changed.")
            continue
        out += [f"Session `{t.debrief.session}` · {t.debrief.status}", ""]
        out += [f"- **{v.verdict}** {v.title}: {v.detail}" for v in t.debrief.gotchas]
        out += ["", f"Rollback: {t.debrief.rollback}", "", "End state:", ""]
        out += [f"- {line}" for line in t.debrief.end_state]
    return "\n".join(out) + "\n"


def to_text(d: Debrief) -> str:
    out = [f"debrief: {d.title} (session {d.session}, {d.status})"]
    if d.teaches:
        out.append(f"  teaches: {d.teaches}")
    if d.training:  # the gotchas are a scenario's
        out.append("  gotchas:")
        for v in d.gotchas or []:
            out.append(f"    [{v.verdict}] {v.title}: {v.detail}")
        if not d.gotchas:
            out.append("    (none in this scenario)")
    out.append(f"  rollback: {d.rollback}")
    out.append("  end state:")
    out += [f"    {line}" for line in d.end_state]
    return "\n".join(out)


def to_markdown(d: Debrief) -> str:
    where = f"scenario `{d.scenario}`" if d.training and d.scenario else f"{d.mode} mode"
    out = [f"# Debrief: {d.title}", "", f"Session `{d.session}` · {where} · status **{d.status}**", ""]
    if d.teaches:
        out += [f"*{d.teaches}*", ""]
    if d.training:
        out += ["## Gotchas", "", "| gotcha | verdict | what happened |", "|---|---|---|"]
        out += [f"| {v.title} | **{v.verdict}** | {v.detail} |" for v in d.gotchas]
        out.append("")
    out += ["## Rollback", "", d.rollback, "", "## End state of the world" if d.training else "## End state", ""]
    out += [f"- {line}" for line in d.end_state]
    out += ["", "## Timeline", "", "| simulated | real | step | event | status | summary |", "|---|---|---|---|---|---|"]
    for t in d.timeline:
        summary = (t["summary"] or "").replace("|", "\\|")
        out.append(f"| {t['simulated'] or ''} | {t['real']} | {t['step'] or ''} | {t['kind']} | {t['status'] or ''} | {summary} |")
    return "\n".join(out) + "\n"
