"""Steps 4-6 of the SOP: the vault, the consumers, downstream verification.

The vault and every consumer come from the inventory, through the wiring. Without an
inventory entry these steps fall back to their manual instructions. Propagation and
verification run concurrently, one status line per consumer; one failing consumer
never hides the others: the step fails with every consumer's result listed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from steps.actions import action
from steps.actions.base import ActionFailed, Outcome, Preflight, Preview, StepContext, WaitParams
from steps.clock import human_duration, iso, parse_iso
from steps.consumers.base import AdapterError, Consumer, Pair, ProbeResult, Result, Vault
from steps.secrets import redact

if TYPE_CHECKING:
    from steps.wiring import Wiring


def _has_vault(wiring: Wiring, values: Mapping[str, str]) -> str | None:
    return None if wiring.vault_for(values.get("target_user", "")) is not None else "no inventory entry gives this user's vault"


def _has_consumers(wiring: Wiring, values: Mapping[str, str]) -> str | None:
    return None if wiring.consumers_for(values.get("target_user", "")) else "no inventory entry lists this user's consumers"


def _vault(ctx: StepContext) -> Vault:
    """The user's vault; the step is only offered as an action when there is one."""
    vault = ctx.wiring.vault_for(ctx.value("target_user"))
    if vault is None:
        raise ActionFailed("no inventory entry gives this user's vault")
    return vault


def _new_pair(ctx: StepContext) -> Pair:
    secret = ctx.secrets.get("new_secret")
    if secret is None:
        raise ActionFailed("the new key's secret is not in memory, and the vault does not hold it yet")
    return Pair(ctx.fact("new_key_id"), secret, "new")


def old_pair(ctx: StepContext) -> Pair:
    """The old pair: from memory (read in step 1), else from the vault's history."""
    old_id = ctx.fact("old_key_id")
    secret = ctx.secrets.get("old_secret")
    if secret is not None:
        return Pair(old_id, secret, "old")
    vault = ctx.wiring.vault_for(ctx.value("target_user"))
    versions = ctx.facts.get("vault_versions_before")
    if vault is None or not versions:
        raise ActionFailed("the old pair is not in memory and no vault history records it: restore it by hand")
    try:
        pair = vault.read_pair_at(json.loads(versions))
    except AdapterError as exc:
        raise ActionFailed(f"reading the old pair from the vault's history: {exc}") from None
    if pair.key_id != old_id:
        raise ActionFailed(f"the vault's history at {versions} holds {pair.key_id}, not the old key {old_id}")
    ctx.secrets["old_secret"] = pair.secret
    return Pair(pair.key_id, pair.secret, "old")


def each_consumer(
    ctx: StepContext, consumers: list[Consumer], work: Callable[[Consumer], Result], verb: str
) -> tuple[list[tuple[Consumer, Result]], list[str]]:
    """Run `work` on every consumer at once; a line per consumer as each finishes."""
    results: list[tuple[Consumer, Result]] = []

    def line(consumer: Consumer, result: Result) -> str:
        # An adapter's summary may name its consumer already: say the name once.
        summary = result.summary.removeprefix(f"{consumer.name}: ")
        return f"{consumer.name}: {'ok' if result.ok else 'FAILED'}: {summary}"

    def one(consumer: Consumer) -> tuple[Consumer, Result]:
        try:
            result = work(consumer)
        except AdapterError as exc:
            result = Result(False, redact(str(exc)))
        except Exception as exc:  # one consumer's bug must not hide the others' results
            result = Result(False, f"{type(exc).__name__}: {redact(str(exc))}")
        ctx.emit(line(consumer, result))
        return consumer, result

    with ThreadPoolExecutor(max_workers=max(1, len(consumers)), thread_name_prefix=f"handrail-{verb}") as pool:
        for consumer, result in pool.map(one, consumers):
            results.append((consumer, result))
    evidence: list[str] = []
    for consumer, result in results:
        evidence.append(line(consumer, result))
        evidence += [f"    {line}" for line in result.evidence]
    return results, evidence


# -- a dry run's pre-flight: read-only probes, one verdict per place -----------------------------


def _probe_lines(found: ProbeResult) -> list[str]:
    return [found.summary(), *(f"    {line}" for line in found.lines())]


def _probe_all(ctx: StepContext) -> list[tuple[Consumer, ProbeResult]]:
    """Every consumer's probe, at once (each made once per session, see Wiring.probe)."""
    consumers = ctx.wiring.consumers_for(ctx.value("target_user"))
    with ThreadPoolExecutor(max_workers=max(1, len(consumers)), thread_name_prefix="handrail-probe") as pool:
        return list(zip(consumers, pool.map(ctx.wiring.probe, consumers), strict=True))


def _verdict(found: list[tuple[Consumer, ProbeResult]]) -> tuple[list[str], str]:
    bad = [c.name for c, r in found if not r.ok]
    head = f"pre-flight (read-only): {len(found) - len(bad)} of {len(found)} consumer(s) ready"
    return bad, head + (f"; NOT READY: {', '.join(bad)}" if bad else "")


