"""Step 8 of the SOP: the audit record of a completed rotation."""

from __future__ import annotations

import json

from steps import cloudtrail as ct
from steps.actions import action
from steps.actions import evidence as trail
from steps.actions.base import Outcome, StepContext

COMPLETED = "secret.rotate.completed"


@action(
    "audit.rotation_completed",
    title="Write the rotation's audit record",
    command="handrail audit show --session <session>  # action: secret.rotate.completed",
    needs=("target_user", "old_key_id", "new_key_id", "operator_arn"),
    produces=("audit_line",),
    mutates=True,
)
def rotation_completed(ctx: StepContext) -> Outcome:
    existing = ctx.audit.find(ctx.session_id, COMPLETED)
    if existing is not None:
        return Outcome.done(f"already recorded (audit line {existing})", audit_line=str(existing))
    context = {
        "secret_name": "AWS_ACCESS_KEY_ID",
        "iam_user": ctx.value("target_user"),
        "old_key_id": ctx.fact("old_key_id"),
        "new_key_id": ctx.fact("new_key_id"),
        "method": ctx.method,
    }
    line = ctx.audit.append(COMPLETED, session=ctx.session_id, actor=ctx.fact("operator_arn"), context=context)
    evidence = [f"action: {COMPLETED}", f"actor: {ctx.fact('operator_arn')}"] + [f"{k}: {v}" for k, v in context.items()]
    # Beside the audit record: CloudTrail's own record of the session's writes.
    found = trail.corroborate(ctx)
    evidence += found.lines
    summary = f"audit line {line}: {COMPLETED}"
    if found.facts.get(ct.FACT_CORROBORATION):
        data = json.loads(found.facts[ct.FACT_CORROBORATION])
        if data["missing"]:
            summary += f"; WARNING: {data['missing']} write(s) missing from CloudTrail"
        else:
            summary += f"; CloudTrail corroborates {len(data['writes']) - data['pending']} of {len(data['writes'])} write(s)"
    return Outcome.done(summary, evidence, audit_line=str(line), **found.facts)
