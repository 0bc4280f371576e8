"""IAM actions: the AWS half of the access-key rotation SOP, through boto3.

Each action lists the keys first and acts on what it finds, so it can run twice.
The secret of a new key is captured once, into `ctx.secrets`, and never leaves memory.
"""

from __future__ import annotations

import json
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import StrictBool

from steps import aws
from steps import cloudtrail as ct
from steps.actions import action
from steps.actions import evidence as trail
from steps.actions.base import ActionFailed, ActionRefused, Choice, Outcome, Params, Preview, StepContext, WaitParams
from steps.actions.consumers import old_pair, vault_old_pair, verify_all
from steps.aws import (
    AwsCallFailed,
    KeyInfo,
    LastUse,
    OwnUse,
    Use,
    aws_error,
    error_code,
    find_key,
    floor_second,
    iso_full,
    judge_last_use,
    parse_check_call,
)
from steps.clock import human_duration, iso, parse_iso, utc
from steps.consumers.base import Consumer, Pair
from steps.secrets import Secret

T = TypeVar("T")

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
    trail.expect(ctx, "UpdateAccessKey", user, key_id, status)


def _delete_key(ctx: StepContext, user: str, key_id: str) -> None:
    with _step_fails():
        aws.delete_key(ctx.wiring.aws_client("iam"), user, key_id)
    trail.expect(ctx, "DeleteAccessKey", user, key_id)


def _caller_arn(ctx: StepContext, pair: Pair | None) -> str:
    return str(ctx.wiring.aws_client("sts", pair).get_caller_identity()["Arn"])


def _new_pair(ctx: StepContext) -> Pair | None:
    secret = ctx.secrets.get("new_secret")
    return Pair(ctx.facts["new_key_id"], secret) if secret and ctx.facts.get("new_key_id") else None


# -- last use: handrail's own calls told apart ----------------------------------------------


class _Uses:
    """The last use of the keys a step signs with (facts `use_seen:` and `own_use:`, see
    steps.aws). AWS keeps one last use per key, so before handrail signs with a key it
    reads the key's last use (a consumer's use is kept before its own call hides it), and
    records the interval of each call AWS accepted as its own."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.facts: dict[str, str] = {}

    @property
    def known(self) -> Mapping[str, str]:
        return ChainMap(self.facts, dict(self.ctx.facts))

    def judge(self, key: KeyInfo) -> LastUse:
        return judge_last_use(key.key_id, key.use, self.known)

    def saw(self, key_id: str, last: LastUse) -> LastUse:
        """Keep the latest use by anything but handrail."""
        self.facts[f"use_seen:{key_id}"] = last.consumer.fact() if last.consumer else "never"
        return last

    def read(self, key_id: str) -> LastUse:
        with _step_fails():
            when, service, region = aws.key_last_used(self.ctx.wiring.aws_client("iam"), key_id)
        return self.saw(key_id, judge_last_use(key_id, Use(when, service, region) if when else None, self.known))

    def call(self, key_id: str, signed: Callable[[], T]) -> T:
        """Make one call signed with `key_id`: its last use is read first; the call is
        recorded as handrail's own if AWS accepted it (a refused call is no use). The
        call's failure propagates as it is; a failure to read the last use is ActionFailed."""
        self.read(key_id)
        start = self.ctx.now()
        result = signed()
        self.facts[f"own_use:{key_id}"] = OwnUse(start, self.ctx.now()).fact()
        return result

    def own_at(self, key_id: str) -> str:
        own = OwnUse.from_fact(self.known.get(f"own_use:{key_id}"))
        return iso_full(own.end) if own else "?"


# Eventual consistency: a new key may be refused for up to a minute with one of these.
_NOT_YET_VALID = ("InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied")