def vault_preflight(ctx: StepContext) -> Preflight:
    vault = _vault(ctx)
    found = ctx.wiring.probe(vault)
    line = f"pre-flight (read-only): the vault is {'ready' if found.ok else 'NOT READY'}"
    return Preflight([] if found.ok else [vault.name], [line, *_probe_lines(found)])


def propagate_preflight(ctx: StepContext) -> Preflight:
    found = _probe_all(ctx)
    bad, head = _verdict(found)
    return Preflight(bad, [head, *(line for _, r in found for line in _probe_lines(r))])


def verify_preflight(ctx: StepContext) -> Preflight:
    # What step 5's pre-flight found (the same probes): one line per consumer.
    found = _probe_all(ctx)
    bad, head = _verdict(found)
    return Preflight(bad, [head, *(r.summary() for _, r in found)])


# -- step 4: the vault --------------------------------------------------------------------------


@action(
    "vault.store_pair",
    title="Store the new pair in the vault",
    command="infisical secrets set AWS_ACCESS_KEY_ID={new_key_id} AWS_SECRET_ACCESS_KEY=$NEW_SECRET",
    needs=("target_user", "new_key_id", "old_key_id"),
    needs_secrets=("new_secret",),
    produces=("vault_versions_before", "vault_versions_after"),
    mutates=True,
    preflight=vault_preflight,
    available=_has_vault,
)
def store_pair(ctx: StepContext) -> Outcome:
    vault = _vault(ctx)
    pair = _new_pair(ctx)
    try:
        current, versions = vault.read_pair()
    except AdapterError as exc:
        raise ActionFailed(str(exc)) from None
    before = ctx.facts.get("vault_versions_before") or json.dumps(versions)
    if current is not None and current.key_id == pair.key_id and current.secret == pair.secret:
        return Outcome.done(
            f"{vault.name} already holds the new pair",
            [f"{vault.name}: {pair.key_id} ({pair.fingerprint()})"],
            vault_versions_before=before,
            vault_versions_after=json.dumps(versions),
        )
    evidence = [f"{vault.name} held {current.key_id if current else 'no pair'} (versions {versions or 'none'}): kept for rollback"]
    if current is not None and current.key_id == ctx.fact("old_key_id"):
        ctx.secrets.setdefault("old_secret", current.secret)
    try:
        after, lines = vault.write_pair(pair)
    except AdapterError as exc:
        raise ActionFailed(str(exc), evidence) from None
    evidence += lines
    return Outcome.done(
        f"{vault.name} holds {pair.key_id} (versions {after})",
        evidence,
        vault_versions_before=before,
        vault_versions_after=json.dumps(after),
    )


@action(
    "vault.restore_pair",
    title="Restore the previous pair in the vault",
    command="infisical secrets set AWS_ACCESS_KEY_ID={old_key_id} AWS_SECRET_ACCESS_KEY=<old secret, from the version history>",
    needs=("target_user", "old_key_id"),
    mutates=True,
    available=_has_vault,
)
def restore_pair(ctx: StepContext) -> Outcome:
    vault = _vault(ctx)
    try:
        current, _ = vault.read_pair()
    except AdapterError as exc:
        raise ActionFailed(str(exc)) from None
    old_id = ctx.fact("old_key_id")
    if current is not None and current.key_id == old_id:
        return Outcome.done(f"{vault.name} already holds the old pair ({old_id})")
    before = json.loads(ctx.facts.get("vault_versions_before") or "{}")
    if len(before) < 2:
        return Outcome.done(
            f"{vault.name} held no pair before this session: nothing to restore",
            ["the new pair stays in the vault; the new key is deactivated by the rollback of step 2"],
        )
    pair = old_pair(ctx)
    try:
        versions, lines = vault.write_pair(pair)
    except AdapterError as exc:
        raise ActionFailed(str(exc)) from None
    return Outcome.done(f"{vault.name} holds the old pair {old_id} again (versions {versions})", lines)


# -- step 5: the consumers ----------------------------------------------------------------------


def _consumer_names(ctx: StepContext) -> list[str]:
    """The inventory's consumers of the target user, by name (no adapter is built)."""
    entry = ctx.wiring.entry(ctx.value("target_user"))
    return [c.name for c in entry.consumers] if entry is not None else []


def _propagate_preview(ctx: StepContext) -> Preview:
    names = _consumer_names(ctx)
    count = f"{len(names)} consumer" + ("" if len(names) == 1 else "s")
    return Preview([f"writes the new pair ({ctx.fact('new_key_id')}) to {count}, all at once:"] + [f"  {n}" for n in names])


