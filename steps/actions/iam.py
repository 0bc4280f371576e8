"""IAM actions: the AWS half of the access-key rotation SOP, through boto3.

Each action lists the keys first and acts on what it finds, so it can run twice.
The secret of a new key is captured once, into `ctx.secrets`, and never leaves memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import StrictBool

from steps import aws
from steps.actions import action
from steps.actions.base import ActionFailed, ActionRefused, Choice, Outcome, Params, Preview, StepContext, WaitParams
from steps.actions.consumers import vault_old_pair, verify_all
from steps.aws import AwsCallFailed, KeyInfo, aws_error, error_code, find_key, parse_check_call
from steps.clock import human_duration, iso, parse_iso, utc
from steps.consumers.base import Pair
from steps.secrets import Secret

# -- the AWS helpers, as step failures ------------------------------------------------------


@contextmanager
def _step_fails() -> Iterator[None]:
    """An AWS helper's one-line failure is the step's."""
    try:
        yield
    except AwsCallFailed as exc:
        raise ActionFailed(str(exc)) from None


def _list_keys(ctx: StepContext, user: str, with_last_used: bool = True) -> list[KeyInfo]:
    with _step_fails():
        return aws.list_keys(ctx.wiring.aws_client("iam"), user, with_last_used=with_last_used, account=ctx.facts.get("account_id", "?"))


def _set_status(ctx: StepContext, user: str, key_id: str, status: str) -> None:
    with _step_fails():
        aws.set_key_status(ctx.wiring.aws_client("iam"), user, key_id, status)


def _delete_key(ctx: StepContext, user: str, key_id: str) -> None:
    with _step_fails():
        aws.delete_key(ctx.wiring.aws_client("iam"), user, key_id)


def _caller_arn(ctx: StepContext, pair: Pair | None) -> str:
    return ctx.wiring.aws_client("sts", pair).get_caller_identity()["Arn"]


def _new_pair(ctx: StepContext) -> Pair | None:
    secret = ctx.secrets.get("new_secret")
    return Pair(ctx.facts["new_key_id"], secret) if secret and ctx.facts.get("new_key_id") else None


# Eventual consistency: a new key may be refused for up to a minute with one of these.
_NOT_YET_VALID = ("InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied")


def _wait_until_valid(ctx: StepContext, pair: Pair, expect_arn: str, deadline: float, interval: float, what: str) -> tuple[float, int]:
    """Poll sts get-caller-identity with `pair` until it answers as `expect_arn`.

    Returns (seconds it took, attempts). A refusal that eventual consistency explains is
    waited out; anything else fails at once.
    """
    last = ""

    def authenticates() -> bool:
        nonlocal last
        try:
            arn = _caller_arn(ctx, pair)
        except Exception as exc:
            if error_code(exc) not in _NOT_YET_VALID:
                raise ActionFailed(f"sts get-caller-identity with {what}: {aws_error(exc)}") from None
            last = aws_error(exc)
            return False
        if arn != expect_arn:
            raise ActionFailed(f"{what} authenticates as {arn}, not {expect_arn}")
        return True

    polled = ctx.clock.poll(
        authenticates, deadline=deadline, interval=interval, progress=ctx.progress, what=f"sts get-caller-identity with {what}"
    )
    if not polled.ok:
        raise ActionFailed(
            f"{what} still refused after {human_duration(polled.elapsed)} ({polled.attempts} attempts): {last}",
            [f"polled sts get-caller-identity every {interval:g} s for {human_duration(polled.elapsed)}"],
        )
    return polled.elapsed, polled.attempts


# -- step 1: pre-rotation checks ------------------------------------------------------------


@action(
    "iam.pre_checks",
    title="Check the operator, the target user and its keys",
    command="aws sts get-caller-identity && aws iam list-access-keys --user-name {target_user}",
    needs=("target_user",),
    produces=("account_id", "operator_arn", "target_arn", "old_key_id", "keys_before", "vault_versions_before"),
    mutates=False,
)
def pre_checks(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    evidence: list[str] = []
    try:
        ident = ctx.wiring.aws_client("sts").get_caller_identity()
    except Exception as exc:
        raise ActionFailed(f"cannot tell who you are: sts get-caller-identity: {aws_error(exc)}") from None
    operator_arn, account = ident["Arn"], ident["Account"]
    evidence.append(f"operator: {operator_arn} (account {account})")
    try:
        target_arn = ctx.wiring.aws_client("iam").get_user(UserName=user)["User"]["Arn"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            raise ActionRefused(
                f"IAM user {user!r} does not exist in account {account}",
                evidence,
                remedy="check the user name and the account, then start a new session",
            ) from None
        raise ActionFailed(f"iam get-user {user}: {aws_error(exc)}", evidence) from None
    evidence.append(f"target:   {target_arn}")

    if operator_arn == target_arn:
        if ctx.inputs.get("allow_self_rotation") != "yes":
            raise ActionRefused(
                f"you are signed in as {user}, the user being rotated (the SOP's first prerequisite: rotate as a different IAM identity)",
                evidence,
                remedy="sign in as a different IAM identity and start a new session, or start one with --allow-self-rotation (warned, audited)",
            )
        evidence.append(
            "WARNING: self-rotation: you are rotating the key you are signed in with. handrail signs with "
            "the new key once it is validated; a session resumed later signs with whatever your environment "
            "holds, which may be the deactivated key. The SOP calls this less common, less recommended."
        )

    now = ctx.now()
    keys = _list_keys(ctx, user)
    evidence.append(f"{len(keys)} access key(s) (max 2 per user):")
    evidence += ["  " + k.describe(now) for k in keys]
    active = [k for k in keys if k.status == "Active"]
    if not keys:
        raise ActionFailed(f"{user} has no access key: there is nothing to rotate", evidence)
    if not active:
        raise ActionFailed(f"{user} has no Active key: there is nothing to rotate (all keys are Inactive)", evidence)

    facts = {
        "account_id": account,
        "operator_arn": operator_arn,
        "target_arn": target_arn,
        "keys_before": ",".join(f"{k.key_id}:{k.status}" for k in keys),
    }
    held, versions, vault_lines = vault_old_pair(ctx)
    evidence += vault_lines
    outcome_secrets = {}
    if held is not None:
        key = find_key(keys, held.key_id)
        if key is None or key.status != "Active":
            raise ActionFailed(
                f"the vault holds {held.key_id}, which is not an Active key of {user} "
                f"({'no such key' if key is None else key.status}): fix the vault or the inventory before rotating",
                evidence,
            )
        try:
            arn = _caller_arn(ctx, held)
        except Exception as exc:
            raise ActionFailed(f"the old pair from the vault does not authenticate: {aws_error(exc)}", evidence) from None
        if arn != target_arn:
            raise ActionFailed(f"the old pair from the vault authenticates as {arn}, not {target_arn}", evidence)
        evidence.append(f"old pair from the vault authenticates: sts get-caller-identity -> {arn}")
        facts["vault_versions_before"] = json.dumps(versions)
        outcome_secrets["old_secret"] = held.secret
    if len(active) == 1 or held is not None:
        old = find_key(keys, held.key_id) if held is not None else active[0]
        facts["old_key_id"] = old.key_id
        evidence.append(f"old key (to rotate): {old.key_id}")
        if held is None:
            evidence.append(
                f"old key last used {old.last_used_text(now)}: this stands in for an authentication test, "
                "as no vault is configured for this user (inventory) to read the old pair from"
            )
    if len(active) == 2:
        evidence.append("two Active keys: the next step makes you choose which one to retire")
    summary = f"{user}: {len(keys)} key(s), {len(active)} Active; operator is {'the target (self-rotation)' if operator_arn == target_arn else 'a different identity'}"
    outcome = Outcome.done(summary, evidence, **facts)
    outcome.secrets.update(outcome_secrets)
    return outcome


# -- step 1b: free a key slot ---------------------------------------------------------------


class FreeSlotParams(Params):
    # A safety rule the runbook states: an Inactive key used more recently than this was
    # deactivated recently, maybe by a rotation still under observation. Deleting it
    # blocks (an audited override may pass it); 0s turns the rule off.
    block_if_used_within: float = 24 * 3600


def _slot_preview(ctx: StepContext) -> Preview:
    user = ctx.value("target_user")
    keys = _list_keys(ctx, user)
    now = ctx.now()
    if len(keys) < 2:
        return Preview([f"{user} has {len(keys)} key(s): a slot is free, nothing to delete"], confirm="auto", nothing_to_do=True)
    inactive = [k for k in keys if k.status == "Inactive"]
    if inactive:
        k = inactive[0]
        return Preview(
            [
                f"{user} has 2 keys (the maximum); the Inactive one occupies the slot the new key needs.",
                f"will delete Inactive key {k.key_id}, last used {k.last_used_text(now)}",
            ],
            expect=k.key_id,
        )
    in_vault = ctx.facts.get("old_key_id") if ctx.facts.get("vault_versions_before") else None

    def label(k: KeyInfo) -> str:
        return k.describe(now) + ("  <- held by the vault: in use" if k.key_id == in_vault else "")

    return Preview(
        [
            f"{user} has two Active keys (the maximum). One must be retired (deactivated, then deleted) before a new key can exist.",
            "Check each key's last use; the one you retire stops working at once and cannot be restored.",
        ]
        + ["  " + label(k) for k in keys],
        confirm="typed",
        choices=[Choice(k.key_id, label(k)) for k in keys],
        prompt="type the id of the Active key to retire",
    )


@action(
    "iam.free_key_slot",
    title="Free a key slot (max 2 keys per user)",
    command="aws iam get-access-key-last-used --access-key-id <key> && aws iam delete-access-key --user-name {target_user} --access-key-id <key>",
    needs=("target_user", "account_id"),
    produces=("old_key_id", "retired_key_id"),
    mutates=True,
    params=FreeSlotParams,
    preview=_slot_preview,
)
def free_key_slot(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    params: FreeSlotParams = ctx.params
    keys = _list_keys(ctx, user)
    now = ctx.now()
    evidence = ["  " + k.describe(now) for k in keys]
    if len(keys) < 2:
        active = [k for k in keys if k.status == "Active"]
        facts = {"old_key_id": ctx.facts.get("old_key_id") or (active[0].key_id if len(active) == 1 else "")}
        outcome = Outcome.done(f"a slot is free ({len(keys)} key)", evidence, **facts)
        outcome.changed = False
        return outcome

    inactive = [k for k in keys if k.status == "Inactive"]
    if inactive:
        victim = inactive[0]
        keep = next(k for k in keys if k is not victim)
        idle = (now - victim.last_used).total_seconds() if victim.last_used else None
        evidence.append(f"Inactive key {victim.key_id} last used {victim.last_used_text(now)}")
        if idle is not None and idle < params.block_if_used_within and not ctx.override:
            return Outcome.blocked(
                f"Inactive key {victim.key_id} was used {human_duration(idle)} ago: it was deactivated recently "
                f"(a rotation under observation?). Check before deleting it; override with a reason to delete anyway",
                evidence,
            )
        _delete_key(ctx, user, victim.key_id)
        evidence.append(f"deleted Inactive key {victim.key_id}")
        return Outcome.done(
            f"deleted Inactive key {victim.key_id}; slot free", evidence, old_key_id=keep.key_id, retired_key_id=victim.key_id
        )

    # Two Active keys: the operator chose one by typing its id.
    chosen = find_key(keys, ctx.answer)
    if chosen is None:
        raise ActionFailed(
            f"two Active keys: type the id of the one to retire ({' or '.join(k.key_id for k in keys)}); got {ctx.answer!r}",
            evidence,
        )
    if chosen.key_id == ctx.facts.get("old_key_id") and ctx.facts.get("vault_versions_before"):
        raise ActionRefused(
            f"{chosen.key_id} is the key the vault holds, so every consumer uses it: retiring it would cut them off. "
            "Retire the other one (check its last use)",
            evidence,
            remedy="run the step again and type the other key's id (--retire-key)",
        )
    keep = next(k for k in keys if k is not chosen)
    _set_status(ctx, user, chosen.key_id, "Inactive")
    evidence.append(f"deactivated {chosen.key_id} (was Active, last used {chosen.last_used_text(now)})")
    _delete_key(ctx, user, chosen.key_id)
    evidence.append(f"deleted {chosen.key_id}; {keep.key_id} is the key being rotated")
    return Outcome.done(
        f"retired Active key {chosen.key_id} (operator's typed choice); slot free",
        evidence,
        old_key_id=keep.key_id,
        retired_key_id=chosen.key_id,
    )


# -- step 2: create the new key -------------------------------------------------------------


@action(
    "iam.create_key",
    title="Create the new access key",
    command="aws iam create-access-key --user-name {target_user}",
    needs=("target_user", "old_key_id"),
    produces=("new_key_id", "new_key_created"),
    produces_secrets=("new_secret",),
    mutates=True,
)
def create_key(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    evidence: list[str] = []
    keys = _list_keys(ctx, user, with_last_used=False)
    previous = find_key(keys, ctx.facts.get("new_key_id"))
    if previous is not None:
        if "new_secret" in ctx.secrets:
            return Outcome.done(
                f"already created: {previous.key_id}",
                [f"{previous.key_id} exists and its secret is in memory ({ctx.secrets['new_secret'].fingerprint()})"],
                new_key_id=previous.key_id,
                new_key_created=iso(previous.created),
            )
        # Created by this session in a process that has ended before anything stored
        # the secret: nobody can ever use that key. Replace it.
        _delete_key(ctx, user, previous.key_id)
        evidence.append(
            f"{previous.key_id} was created by this session, but its secret ended with the previous process "
            "before anything stored it; deleted it so a fresh key can take the slot"
        )
        keys = [k for k in keys if k.key_id != previous.key_id]
    # A key that appeared after step 1 and that no fact names: the previous process died
    # inside create-key after AWS made it. Nobody ever held its secret.
    before = {item.split(":")[0] for item in ctx.facts.get("keys_before", "").split(",") if item}
    if before:
        for orphan in [k for k in keys if k.key_id not in before and k.key_id != ctx.facts.get("old_key_id")]:
            _delete_key(ctx, user, orphan.key_id)
            evidence.append(
                f"{orphan.key_id} appeared after step 1 (created {iso(orphan.created)}) and nothing holds its secret: "
                "the previous process died inside this step after AWS created it; deleted it"
            )
            keys = [k for k in keys if k.key_id != orphan.key_id]
    if len(keys) >= 2:
        raise ActionFailed(f"{user} already has 2 keys (the maximum): free a slot first (step 1b)", evidence)
    try:
        created = ctx.wiring.aws_client("iam").create_access_key(UserName=user)["AccessKey"]
    except Exception as exc:
        raise ActionFailed(f"create-access-key for {user}: {aws_error(exc)}", evidence) from None
    secret = Secret(created["SecretAccessKey"], "new_secret")
    key_id = created["AccessKeyId"]
    evidence.append(f"created {key_id} ({created['Status']}) at {iso(utc(created['CreateDate']))}")
    evidence.append(f"secret captured once, held in memory only (fingerprint {secret.fingerprint()})")
    outcome = Outcome.done(f"created {key_id}", evidence, new_key_id=key_id, new_key_created=iso(utc(created["CreateDate"])))
    outcome.secrets["new_secret"] = secret
    return outcome


@action(
    "iam.deactivate_new_key",
    title="Deactivate the new key",
    command="aws iam update-access-key --user-name {target_user} --access-key-id {new_key_id} --status Inactive",
    needs=("target_user", "new_key_id"),
    mutates=True,
)
def deactivate_new_key(ctx: StepContext) -> Outcome:
    user, key_id = ctx.value("target_user"), ctx.fact("new_key_id")
    key = find_key(_list_keys(ctx, user, with_last_used=False), key_id)
    if key is None:
        return Outcome.done(f"new key {key_id} no longer exists: nothing to deactivate")
    if key.status == "Inactive":
        return Outcome.done(f"new key {key_id} is already Inactive")
    _set_status(ctx, user, key_id, "Inactive")
    return Outcome.done(
        f"deactivated new key {key_id}",
        [f"{key_id}: Active -> Inactive (it keeps its slot until the next rotation deletes it)"],
    )


# -- step 3: validate the new key -----------------------------------------------------------


@action(
    "iam.validate_new_key",
    title="Validate the new key (waiting out eventual consistency)",
    command="AWS_ACCESS_KEY_ID={new_key_id} AWS_SECRET_ACCESS_KEY=$NEW_SECRET aws sts get-caller-identity",
    needs=("target_user", "target_arn", "new_key_id"),
    needs_secrets=("new_secret",),
    produces=("new_key_valid_after",),
    mutates=False,
    params=WaitParams,
)
def validate_new_key(ctx: StepContext) -> Outcome:
    params: WaitParams = ctx.params
    pair = _new_pair(ctx)
    if pair is None:
        raise ActionFailed("the new key's secret is not in memory (see create-key)")
    took, attempts = _wait_until_valid(ctx, pair, ctx.fact("target_arn"), params.deadline, params.interval, "the new key")
    evidence = [
        f"sts get-caller-identity with {pair.key_id} -> {ctx.fact('target_arn')}",
        f"valid after {human_duration(took)} ({attempts} attempt{'s' if attempts > 1 else ''}; deadline {human_duration(params.deadline)})",
    ]
    if ctx.facts.get("operator_arn") == ctx.fact("target_arn"):
        # Self-rotation: the old key is about to be deactivated, and this session signs
        # with it. From here on it signs with the new one.
        ctx.wiring.switch_operator(pair)
        evidence.append("self-rotation: this session now signs its own calls with the new key")
    call_text = ctx.inputs.get("check_call")
    if call_text:
        call = parse_check_call(call_text)
        client = ctx.wiring.aws_client(call.service, pair)
        try:
            result = aws.run_check_call(client, call)
        except Exception as exc:
            raise ActionFailed(f"{call.cli()} with the new key: {aws_error(exc)}") from None
        evidence.append(f"{call.cli()} with the new key -> {result}")
    else:
        evidence.append("no representative call configured for this user (--check-call): identity check only")
    return Outcome.done(f"new key {pair.key_id} works (valid after {human_duration(took)})", evidence, new_key_valid_after=f"{took:.1f}")


# -- step 7: deactivate the old key ---------------------------------------------------------


class DeactivateOldKeyParams(Params):
    # The SOP's "sleep 60" after deactivating: consumers may have cached credentials.
    settle: float = 60.0
    # A safety rule the runbook states: while a consumer is not verified on the new key
    # (no `downstream_verified_at` from step 6), deactivating the old key could cut it
    # off, so the step blocks (an audited override may pass it).
    block_until_consumers_verified: StrictBool = True

    def needs(self) -> dict[str, str]:
        return {"block_until_consumers_verified": "downstream_verified_at"} if self.block_until_consumers_verified else {}


@action(
    "iam.deactivate_old_key",
    title="Deactivate the old key (not delete)",
    command="aws iam update-access-key --user-name {target_user} --access-key-id {old_key_id} --status Inactive",
    needs=("target_user", "old_key_id", "new_key_id", "target_arn"),
    produces=("deactivated_at",),
    mutates=True,
    params=DeactivateOldKeyParams,
)
def deactivate_old_key(ctx: StepContext) -> Outcome:
    params: DeactivateOldKeyParams = ctx.params
    user, old_id, new_id = ctx.value("target_user"), ctx.fact("old_key_id"), ctx.fact("new_key_id")
    keys = _list_keys(ctx, user, with_last_used=False)
    new, old = find_key(keys, new_id), find_key(keys, old_id)
    if new is None or new.status != "Active":
        raise ActionFailed(f"refusing to deactivate the old key: the new key {new_id} is {'gone' if new is None else new.status}")
    evidence: list[str] = []
    consumers = ctx.wiring.consumers_for(user)
    unverified = consumers and not ctx.facts.get("downstream_verified_at")
    if params.block_until_consumers_verified and old is not None and old.status == "Active" and unverified:
        if not ctx.override:
            return Outcome.blocked(
                f"not every consumer was verified on the new key (step 6 has not passed): deactivating {old_id} "
                "would cut off any consumer still on it. Verify them, or override with a reason",
                [f"consumers: {', '.join(c.name for c in consumers)}"],
            )
        evidence.append(f"deactivating before every consumer verified, overridden: {ctx.override}")
    if not consumers:
        evidence.append(
            "no consumer inventory for this user: handrail cannot tell who still uses the old key; "
            "the observation gate and the last-used check before the delete are the safety net"
        )
    if old is None:
        return Outcome.done(
            f"old key {old_id} no longer exists",
            evidence + [f"{old_id} is already deleted"],
            deactivated_at=ctx.facts.get("deactivated_at") or iso(ctx.now()),
        )
    if old.status == "Active":
        _set_status(ctx, user, old_id, "Inactive")
        deactivated_at = iso(ctx.now())
        evidence.append(f"{old_id}: Active -> Inactive at {deactivated_at}")
    else:
        deactivated_at = ctx.facts.get("deactivated_at") or iso(ctx.now())
        evidence.append(f"{old_id} was already Inactive")

    # Consumers may hold cached credentials, and the deactivation itself takes time to
    # reach every endpoint. With the old secret at hand, poll until AWS refuses it.
    old_secret = ctx.secrets.get("old_secret")
    if old_secret is not None:

        def refused() -> bool:
            try:
                _caller_arn(ctx, Pair(old_id, old_secret))
            except Exception as exc:
                if error_code(exc) == "InvalidClientTokenId":
                    return True
                raise ActionFailed(f"checking the old key after deactivation: {aws_error(exc)}", evidence) from None
            return False

        polled = ctx.clock.poll(
            refused, deadline=params.settle, interval=2.0, progress=ctx.progress, what="waiting for AWS to refuse the old key"
        )
        took = human_duration(polled.elapsed)
        evidence.append(
            f"AWS refuses the old key after {took}"
            if polled.ok
            else f"AWS still accepted the old key after {took} (propagation is slow): continuing"
        )
    else:
        # Nothing to check: the wait is the SOP's plain sleep, shown as progress.
        ctx.clock.poll(
            lambda: False, deadline=params.settle, interval=5.0, progress=ctx.progress, what="settling: consumers may cache credentials"
        )
        evidence.append(f"waited {human_duration(params.settle)} for cached credentials to expire")

    pair = _new_pair(ctx)
    if pair is None:
        evidence.append("the new secret is not in memory (resumed session): new-key check skipped")
    else:
        arn = _caller_arn(ctx, pair)
        evidence.append(f"new key still works after the deactivation: {arn}")
        if consumers:
            results, lines = verify_all(ctx, pair, deadline=params.settle, interval=5.0)
            evidence += lines
            broken = [c.name for c, r in results if not r.ok]
            if broken:
                return Outcome.failed(
                    f"{', '.join(broken)} stopped working after the old key was deactivated: roll back to reactivate it",
                    evidence,
                    deactivated_at=deactivated_at,
                )
    return Outcome.done(f"old key {old_id} is Inactive (not deleted: it can be reactivated)", evidence, deactivated_at=deactivated_at)


@action(
    "iam.reactivate_old_key",
    title="Reactivate the old key",
    command="aws iam update-access-key --user-name {target_user} --access-key-id {old_key_id} --status Active",
    needs=("target_user", "old_key_id"),
    mutates=True,
)
def reactivate_old_key(ctx: StepContext) -> Outcome:
    user, old_id = ctx.value("target_user"), ctx.fact("old_key_id")
    key = find_key(_list_keys(ctx, user, with_last_used=False), old_id)
    if key is None:
        raise ActionFailed(f"old key {old_id} was deleted: it cannot be reactivated")
    if key.status == "Active":
        return Outcome.done(f"old key {old_id} is already Active")
    _set_status(ctx, user, old_id, "Active")
    return Outcome.done(f"reactivated old key {old_id}", [f"{old_id}: Inactive -> Active"])


# -- step 7b: delete the old key ------------------------------------------------------------


@action(
    "iam.delete_old_key",
    title="Delete the old key, after checking its last use",
    command="aws iam get-access-key-last-used --access-key-id {old_key_id} && aws iam delete-access-key --user-name {target_user} --access-key-id {old_key_id}",
    needs=("target_user", "old_key_id", "deactivated_at"),
    produces=("deleted_at",),
    mutates=True,
)
def delete_old_key(ctx: StepContext) -> Outcome:
    user, old_id = ctx.value("target_user"), ctx.fact("old_key_id")
    now = ctx.now()
    keys = _list_keys(ctx, user)
    old = find_key(keys, old_id)
    if old is None:
        return Outcome.done(f"old key {old_id} is already deleted", deleted_at=ctx.facts.get("deleted_at") or iso(now))
    if old.status != "Inactive":
        raise ActionFailed(f"old key {old_id} is {old.status}: deactivate it first (step 7); an Active key is never deleted here")
    deactivated = parse_iso(ctx.fact("deactivated_at"))
    evidence = [
        f"get-access-key-last-used {old_id}: {old.last_used_text(now)}",
        f"deactivated at {iso(deactivated)} ({human_duration((now - deactivated).total_seconds())} ago)",
    ]
    if old.last_used is not None and old.last_used > deactivated:
        if not ctx.override:
            return Outcome.blocked(
                f"old key {old_id} was used at {iso(old.last_used)}, after it was deactivated at {iso(deactivated)}: "
                "something still holds it. Find that consumer (CloudTrail shows the caller) before deleting",
                evidence,
            )
        evidence.append(f"use after deactivation overridden: {ctx.override}")
    else:
        evidence.append("no use since it was deactivated: no consumer is still hitting the old key")
    _delete_key(ctx, user, old_id)
    evidence.append(f"deleted {old_id}; it is unrecoverable")
    return Outcome.done(f"deleted old key {old_id}", evidence, deleted_at=iso(now))