def _wait_until_valid(
    ctx: StepContext, uses: _Uses, pair: Pair, expect_arn: str, deadline: float, interval: float, what: str
) -> tuple[float, int]:
    """Poll sts get-caller-identity with `pair` until it answers as `expect_arn`.

    Returns (seconds it took, attempts). A refusal that eventual consistency explains is
    waited out; anything else fails at once.
    """
    last = ""

    def authenticates() -> bool:
        nonlocal last
        try:
            arn = uses.call(pair.key_id, lambda: _caller_arn(ctx, pair))
        except ActionFailed:
            raise
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
    # Every key's last use, read before handrail signs anything with any of them: the
    # consumers' real uses, kept as facts (handrail's own calls would hide them).
    keys = _list_keys(ctx, user)
    uses = _Uses(ctx)
    last = {k.key_id: uses.saw(k.key_id, uses.judge(k)) for k in keys}
    evidence.append(f"{len(keys)} access key(s) (max 2 per user):")
    evidence += ["  " + k.describe(now, last[k.key_id]) for k in keys]
    active = [k for k in keys if k.status == "Active"]
    if not keys:
        raise ActionFailed(f"{user} has no access key: there is nothing to rotate", evidence)
    if not active:
        raise ActionFailed(f"{user} has no Active key: there is nothing to rotate (all keys are Inactive)", evidence)
    if operator_arn == target_arn:
        evidence.append(
            f"self-rotation: handrail signs every call with a key of {user}, so that key's last use is handrail's own from here on"
        )

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
            arn = uses.call(held.key_id, lambda: _caller_arn(ctx, held))
        except ActionFailed as exc:
            return Outcome.failed(exc.summary, evidence, **uses.facts)
        except Exception as exc:
            return Outcome.failed(f"the old pair from the vault does not authenticate: {aws_error(exc)}", evidence, **uses.facts)
        if arn != target_arn:
            # The call was made: its facts go with the failure, so a retry tells it apart.
            return Outcome.failed(f"the old pair from the vault authenticates as {arn}, not {target_arn}", evidence, **uses.facts)
        evidence.append(
            f"old pair from the vault authenticates: sts get-caller-identity -> {arn} "
            f"(handrail's own use of {held.key_id} at {uses.own_at(held.key_id)}: never counted as a consumer's)"
        )
        facts["vault_versions_before"] = json.dumps(versions)
        outcome_secrets["old_secret"] = held.secret
    if len(active) == 1 or held is not None:
        old = find_key(keys, held.key_id) if held is not None else active[0]
        assert old is not None  # the vault's key was found Active above
        facts["old_key_id"] = old.key_id
        evidence.append(f"old key (to rotate): {old.key_id}")
        if held is None:
            evidence.append(
                f"old key last used {last[old.key_id].text(now)}: this stands in for an authentication test, "
                "as no vault is configured for this user (inventory) to read the old pair from"
            )
    if len(active) == 2:
        evidence.append("two Active keys: the next step makes you choose which one to retire")
    summary = f"{user}: {len(keys)} key(s), {len(active)} Active; operator is {'the target (self-rotation)' if operator_arn == target_arn else 'a different identity'}"
    if facts.get("old_key_id"):
        # Who used the old key lately, before anything changes (CloudTrail).
        found = trail.callers_before(ctx, user, facts["old_key_id"])
        evidence += found.lines
        facts.update(found.facts)
        if trail.FORGOTTEN in found.facts:
            unmatched = [c for c in json.loads(found.facts[ct.FACT_CALLERS])["callers"] if not c["consumer"]]
            first = unmatched[0]
            summary += (
                f"; WARNING: CloudTrail shows {len(unmatched)} caller(s) of the old key matching no consumer: "
                f"{first['source_ip']} ({first['user_agent']})" + (" and more" if len(unmatched) > 1 else "")
            )
        elif found.unavailable:
            summary += "; CloudTrail unavailable: last use alone"
    outcome = Outcome.done(summary, evidence, **facts, **uses.facts)
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
    uses = _Uses(ctx)
    inactive = [k for k in keys if k.status == "Inactive"]
    if inactive:
        k = inactive[0]
        return Preview(
            [
                f"{user} has 2 keys (the maximum); the Inactive one occupies the slot the new key needs.",
                f"will delete Inactive key {k.key_id}, last used {uses.judge(k).text(now)}",
            ],
            expect=k.key_id,
        )
    in_vault = ctx.facts.get("old_key_id") if ctx.facts.get("vault_versions_before") else None

    def label(k: KeyInfo) -> str:
        # The consumer's real last use: step 1 read it before handrail signed with the key.
        return k.describe(now, uses.judge(k)) + ("  <- held by the vault: in use" if k.key_id == in_vault else "")

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
    uses = _Uses(ctx)
    last = {k.key_id: uses.judge(k) for k in keys}
    evidence = ["  " + k.describe(now, last[k.key_id]) for k in keys]
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
        used = last[victim.key_id].consumer
        idle = (now - used.at).total_seconds() if used else None
        evidence.append(f"Inactive key {victim.key_id} last used {last[victim.key_id].text(now)}")
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
    evidence.append(f"deactivated {chosen.key_id} (was Active, last used {last[chosen.key_id].text(now)})")
    _delete_key(ctx, user, chosen.key_id)
    evidence.append(f"deleted {chosen.key_id}; {keep.key_id} is the key being rotated")
    return Outcome.done(
        f"retired Active key {chosen.key_id} (operator's typed choice); slot free",
        evidence,
        old_key_id=keep.key_id,
        retired_key_id=chosen.key_id,
    )