@action(
    "consumers.propagate",
    title="Write the new pair to every consumer",
    command="heroku config:set ... / gh secret set ... / ssh: rewrite the env file and restart",
    needs=("target_user", "new_key_id"),
    needs_secrets=("new_secret",),
    mutates=True,
    preflight=propagate_preflight,
    preview=_propagate_preview,
    available=_has_consumers,
)
def propagate(ctx: StepContext) -> Outcome:
    pair = _new_pair(ctx)
    consumers = ctx.wiring.consumers_for(ctx.value("target_user"))
    facts: dict[str, str] = {}

    def write(consumer: Consumer) -> Result:
        held = consumer.read_key_id()
        facts[f"consumer_before:{consumer.name}"] = held or "unknown"
        # Skip only a consumer this session finished writing (restart included): holding
        # the new key id is not enough, e.g. after a restart that failed.
        if held == pair.key_id and ctx.facts.get(f"propagated:{consumer.name}") == pair.key_id:
            return Result(True, f"already holds {pair.key_id}")
        result = consumer.write_pair(pair)
        if result.ok:
            facts[f"written_at:{consumer.name}"] = iso(result.written_at or ctx.now())
            facts[f"propagated:{consumer.name}"] = pair.key_id
        return result

    ctx.emit(f"writing {pair.key_id} to {len(consumers)} consumer(s) at once")
    results, evidence = each_consumer(ctx, consumers, write, "propagate")
    failed = [c.name for c, r in results if not r.ok]
    outcome_facts = {k: v for k, v in facts.items() if not k.startswith("consumer_before:") or v != "unknown"}
    if failed:
        return Outcome.failed(f"{len(failed)} of {len(results)} consumer(s) failed: {', '.join(failed)}", evidence, **outcome_facts)
    return Outcome.done(f"{len(results)} consumer(s) hold {pair.key_id}", evidence, **outcome_facts)


@action(
    "consumers.restore",
    title="Put the old pair back on every consumer",
    command="heroku config:set / gh secret set / ssh env file: AWS_ACCESS_KEY_ID={old_key_id} and the old secret (from the vault's history)",
    needs=("target_user", "old_key_id"),
    mutates=True,
    available=_has_consumers,
)
def restore(ctx: StepContext) -> Outcome:
    consumers = ctx.wiring.consumers_for(ctx.value("target_user"))
    pair = old_pair(ctx)

    def write(consumer: Consumer) -> Result:
        if consumer.read_key_id() == pair.key_id:
            return Result(True, f"already holds the old key {pair.key_id}")
        return consumer.write_pair(pair)

    results, evidence = each_consumer(ctx, consumers, write, "restore")
    failed = [c.name for c, r in results if not r.ok]
    if failed:
        return Outcome.failed(f"{len(failed)} consumer(s) could not be restored: {', '.join(failed)}", evidence)
    return Outcome.done(f"{len(results)} consumer(s) hold the old key {pair.key_id} again", evidence)


# -- step 6: verify downstream ------------------------------------------------------------------


class VerifyParams(WaitParams):
    interval: float = 5.0


def verify_all(ctx: StepContext, pair: Pair, deadline: float, interval: float) -> tuple[list[tuple[Consumer, Result]], list[str]]:
    """Each consumer's verification, retried until it passes or the deadline passes
    (IAM's eventual consistency reaches every consumer in its own time)."""

    def check(consumer: Consumer) -> Result:
        # What propagate recorded: a consumer that cannot read its value back needs it
        # to tell its own write from an older one (GitHub, in a new process).
        written = ctx.facts.get(f"written_at:{consumer.name}")
        written_at = parse_iso(written) if written else None
        polled = ctx.clock.poll(
            lambda: consumer.verify(pair, written_at=written_at, progress=ctx.progress),
            until=lambda result: result.ok,
            deadline=deadline,
            interval=interval,
            progress=ctx.progress,
            what=f"verifying {consumer.name}",
        )
        polled.value.evidence.append(f"{polled.attempts} attempt(s) in {human_duration(polled.elapsed)}")
        return polled.value

    return each_consumer(ctx, ctx.wiring.consumers_for(ctx.value("target_user")), check, "verify")


@action(
    "consumers.verify",
    title="Verify every consumer on the new key",
    command="each consumer's representative call (health URL, workflow run, verification command)",
    needs=("target_user", "new_key_id"),
    needs_secrets=("new_secret",),
    produces=("downstream_verified_at",),
    mutates=False,
    params=VerifyParams,
    preflight=verify_preflight,
    available=_has_consumers,
)
def verify(ctx: StepContext) -> Outcome:
    params: VerifyParams = ctx.params
    pair = _new_pair(ctx)
    results, evidence = verify_all(ctx, pair, params.deadline, params.interval)
    failed = [c.name for c, r in results if not r.ok]
    if failed:
        return Outcome.failed(f"{len(failed)} of {len(results)} consumer(s) do not work on the new key: {', '.join(failed)}", evidence)
    return Outcome.done(f"all {len(results)} consumer(s) work on {pair.key_id}", evidence, downstream_verified_at=iso(ctx.now()))


def vault_old_pair(ctx: StepContext) -> tuple[Pair | None, dict[str, int], list[str]]:
    """Step 1's look at the vault: the pair it holds, its versions, and evidence."""
    vault = ctx.wiring.vault_for(ctx.value("target_user"))
    if vault is None:
        return None, {}, []
    try:
        pair, versions = vault.read_pair()
    except AdapterError as exc:
        raise ActionFailed(str(exc)) from None
    if pair is None:
        return None, versions, [f"{vault.name} holds no pair for this user yet"]
    return pair, versions, [f"{vault.name} holds {pair.key_id} ({pair.fingerprint()}), versions {versions}"]
