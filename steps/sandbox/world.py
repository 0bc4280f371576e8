"""The simulated world a training session runs against, seeded from a scenario.

It owns the simulated AWS account, the vault (a fake Infisical) and the consumers (a
fake Heroku, a fake GitHub, a paramiko SSH host), all on 127.0.0.1. Consumers really
use the pair they hold against the simulated AWS (`AwsWorld.probe`), so a consumer
left on a deactivated key fails its verification.

The world can be saved without a single secret value and brought back (every key gets
a fresh secret, handed to every place that held the old one), and exported for
`--world-out` with fingerprints where the values would be.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.clock import SimClock, iso
from steps.consumers.base import Pair
from steps.consumers.factory import Credentials
from steps.inventory import GitHubEntry, HerokuEntry, InfisicalEntry, Inventory, SshEntry, UserEntry
from steps.sandbox import scenario as scenarios
from steps.sandbox import trail
from steps.sandbox.aws import OPERATOR_USER, SECOND_OPERATOR, AwsWorld, SeedKey
from steps.sandbox.iam_user import AttachmentSeed
from steps.sandbox.scenario import ConsumerSeed, Holds, Scenario, VaultSeed
from steps.secrets import Secret

if TYPE_CHECKING:  # imported where used: a scenario starts only the systems it names
    from steps.sandbox.github import GitHubSandbox, SandboxWorkflow
    from steps.sandbox.heroku import HerokuSandbox
    from steps.sandbox.infisical import InfisicalSandbox
    from steps.sandbox.ssh import SshSandbox

KEY_ID, SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"


class World:
    def __init__(self, scenario: Scenario, clock: SimClock, aws: AwsWorld) -> None:
        self.scenario = scenario
        self.clock = clock
        self.aws = aws
        self.infisical: InfisicalSandbox | None = None
        self.heroku: HerokuSandbox | None = None
        self.github: GitHubSandbox | None = None
        self.ssh: SshSandbox | None = None
        self.inventory: Inventory | None = None
        self.creds = Credentials()
        self._tmp = Path(tempfile.mkdtemp(prefix="handrail-world-"))
        self.forgotten: list[_Forgotten] = []
        self.fault_log: list[str] = []
        self._lift: list[Callable[[], None]] = []  # how to end the outages armed for the current attempt
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def create(cls, scenario: Scenario, clock: SimClock, account_id: str | None = None) -> World:
        aws = AwsWorld(clock, account_id, propagation_delay=scenario.aws.propagation_delay, status_delay=scenario.aws.status_delay)
        aws.set_cloudtrail(scenario.aws.cloudtrail, scenario.aws.cloudtrail_delay)
        world = cls(scenario, clock, aws)
        try:
            pairs = world._seed_aws()
            world._seed_trail(pairs)
            world._start_places(lambda holds, user: world._initial_pair(pairs, holds, user))
            world._start_forgotten({f.name: world._initial_pair(pairs, f.holds) for f in scenario.forgotten})
        except BaseException:
            world.close()
            raise
        return world

    @classmethod
    def restore(cls, snapshot: dict[str, Any], clock: SimClock) -> World:
        source = snapshot.get("scenario_source")
        scenario = scenarios.load(source if source and Path(source).exists() else snapshot["scenario"])
        aws, secrets = AwsWorld.restore(snapshot["aws"], clock)
        world = cls(scenario, clock, aws)
        try:
            places = snapshot.get("places", {})
            histories = dict(snapshot.get("vault_histories") or {})
            if not histories and snapshot.get("vault_history") and scenario.vault is not None:
                # A snapshot from before fleets: the target's vault only.
                from steps.consumers.infisical import place_name

                v = scenario.vault
                histories[place_name(v.project_id, v.environment, v.path)] = snapshot["vault_history"]
            world._start_places(None, places=places, secrets=secrets, vault_histories=histories)
            world._start_forgotten({f.name: _pair_from(places.get(f"forgotten:{f.name}"), secrets) for f in scenario.forgotten})
        except BaseException:
            world.close()
            raise
        return world

    def _seed_aws(self) -> dict[str, list[Pair]]:
        seed = self.scenario.aws
        for name, objects in seed.buckets.items():
            self.aws.seed_bucket(name, objects)
        pairs: dict[str, list[Pair]] = {}
        for name, user in seed.users.items():
            keys = [SeedKey(k.status, k.age, k.last_used, k.service) for k in user.keys]
            attached = AttachmentSeed(
                login_profile=user.login_profile,
                mfa_devices=tuple(user.mfa_devices),
                groups=tuple(user.groups),
                inline_policies=dict(user.inline_policies),
                attached_policies=tuple(user.attached_policies),
                ssh_public_keys=user.ssh_public_keys,
                signing_certificates=user.signing_certificates,
                service_credentials=tuple(user.service_credentials),
            )
            pairs[name] = self.aws.seed_user(name, keys, user.check_call, attached)
        if self.scenario.operator.as_target:
            self.aws.operator = self._initial_pair(pairs, "active")
        else:
            self.aws.create_operator()
            self.aws.join_groups(OPERATOR_USER, self.scenario.operator.groups)
        if self.scenario.second_operator is not None:
            self.aws.create_user_with_key(SECOND_OPERATOR, self.scenario.second_operator.groups)
        return pairs

    def _seed_trail(self, pairs: dict[str, list[Pair]]) -> None:
        """CloudTrail's history before the session: each holder of a key (a listed
        consumer, a forgotten one) called AWS with it once a day for the last 7 days, the
        latest at the key's last use, from its own address with its own user agent."""
        sc = self.scenario
        now = self.clock.now()
        holders: list[tuple[str, str, trail.Caller]] = []
        for user, _, consumers in sc.places():
            holders += [(user, c.holds, trail.CALLERS[c.type]) for c in consumers]
        holders += [(sc.target_user, f.holds, trail.Caller(f.source_ip, f.user_agent)) for f in sc.forgotten]
        for user, holds, caller in holders:
            pair = self._initial_pair(pairs, holds, user)
            if pair is None:
                continue
            seed = next((k for p, k in zip(pairs[user], sc.aws.users[user].keys, strict=False) if p.key_id == pair.key_id), None)
            if seed is None or seed.last_used is None:
                continue
            first = max(now - timedelta(days=7), now - timedelta(seconds=seed.age))
            times = [now - timedelta(seconds=seed.last_used + day * 86400) for day in range(7)]
            self.aws.trail.seed(pair.key_id, user, self.aws.account_id, caller, [t for t in times if t > first])

    def _initial_pair(self, pairs: dict[str, list[Pair]], holds: str, user: str | None = None) -> Pair | None:
        """The pair a place holds at the start: its user's first Active key, none, or a key by index."""
        user = user or self.scenario.target_user
        mine = pairs[user]
        if holds == "none":
            return None
        if holds == "active":
            keys = self.scenario.aws.users[user].keys
            return next((p for p, k in zip(mine, keys, strict=False) if k.status == "Active"), None)
        return mine[int(holds)]

    def _start_places(
        self,
        initial: Callable[[Holds, str], Pair | None] | None,
        places: dict[str, Any] | None = None,
        secrets: dict[str, Secret] | None = None,
        vault_histories: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Start the fake vault and consumers the scenario names, for every user the
        inventory lists (one fake Infisical, Heroku, GitHub and host shared by all),
        holding either the scenario's initial pairs (`initial`) or what a snapshot says
        (`places`)."""
        sc = self.scenario
        users: dict[str, UserEntry] = {}
        for user, vault, consumers in sc.places():
            users[user] = self._start_user(user, vault, consumers, initial, places, secrets, (vault_histories or {}))
        self.inventory = Inventory(users=users, people=dict(sc.people))

    def _start_user(
        self,
        user: str,
        vault: VaultSeed | None,
        consumers: list[ConsumerSeed],
        initial: Callable[[Holds, str], Pair | None] | None,
        places: dict[str, Any] | None,
        secrets: dict[str, Secret] | None,
        vault_histories: dict[str, list[dict[str, Any]]],
    ) -> UserEntry:
        def held(place: str, holds: str) -> dict[str, str]:
            if initial is not None:
                pair = initial(holds, user)
            elif places is not None:
                pair = _pair_from(places.get(place), secrets or {})
            else:
                raise ValueError("world: places start from the scenario's initial pairs or from a snapshot's places")
            return {KEY_ID: pair.key_id, SECRET: pair.secret.reveal()} if pair else {}

        entries: list[HerokuEntry | GitHubEntry | SshEntry] = []

        def probe(kind: str) -> Callable[..., tuple[bool, str]]:
            # Each system calls AWS from its own address, with its own user agent.
            return functools.partial(self.aws.probe, caller=trail.CALLERS[kind])

        vault_entry = None
        if vault is not None:
            from steps.consumers.infisical import InfisicalAuth, place_name

            if self.infisical is None:
                from steps.sandbox.infisical import InfisicalSandbox

                self.infisical = InfisicalSandbox().start()
                client_id, client_secret = self.infisical.add_identity()
                self.creds.infisical = InfisicalAuth.universal(client_id, client_secret, source="sandbox")
            v = vault
            place = place_name(v.project_id, v.environment, v.path)
            if initial is not None:
                values = held(place, v.holds)
                if values:
                    self.infisical.seed(v.project_id, v.environment, v.path, values)
            else:
                for version in vault_histories.get(place, []):
                    pair = _pair_from(version, secrets or {})
                    if pair is not None:
                        self.infisical.seed(v.project_id, v.environment, v.path, {KEY_ID: pair.key_id, SECRET: pair.secret.reveal()})
            vault_entry = InfisicalEntry(site_url=self.infisical.url, project_id=v.project_id, environment=v.environment, path=v.path)

        for seed in consumers:
            if seed.type == "heroku":
                if self.heroku is None:
                    from steps.sandbox.heroku import HerokuSandbox

                    self.heroku = HerokuSandbox(aws_probe=probe("heroku")).start()
                    self.creds.heroku_token = self.heroku.token
                self.heroku.seed_app(seed.app, held(f"heroku:{seed.app}", seed.holds))
                entries.append(
                    HerokuEntry(
                        source_ips=trail.DECLARED["heroku"][0],
                        user_agents=trail.DECLARED["heroku"][1],
                        type="heroku",
                        app=seed.app,
                        api_url=self.heroku.url,
                        verify_url=self.heroku.health_url(seed.app) if seed.health_check else None,
                    )
                )
            elif seed.type == "github":
                if self.github is None:
                    from steps.sandbox.github import GitHubSandbox

                    self.github = GitHubSandbox(aws_probe=probe("github"), run_delay=0, now=self.clock.now).start()
                    self.creds.github_token = self.github.token
                    self.creds.github_now = self.clock.now
                entry = GitHubEntry(
                    source_ips=trail.DECLARED["github"][0],
                    user_agents=trail.DECLARED["github"][1],
                    type="github",
                    base_url=self.github.url,
                    repository=seed.repository,
                    environment=seed.environment,
                    organization=seed.organization,
                    visibility=seed.visibility,
                    verify_workflow=seed.verify_workflow,
                )
                values = held(entry.name, seed.holds)
                # Restored secrets were last written before the snapshot, not 30 days ago.
                seeded_at = None if initial is not None else self.clock.now()
                if seed.organization:
                    self.github.seed_org(seed.organization, secrets=values, visibility=seed.visibility, seeded_at=seeded_at)
                elif seed.repository is not None:
                    self.github.seed_repo(
                        seed.repository,
                        secrets={} if seed.environment else values,
                        environments={seed.environment: values} if seed.environment else None,
                        workflows=[_workflow(seed.verify_workflow, seed.environment)] if seed.verify_workflow else [],
                        seeded_at=seeded_at,
                    )
                else:  # GitHubEntry above refuses this already
                    raise ValueError("world: a github consumer names a repository or an organization")
                entries.append(entry)
            elif seed.type == "ssh":
                if self.ssh is None:
                    from steps.sandbox.ssh import SshSandbox

                    self.ssh = SshSandbox(aws_probe=probe("ssh"), label=seed.label).start()
                    self.creds.ssh_pkey = self.ssh.client_key
                    self.ssh.write_known_hosts(self._tmp / "known_hosts")
                values = held(f"ssh:{seed.label}", seed.holds)
                lines = list(seed.other_lines) + [f"{k}={v}" for k, v in values.items()]
                self.ssh.seed_file(seed.env_file, "\n".join(lines) + "\n", mode=0o640, uid=0, gid=0)
                self.ssh.add_service(seed.service, seed.env_file, health_command=seed.verify, label=seed.label)
                entries.append(
                    SshEntry(
                        source_ips=trail.DECLARED["ssh"][0],
                        user_agents=trail.DECLARED["ssh"][1],
                        type="ssh",
                        label=seed.label,
                        host=self.ssh.host,
                        port=self.ssh.port,
                        user=self.ssh.user,
                        use_agent=False,
                        known_hosts=str(self._tmp / "known_hosts"),
                        env_file=seed.env_file,
                        restart=f"sudo systemctl restart {seed.service}",
                        verify=seed.verify,
                    )
                )
        check_call = self.scenario.aws.users[user].check_call
        return UserEntry(check_call=check_call, vault=vault_entry, consumers=entries)

    # -- forgotten consumers and faults -----------------------------------------------------

    def _start_forgotten(self, pairs: dict[str, Pair | None]) -> None:
        """Consumers nobody listed keep using their key on the simulated clock: on every
        advance, and every real second (time passes in the app too)."""
        for seed in self.scenario.forgotten:
            pair = pairs.get(seed.name)
            if pair is not None:
                caller = trail.Caller(seed.source_ip, seed.user_agent)
                self.forgotten.append(_Forgotten(seed.name, pair, seed.every, seed.call, self.clock.now(), caller))
        if self.forgotten:
            self.clock.on_advance(lambda before, after: self.tick())
            self._ticker = threading.Thread(target=self._tick_forever, name="sandbox-forgotten", daemon=True)
            self._ticker.start()

    def _tick_forever(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()

    def tick(self) -> None:
        now = self.clock.now()
        for workload in self.forgotten:
            if now >= workload.next_run and workload.lock.acquire(blocking=False):
                try:
                    workload.next_run = now + timedelta(seconds=workload.every)
                    ok, message = self.aws.probe(workload.pair.key_id, workload.pair.secret, workload.call, caller=workload.caller)
                    workload.runs.append((iso(now), ok, message))
                finally:
                    workload.lock.release()

    def before_step(self, step_id: str, attempt: int) -> None:
        """Arm the scenario's faults for this attempt of the step about to run."""
        for fault in self.scenario.faults:
            if fault.at != step_id or attempt > fault.times:
                continue
            sandbox = getattr(self, fault.system)
            if fault.down:
                sandbox.down = True
                self._lift.append(functools.partial(setattr, sandbox, "down", False))
                self.fault_log.append(f"{fault.system} unreachable during attempt {attempt} of {step_id}")
            elif fault.refuse_connections:
                sandbox.refuse_connections = True
                self._lift.append(functools.partial(setattr, sandbox, "refuse_connections", False))
                self.fault_log.append(f"ssh host refused connections during attempt {attempt} of {step_id}")
            elif attempt == 1 and fault.route:
                sandbox.fail(fault.route, times=fault.times, status=fault.status)
                self.fault_log.append(f"{fault.system} {fault.route} answers {fault.status} {fault.times}x from {step_id}")
            elif attempt == 1 and fault.restart_fails:
                if self.ssh is None:
                    raise ValueError(f"scenario {self.scenario.id}: a restart fault at {step_id} but no ssh host")
                self.ssh.fail_restart(fault.restart_fails, fault.times)
                self.fault_log.append(f"ssh restart of {fault.restart_fails} fails {fault.times}x from {step_id}")

    def after_step(self, step_id: str) -> None:
        """An outage or a refusal lasts for the attempt it was armed for, no longer."""
        while self._lift:
            self._lift.pop()()

    # -- the world as data ------------------------------------------------------------------

    def holdings(self) -> dict[str, tuple[str | None, Secret | None]]:
        """In memory only: every place outside AWS that holds a pair, and what it holds."""
        out: dict[str, tuple[str | None, Secret | None]] = {}
        for sandbox in (self.infisical, self.heroku, self.github, self.ssh):
            if sandbox is not None:
                out.update(sandbox.holdings())
        return out

    def _secret_owner(self) -> dict[str, str]:
        """fingerprint -> the key id whose secret it is (so a snapshot can say who holds what)."""
        return {secret.fingerprint(): key_id for key_id, secret in self.aws.secrets_by_key().items()}

    def snapshot(self) -> dict[str, Any]:
        owner = self._secret_owner()
        held = dict(self.holdings())
        held.update({f"forgotten:{w.name}": (w.pair.key_id, w.pair.secret) for w in self.forgotten})
        places = {
            place: {"key_id": key_id, "secret_of": owner.get(secret.fingerprint()) if secret else None}
            for place, (key_id, secret) in held.items()
        }
        histories: dict[str, list[dict[str, Any]]] = {}
        if self.infisical is not None:
            from steps.consumers.infisical import place_name

            for _, v, _ in self.scenario.places():
                if v is None:
                    continue
                ids = self.infisical.history(v.project_id, v.environment, v.path, KEY_ID)
                values = self.infisical.history(v.project_id, v.environment, v.path, SECRET)
                histories[place_name(v.project_id, v.environment, v.path)] = [
                    {"key_id": key_id, "secret_of": owner.get(Secret(value).fingerprint())}
                    for key_id, value in zip(ids, values, strict=False)
                ]
        target_vault = self.scenario.vault
        history = []
        if target_vault is not None:
            from steps.consumers.infisical import place_name

            history = histories.get(place_name(target_vault.project_id, target_vault.environment, target_vault.path), [])
        return {
            "scenario": self.scenario.id,
            "scenario_source": self.scenario.source,
            "aws": self.aws.snapshot(),
            "places": places,
            "vault_history": history,  # the target's, as before fleets (tests and old readers)
            "vault_histories": histories,
        }

    def export(self) -> dict[str, Any]:
        """The world for --world-out: who holds which key, as fingerprints only."""
        users = self.aws.users()
        holders: dict[str, dict[str, Any]] = {}
        for name, user in users.items():
            for key in user["keys"]:
                holders[f"aws:{name}:{key['id']}"] = {"key_id": key["id"], "fingerprint": key["fingerprint"], "status": key["status"]}
        for place, (key_id, secret) in sorted(self.holdings().items()):
            holders[place] = {"key_id": key_id, "fingerprint": secret.fingerprint() if secret else None}
        if self.ssh is not None:
            for place, (key_id, secret) in sorted(self.ssh.loaded().items()):
                holders[f"{place} (running service)"] = {"key_id": key_id, "fingerprint": secret.fingerprint() if secret else None}
        for w in self.forgotten:
            last = w.runs[-1] if w.runs else None
            holders[f"forgotten:{w.name}"] = {
                "key_id": w.pair.key_id,
                "fingerprint": w.pair.fingerprint(),
                "in_inventory": False,
                "last_run": {"at": last[0], "ok": last[1], "result": last[2]} if last else None,
            }
        calls: dict[str, dict[str, int]] = {"aws": dict(sorted(self.aws.calls.items()))}
        if self.aws.evidence_calls:  # CloudTrail and region lookups: evidence, counted apart
            calls["aws_evidence"] = dict(sorted(self.aws.evidence_calls.items()))
        for name in ("infisical", "heroku", "github", "ssh"):
            sandbox = getattr(self, name)
            if sandbox is not None:
                calls[name] = dict(sorted(Counter(sandbox.calls).items()))
        return {
            "scenario": self.scenario.id,
            "target_user": self.scenario.target_user,
            "account": self.aws.account_id,
            "simulated_now": iso(self.clock.now()),
            "iam_users": users,
            "holders": holders,
            "faults": list(self.fault_log),
            "calls": calls,
        }

    def close(self) -> None:
        self._stop.set()
        running = [s for s in (self.infisical, self.heroku, self.github, self.ssh) if s is not None]
        if running:
            # Side by side: each waits for its server's loop to notice (up to its poll
            # interval); one after another, closing a world took about 0.1 s.
            try:
                with ThreadPoolExecutor(len(running), thread_name_prefix="sandbox-close") as pool:
                    list(pool.map(_stop_quietly, running))
            except RuntimeError:  # no new threads (the interpreter is shutting down)
                for sandbox in running:
                    _stop_quietly(sandbox)
        self.aws.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _stop_quietly(sandbox: Any) -> None:
    try:
        sandbox.stop()
    except Exception:
        pass


@dataclass
class _Forgotten:
    name: str
    pair: Pair
    every: float
    call: str | None
    next_run: datetime
    caller: trail.Caller = trail.FORGOTTEN
    runs: list[tuple[str, bool, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _pair_from(item: dict[str, Any] | None, secrets: dict[str, Secret]) -> Pair | None:
    if not item or not item.get("key_id"):
        return None
    secret = secrets.get(item.get("secret_of") or "")
    if secret is None:
        # The place held a secret that matched no key: it holds garbage still.
        import secrets as _random

        secret = Secret(_random.token_urlsafe(30), "garbage")
    return Pair(item["key_id"], secret)


def _workflow(file: str, environment: str | None) -> SandboxWorkflow:
    from steps.sandbox.github import SandboxWorkflow

    return SandboxWorkflow(file, environment=environment)