# -- step 2: create the new key -------------------------------------------------------------


# What create-key finds before it creates. A key no fact of this session names is one of:
# - an orphan: made by a create request of this session that no answer reached (the process
#   died, or the call timed out). Just before the request the step records its instant
#   (`create_requested`, at full precision), and once AWS answers, `create_answered` takes
#   the same value. Only an unanswered request can leave an orphan, and AWS made it after
#   the request and before the request's retries and timeouts ran out (ORPHAN_WINDOW, with
#   a margin); created-at is compared from the request's second (AWS may report seconds);
# - anyone else's: someone else is rotating this user (step 1a's mark only stops another
#   handrail). With no unanswered request, every unexpected key is someone else's: stop.
ORPHAN_WINDOW = timedelta(minutes=15)


@dataclass
class _Found:
    keys: list[KeyInfo]
    lost: KeyInfo | None = None  # this session's new key, whose secret ended with a process
    orphans: list[KeyInfo] = field(default_factory=list)
    foreign: list[KeyInfo] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.lost is not None:
            out.append(
                f"will delete {self.lost.key_id}: this session created it, but its secret ended with the previous process "
                "before anything stored it, so nobody can use it; a fresh key takes its slot"
            )
        for k in self.orphans:
            out.append(
                f"will delete {k.key_id} (created {iso(k.created)}): this step asked AWS for a key and no answer reached it "
                "(the process ended, or the call failed on the way); nothing ever held its secret"
            )
        for k in self.foreign:
            out.append(
                f"{k.key_id} (created {iso(k.created)}) is a key this session did not expect: someone else may be rotating "
                "this user; this step refuses"
            )
        return out


def _unanswered_request(facts: Mapping[str, str]) -> datetime | None:
    asked = facts.get("create_requested")
    return parse_iso(asked) if asked and asked != facts.get("create_answered") else None


def _survey(ctx: StepContext, keys: list[KeyInfo], facts: Mapping[str, str] | None = None) -> _Found:
    facts = ctx.facts if facts is None else facts
    found = _Found(keys)
    new_id = facts.get("new_key_id")
    previous = find_key(keys, new_id)
    if previous is not None and "new_secret" not in ctx.secrets:
        found.lost = previous
    expected = {item.split(":")[0] for item in facts.get("keys_before", "").split(",") if item}
    expected |= {facts.get("old_key_id", ""), new_id or ""}
    asked = _unanswered_request(facts)
    for k in keys:
        if k.key_id in expected:
            continue
        if asked is not None and floor_second(asked) <= k.created <= asked + ORPHAN_WINDOW:
            found.orphans.append(k)
        else:
            found.foreign.append(k)
    if len(found.orphans) > 1:  # one request makes one key: the others are not ours
        found.foreign += found.orphans
        found.orphans = []
    return found


