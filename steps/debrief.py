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

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "scenario": self.scenario,
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
    "delete-user-order": Check("What DeleteUser needs first", "Tear down in DeleteUser's order, then delete the user", _delete_user_order),
}


def gotcha_name(gotcha_id: str) -> str:
    """A gotcha's name for a briefing; an unknown id (a trainer's own) as words."""
    check = CHECKS.get(gotcha_id)
    return check.name if check else gotcha_id.replace("-", " ").capitalize()


def _end_state(world: dict[str, Any] | None, target: str) -> list[str]:
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
    for place, held in sorted(world.get("places", {}).items()):
        key_id, owner = held.get("key_id"), held.get("secret_of")
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


def build(journal: Journal, audit: Audit, ref: str) -> Debrief:
    from steps.sandbox import scenario as scenarios

    row = journal.find_session(ref)
    world = json.loads(row.world) if row.world else None
    facts = _Facts(row, journal.events(row.id), journal.facts(row.id), audit.for_session(row.id), world)
    scenario_id = (world or {}).get("scenario") or row.options.get("scenario")
    scenario = None
    if scenario_id:
        try:
            scenario = scenarios.load(scenario_id)
        except Exception:  # a scenario file that changed or vanished: debrief what we can
            scenario = None
    verdicts = []
    for gotcha in scenario.gotchas if scenario else []:
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
        end_state=_end_state(world, row.target),
        rollback=rollback,
    )


def to_text(d: Debrief) -> str:
    out = [f"debrief: {d.title} (session {d.session}, {d.status})"]
    if d.teaches:
        out.append(f"  teaches: {d.teaches}")
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
    out = [f"# Debrief: {d.title}", "", f"Session `{d.session}` · scenario `{d.scenario}` · status **{d.status}**", ""]
    if d.teaches:
        out += [f"*{d.teaches}*", ""]
    out += ["## Gotchas", "", "| gotcha | verdict | what happened |", "|---|---|---|"]
    out += [f"| {v.title} | **{v.verdict}** | {v.detail} |" for v in d.gotchas]
    out += ["", "## Rollback", "", d.rollback, "", "## End state of the world", ""]
    out += [f"- {line}" for line in d.end_state]
    out += ["", "## Timeline", "", "| simulated | real | step | event | status | summary |", "|---|---|---|---|---|---|"]
    for t in d.timeline:
        summary = (t["summary"] or "").replace("|", "\\|")
        out.append(f"| {t['simulated'] or ''} | {t['real']} | {t['step'] or ''} | {t['kind']} | {t['status'] or ''} | {summary} |")
    return "\n".join(out) + "\n"