def _refuse_foreign(user: str, found: _Found, evidence: list[str]) -> None:
    if found.foreign:
        k = found.foreign[0]
        raise ActionRefused(
            f"{user} has a key this session did not expect: {k.key_id}, created {iso(k.created)}. Someone else is "
            "rotating this user (or was): stop before a second rotation cuts theirs off",
            evidence + found.lines(),
            remedy=f"find who created {k.key_id} (CloudTrail: CreateAccessKey), settle it with them, then start a new session",
        )


def _create_preview(ctx: StepContext) -> Preview:
    user = ctx.value("target_user")
    keys = _list_keys(ctx, user, with_last_used=False)
    if find_key(keys, ctx.facts.get("new_key_id")) is not None and "new_secret" in ctx.secrets:
        return Preview([f"{ctx.facts['new_key_id']} exists and its secret is in memory: nothing to create"], nothing_to_do=True)
    found = _survey(ctx, keys)
    lines = found.lines()
    if not found.foreign:
        lines.append(f"will create a new access key for {user}; its secret is captured once, into memory only")
    return Preview(lines)


@action(
    "iam.create_key",
    title="Create the new access key",
    command="aws iam create-access-key --user-name {target_user}",
    needs=("target_user", "old_key_id"),
    produces=("new_key_id", "new_key_created"),
    produces_secrets=("new_secret",),
    mutates=True,
    preview=_create_preview,
)
def create_key(ctx: StepContext) -> Outcome:
    user = ctx.value("target_user")
    evidence: list[str] = []
    keys = _list_keys(ctx, user, with_last_used=False)
    previous = find_key(keys, ctx.facts.get("new_key_id"))
    if previous is not None and "new_secret" in ctx.secrets:
        return Outcome.done(
            f"already created: {previous.key_id}",
            [f"{previous.key_id} exists and its secret is in memory ({ctx.secrets['new_secret'].fingerprint()})"],
            new_key_id=previous.key_id,
            new_key_created=iso(previous.created),
        )
    found = _survey(ctx, keys)
    _refuse_foreign(user, found, evidence)
    # The preview said so before the step ran.
    deleted: set[str] = set()
    if found.lost is not None:
        _delete_key(ctx, user, found.lost.key_id)
        deleted.add(found.lost.key_id)
        evidence.append(
            f"{found.lost.key_id} was created by this session, but its secret ended with the previous process "
            "before anything stored it; deleted it so a fresh key can take the slot"
        )
    for k in found.orphans:
        _delete_key(ctx, user, k.key_id)
        deleted.add(k.key_id)
        evidence.append(
            f"{k.key_id} appeared after step 1 (created {iso(k.created)}) and nothing holds its secret: "
            "the previous process died inside this step after AWS created it; deleted it"
        )
    # Re-listed just before creating: a key that appeared meanwhile is someone else's.
    keys = [k for k in _list_keys(ctx, user, with_last_used=False) if k.key_id not in deleted]
    answered = {**ctx.facts, "create_answered": ctx.facts.get("create_requested", "")}
    _refuse_foreign(user, _survey(ctx, keys, answered), evidence)
    if len(keys) >= 2:
        raise ActionFailed(f"{user} already has 2 keys (the maximum): free a slot first (step 1b)", evidence)
    asked = iso_full(ctx.now())
    ctx.record({"create_requested": asked})  # before the request: a run after a crash reads it
    try:
        created = ctx.wiring.aws_client("iam").create_access_key(UserName=user)["AccessKey"]
    except Exception as exc:
        # An error AWS answered made no key; with no answer (a timeout) one may exist.
        facts = {"create_answered": asked} if error_code(exc) else {}
        return Outcome.failed(f"create-access-key for {user}: {aws_error(exc)}", evidence, **facts)
    secret = Secret(created["SecretAccessKey"], "new_secret")
    key_id = created["AccessKeyId"]
    trail.expect(ctx, "CreateAccessKey", user, key_id)
    evidence.append(f"created {key_id} ({created['Status']}) at {iso(utc(created['CreateDate']))}")
    evidence.append(f"secret captured once, held in memory only (fingerprint {secret.fingerprint()})")
    outcome = Outcome.done(
        f"created {key_id}", evidence, new_key_id=key_id, new_key_created=iso(utc(created["CreateDate"])), create_answered=asked
    )
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
    uses = _Uses(ctx)
    took, attempts = _wait_until_valid(ctx, uses, pair, ctx.fact("target_arn"), params.deadline, params.interval, "the new key")
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
            result = uses.call(pair.key_id, lambda: aws.run_check_call(client, call))
        except ActionFailed as exc:
            return Outcome.failed(exc.summary, evidence, **uses.facts)
        except Exception as exc:
            return Outcome.failed(f"{call.cli()} with the new key: {aws_error(exc)}", evidence, **uses.facts)
        evidence.append(f"{call.cli()} with the new key -> {result}")
    else:
        evidence.append("no representative call configured for this user (--check-call): identity check only")
    return Outcome.done(
        f"new key {pair.key_id} works (valid after {human_duration(took)})", evidence, new_key_valid_after=f"{took:.1f}", **uses.facts
    )


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
    entered = ctx.now()
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
            "the observation gate and the last-use check before the delete are the safety net"
        )
    if old is None:
        return Outcome.done(
            f"old key {old_id} no longer exists",
            evidence + [f"{old_id} is already deleted"],
            deactivated_at=ctx.facts.get("deactivated_at") or iso_full(entered),
        )
    # The deactivation instant, at full precision: step 7b counts a use as "after the
    # deactivation" only if AWS reports it strictly later (see delete_old_key).
    if old.status == "Active":
        # The instant handrail asks for it, recorded before it asks (a run after a crash
        # reads it): a use AWS accepts from then on counts. A needless block can be
        # overridden; a use missed would let the irreversible delete through.
        deactivated_at = iso_full(ctx.now())
        ctx.record({"deactivation_requested": deactivated_at})
        _set_status(ctx, user, old_id, "Inactive")
        evidence.append(f"{old_id}: Active -> Inactive at {deactivated_at}")
    elif ctx.facts.get("deactivated_at"):
        deactivated_at = ctx.facts["deactivated_at"]
        evidence.append(f"{old_id} was already Inactive (deactivated at {deactivated_at})")
    elif ctx.facts.get("deactivation_requested"):
        deactivated_at = ctx.facts["deactivation_requested"]
        evidence.append(
            f"{old_id} was already Inactive: this step asked for it at {deactivated_at}, and the process ended before "
            "the step finished; uses are counted from then"
        )
    else:
        deactivated_at = iso_full(entered)
        evidence.append(f"{old_id} was already Inactive, not by this session: uses are counted from now")
    uses = _Uses(ctx)
    try:
        return _settle_after_deactivation(ctx, params, uses, old_id, consumers, evidence, deactivated_at)
    except ActionFailed as exc:
        # After the deactivation, a failure still records when it happened and what was seen.
        return Outcome.failed(exc.summary, exc.evidence or evidence, deactivated_at=deactivated_at, **uses.facts)


def _old_secret(ctx: StepContext) -> Secret | None:
    """The old secret, from memory or else the vault's history: the same in a fresh and a
    resumed session (step 1 read it from the vault too), so the wait is the same."""
    if "old_secret" in ctx.secrets:
        return ctx.secrets["old_secret"]
    if ctx.wiring.vault_for(ctx.value("target_user")) is None or not ctx.facts.get("vault_versions_before"):
        return None
    try:
        return old_pair(ctx).secret
    except ActionFailed:
        return None


def _recovered_new_pair(ctx: StepContext) -> Pair | None:
    """The new pair, from memory or else the vault (which holds it once step 4 stored it)."""
    pair = _new_pair(ctx)
    if pair is None and ctx.facts.get("new_key_id"):
        secret = ctx.wiring.recover_secret("new_secret", dict(ctx.facts))
        if secret is not None:
            ctx.secrets["new_secret"] = secret
            pair = _new_pair(ctx)
    return pair


def _settle_after_deactivation(
    ctx: StepContext,
    params: DeactivateOldKeyParams,
    uses: _Uses,
    old_id: str,
    consumers: list[Consumer],
    evidence: list[str],
    deactivated_at: str,
) -> Outcome:
    # Consumers may hold cached credentials, and the deactivation itself takes time to
    # reach every endpoint. With the old secret at hand, poll until AWS refuses it.
    old_secret = _old_secret(ctx)
    if old_secret is not None:
        old_pair_ = Pair(old_id, old_secret)

        def refused() -> bool:
            # Each accepted call is handrail's own use of the old key (labelled), and the
            # last use is read before it, so a consumer's use is not hidden behind it.
            try:
                uses.call(old_id, lambda: _caller_arn(ctx, old_pair_))
            except ActionFailed:
                raise
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
        if f"own_use:{old_id}" in uses.facts:
            evidence.append(
                f"handrail's own checks with the old key were accepted until {uses.own_at(old_id)}: "
                "labelled as its own, never counted as a use after the deactivation"
            )
    else:
        # Nothing to check: the wait is the SOP's plain sleep, shown as progress.
        ctx.clock.poll(
            lambda: False, deadline=params.settle, interval=5.0, progress=ctx.progress, what="settling: consumers may cache credentials"
        )
        evidence.append(f"waited {human_duration(params.settle)} for cached credentials to expire")

    pair = _recovered_new_pair(ctx)
    if pair is None:
        evidence.append("the new secret is not in memory and no vault holds it: new-key check skipped")
    else:
        try:
            arn = uses.call(pair.key_id, lambda: _caller_arn(ctx, pair))
        except ActionFailed:
            raise
        except Exception as exc:
            raise ActionFailed(f"the new key after the deactivation: {aws_error(exc)}", evidence) from None
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
                    **uses.facts,
                )
    return Outcome.done(
        f"old key {old_id} is Inactive (not deleted: it can be reactivated)", evidence, deactivated_at=deactivated_at, **uses.facts
    )


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
    last = _Uses(ctx).judge(old)
    evidence = [
        f"get-access-key-last-used {old_id}: {last.text(now)}",
        f"deactivated at {iso_full(deactivated)} ({human_duration((now - deactivated).total_seconds())} ago)",
    ]
    # After the deactivation means strictly later, at full precision. The deactivation
    # instant is handrail's own (microseconds); AWS may report a use cut to the second,
    # which is at or before the real instant, so "reported > deactivated" is never a use
    # from before the deactivation. A use in the deactivation's own second is counted only
    # when the report is precise enough to show it came after; a consumer that still uses
    # the key shows again a second later. handrail's own calls never count.
    used = last.consumer
    # CloudTrail names every caller since the deactivation (the last use names one time).
    found, trail_uses = trail.uses_after(ctx, old_id, deactivated)
    evidence += found.lines
    if (used is not None and used.at > deactivated) or trail_uses:
        if used is not None and used.at > deactivated:
            summary = f"old key {old_id} was used at {iso_full(used.at)}, after it was deactivated at {iso_full(deactivated)}"
        else:
            summary = f"old key {old_id} was used after it was deactivated at {iso_full(deactivated)}"
        if trail_uses:
            latest = trail_uses[0]
            callers = {(e.source_ip, e.user_agent) for e in trail_uses}
            summary += (
                f"; CloudTrail: {len(trail_uses)} use(s) by {len(callers)} caller(s), latest {latest.name} at {iso(latest.at)} "
                f"in {latest.region} from {latest.source_ip} ({latest.user_agent})"
            )
        if not ctx.override:
            return Outcome.blocked(
                f"{summary}: something still holds it. Find that consumer before deleting",
                evidence,
                **found.facts,
            )
        evidence.append(f"use after deactivation overridden: {ctx.override}")
    else:
        evidence.append("no use since it was deactivated: no consumer is still hitting the old key")
    _delete_key(ctx, user, old_id)
    evidence.append(f"deleted {old_id}; it is unrecoverable")
    return Outcome.done(f"deleted old key {old_id}", evidence, deleted_at=iso(now), **found.facts)
