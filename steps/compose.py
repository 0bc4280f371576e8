"""Composition: the one place where a mode, profile, region, scenario and inventory
become a wiring, and a request becomes a started or resumed session.

The CLI and the app both call it, so `handrail run` and the start screen open a session
the same way, and only this module (with the tests) imports the training sandbox.
Errors are domain errors, one line each: `ComposeError` and the loader's `RunbookError`
are bad input (nothing was written); `LockHeld`/`SessionBusy` mean another session has it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.status import Mode
from steps.text import shown

if TYPE_CHECKING:
    from steps.audit import Audit
    from steps.engine import Engine, Session
    from steps.inventory import Inventory
    from steps.journal import CampaignRow, Journal, SessionRow, TargetRow
    from steps.roles import Governance
    from steps.sandbox.scenario import Scenario
    from steps.sandbox.world import World
    from steps.wiring import Wiring

    WorldFactory = Callable[[Scenario], World]

DEFAULT_RUNBOOK = "aws-iam-access-key"
log = logging.getLogger("handrail.compose")


class ComposeError(Exception):
    """A request that cannot become a session (bad input: nothing was written)."""


@dataclass(frozen=True)
class Request:
    """What the operator asked for, from the command line or the start screen."""

    runbook: str = DEFAULT_RUNBOOK
    mode: str = Mode.TRAINING
    user: str | None = None
    scenario: str | None = None
    reason: str | None = None
    profile: str | None = None
    region: str | None = None
    inventory: str | None = None  # a path; else $HANDRAIL_INVENTORY, else the config dir's
    roles: str | None = None  # a path; else $HANDRAIL_ROLES, else roles.yaml beside the inventory
    check_call: str | None = None
    allow_self_rotation: bool = False
    retire_key: str | None = None  # checked to be one of the user's keys before anything is written
    inputs: dict[str, str] = field(default_factory=dict)  # other runbook inputs (--input NAME=VALUE), e.g. person, observe_for
    options: dict[str, Any] = field(default_factory=dict)  # recorded with the session (e.g. opened_by)


@dataclass
class Prepared:
    """A checked request: its inputs, what the journal records, and how to wire it."""

    request: Request
    inputs: dict[str, str | None]
    options: dict[str, Any]
    inventory: Inventory | None
    scenario: Scenario | None
    governance: Governance | None = None  # None: found when the session starts (a campaign's fleet has it)


# -- the journal --------------------------------------------------------------------------------

_database: str | None = None  # `handrail --database URL`, for this process


def use_database(url: str | None) -> None:
    """What `--database` gave (None: $HANDRAIL_DATABASE_URL, else the local SQLite file)."""
    global _database
    _database = url


def journal_location() -> str | Path:
    """Where the journal is: --database, then $HANDRAIL_DATABASE_URL, then HANDRAIL_HOME's
    file. A URL given is checked (DatabaseUrlError): a garbage value never becomes a file."""
    from steps.db import check_url
    from steps.paths import journal_path

    if _database is not None:
        return check_url(_database, "--database")
    env = os.environ.get("HANDRAIL_DATABASE_URL")
    if env:
        return check_url(env, "$HANDRAIL_DATABASE_URL")
    return journal_path()


_opened: list[Journal] = []


def open_journal(now: Callable[[], str] | None = None) -> Journal:
    from steps.journal import Journal

    journal = Journal(journal_location(), now) if now else Journal(journal_location())
    _opened.append(journal)
    return journal


def close_journals() -> None:
    """Close what open_journal opened (a command is over: its pool's connections go back)."""
    while _opened:
        try:
            _opened.pop().close()
        except Exception:
            log.debug("closing a journal failed", exc_info=True)


def open_audit(journal: Journal) -> Audit:
    """The audit chain beside the journal: its database's when shared, else the local file."""
    from steps.audit import open_audit as opener
    from steps.paths import audit_path

    return opener(journal, audit_path())


def open_engine(os_user: str | None = None, now: Callable[[], str] | None = None) -> Engine:
    from steps.engine import Engine

    journal = open_journal(now)
    return Engine(journal, open_audit(journal), os_user=os_user)


# -- the inventory ------------------------------------------------------------------------------


def inventory_file(given: str | None) -> Path | None:
    """--inventory, else $HANDRAIL_INVENTORY, else the config dir's inventory.yaml if there is one."""
    from steps.paths import inventory_path

    if given:
        return Path(given).expanduser()
    if os.environ.get("HANDRAIL_INVENTORY"):
        return Path(os.environ["HANDRAIL_INVENTORY"]).expanduser()
    default = inventory_path()
    return default if default.exists() else None


def load_inventory(path: Path | None) -> Inventory | None:
    """The inventory, or None; a bad file raises RunbookError (one line)."""
    if path is None:
        return None
    from steps import inventory

    return inventory.load(path)


def find_inventory(given: str | None, *, must_exist: bool = True) -> tuple[Path | None, Inventory | None]:
    """(path, inventory) as every command finds them; a named file that is missing is bad input."""
    path = inventory_file(given)
    if path is not None and must_exist and not path.exists():
        raise ComposeError(f"{path}: no such file (--inventory)")
    return path, load_inventory(path) if path is not None and path.exists() else None


# -- the roles file -------------------------------------------------------------------------------


def roles_file(given: str | None, inventory: Path | None = None) -> Path | None:
    """--roles, else $HANDRAIL_ROLES, else roles.yaml beside the inventory in use, else the
    config dir's roles.yaml, if there is one."""
    from steps.paths import config_dir

    if given:
        return Path(given).expanduser()
    if os.environ.get("HANDRAIL_ROLES"):
        return Path(os.environ["HANDRAIL_ROLES"]).expanduser()
    for folder in ([inventory.parent] if inventory is not None else []) + [config_dir()]:
        if (folder / "roles.yaml").exists():
            return folder / "roles.yaml"
    return None


def find_governance(mode: Mode, given: str | None, inventory: Path | None, scenario: Scenario | None = None) -> Governance:
    """The roles in force: training plays by its scenario's; live and dry-run by the roles
    file (a named file that is missing is bad input; a bad file is one line)."""
    from steps import roles

    if mode is Mode.TRAINING:
        if given:
            raise ComposeError("--roles is for live and dry-run: training plays by its scenario's roles")
        governance = scenario.governance() if scenario is not None else roles.Governance.open()
        return governance
    path = roles_file(given, inventory)
    if path is None:
        return roles.Governance(None, "", enforce_approvals=mode is Mode.LIVE)
    if not path.exists():
        raise ComposeError(f"{path}: no such file (--roles or $HANDRAIL_ROLES)")
    return roles.Governance(roles.load(path), str(path.resolve()), enforce_approvals=mode is Mode.LIVE)


# -- wiring -------------------------------------------------------------------------------------


def check_mode(mode: str) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        raise ComposeError(f"unknown mode {mode!r} (one of {', '.join(m.value for m in Mode)})") from None


def make_wiring(
    mode: str,
    *,
    scenario: Scenario | str | None = None,
    profile: str | None = None,
    region: str | None = None,
    inventory: Inventory | None = None,
    headless: bool = True,
    world_factory: WorldFactory | None = None,
) -> Wiring:
    """The wiring of a mode: training builds its simulated world; dry-run and live use
    boto3's own credential chain (the profile and region given)."""
    from steps.wiring import LiveWiring, TrainingWiring, training_clock

    if check_mode(mode) is Mode.TRAINING:
        from steps.sandbox import scenario as scenarios
        from steps.sandbox.world import World

        sc = scenario if scenario is not None and not isinstance(scenario, str) else scenarios.load(scenario)
        world = world_factory(sc) if world_factory else World.create(sc, training_clock(headless))
        return TrainingWiring(world)
    return LiveWiring(profile=profile, region=region, dry_run=mode == Mode.DRY_RUN, inventory=inventory)


def wiring_for_session(row: SessionRow, headless: bool = True) -> Wiring:
    """Rebuild the wiring a session started with (training: its saved world)."""
    from steps.wiring import LiveWiring, TrainingWiring, training_clock

    if row.mode == Mode.TRAINING:
        from steps.sandbox.world import World

        _in_campaign_world(row)
        if not row.world:
            raise ComposeError(f"session {row.id}: its simulated world was not saved")
        clock = training_clock(headless, offset=row.sim_offset or 0.0)
        return TrainingWiring(World.restore(json.loads(row.world), clock))
    path = row.options.get("inventory")
    return LiveWiring(
        profile=row.options.get("profile"),
        region=row.options.get("region"),
        dry_run=row.mode == Mode.DRY_RUN,
        inventory=load_inventory(Path(path)) if path else None,
    )


def check_output_path(path: str, flag: str) -> Path:
    """A file a command will write at the end: refused before anything runs when it cannot be."""
    target = Path(path).expanduser()
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ComposeError(f"{flag}: {shown(path)} is a directory")
    if not parent.is_dir():
        raise ComposeError(f"{flag}: the folder of {shown(path)} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ComposeError(f"{flag}: {shown(path)} cannot be written (permission denied)")
    existed = target.exists()
    try:  # what access() cannot tell (root, /proc, a read-only mount): open it, change nothing
        with open(target, "a"):
            pass
    except OSError as exc:
        raise ComposeError(f"{flag}: {shown(path)} cannot be written ({exc.strerror or type(exc).__name__})") from None
    if not existed:
        target.unlink(missing_ok=True)
    return target


# -- sessions -----------------------------------------------------------------------------------


# Inputs that have their own flag (and checks) on the command line.
_OWN_FLAGS = {"target_user": "--user", "check_call": "--check-call", "allow_self_rotation": "--allow-self-rotation", "reason": "--reason"}


def prepare(request: Request) -> Prepared:
    """Check everything a request names before anything is built or written: the mode and
    the flags it allows, the runbook, the scenario or the inventory, the check call."""
    from steps.loader import load

    mode = check_mode(request.mode)
    if request.user is not None and not request.user.strip():
        raise ComposeError("--user is empty: name the IAM user to rotate")
    if request.scenario and mode is not Mode.TRAINING:
        raise ComposeError("--scenario is for training only")
    if request.inventory and mode is Mode.TRAINING:
        raise ComposeError("--inventory is for live and dry-run: training builds its own from the scenario")
    if request.check_call:
        from steps.aws import parse_check_call

        try:
            parse_check_call(request.check_call)
        except ValueError as exc:
            raise ComposeError(f"--check-call: {exc}") from None
    runbook = load(request.runbook)

    for name in request.inputs:
        if name in _OWN_FLAGS:
            raise ComposeError(f"--input {name}=…: give it as {_OWN_FLAGS[name]}")
    inventory = inv_path = scenario = None
    inputs: dict[str, str | None] = {}
    user, check_call = request.user, request.check_call
    if mode is Mode.TRAINING:
        from steps.sandbox import scenario as scenarios

        scenario = scenarios.load(request.scenario)
        user = user or scenario.target_user
        inputs.update(scenario.inputs)
        if not check_call and user in scenario.aws.users:
            check_call = scenario.aws.users[user].check_call
    else:
        inv_path, inventory = find_inventory(request.inventory)
        if not user:
            raise ComposeError("--user is required outside training: name the IAM user to rotate")
        entry = inventory.user(user) if inventory is not None else None
        if entry is not None and not check_call:
            check_call = entry.check_call
    inputs.update(request.inputs)
    inputs.update(
        {
            "target_user": user,
            "check_call": check_call,
            "allow_self_rotation": "yes" if request.allow_self_rotation else None,
        }
    )
    if request.reason:
        inputs["reason"] = request.reason
    if "check_call" not in runbook.inputs and not request.check_call:
        inputs.pop("check_call", None)  # found in the inventory for a runbook that does not take it
    governance = find_governance(mode, request.roles, inv_path, scenario)
    options = {
        "profile": request.profile,
        "region": request.region,
        "scenario": request.scenario,
        "inventory": str(inv_path.resolve()) if inv_path else None,
        **request.options,
    }
    return Prepared(request, inputs, options, inventory, scenario, governance)


def start(
    engine: Engine,
    request: Request | Prepared,
    *,
    headless: bool = True,
    session_id: str | None = None,
    world_factory: WorldFactory | None = None,
) -> Session:
    """Start a session: prepare (unless already), wire, and let the engine start it. The
    wiring is closed again if the engine refuses."""
    prepared = request if isinstance(request, Prepared) else prepare(request)
    req = prepared.request
    wiring = make_wiring(
        req.mode,
        scenario=prepared.scenario,
        profile=req.profile,
        region=req.region,
        inventory=prepared.inventory,
        headless=headless,
        world_factory=world_factory,
    )
    return _start_wired(engine, prepared, wiring, session_id=session_id)


def _start_wired(
    engine: Engine, prepared: Prepared, wiring: Wiring, *, session_id: str | None = None, campaign_id: str | None = None
) -> Session:
    req = prepared.request
    try:
        target = str(prepared.inputs.get("target_user") or "")
        if req.retire_key:
            _check_retire_key(wiring, target, req.retire_key)
        authority = _authorise(engine, prepared, wiring, target, campaign_id)
        options = {**prepared.options, "governance": authority.as_dict()}
        return engine.start(req.runbook, prepared.inputs, wiring, options=options, session_id=session_id, campaign_id=campaign_id)
    except BaseException:
        wiring.close()
        raise


def _authorise(engine: Engine, prepared: Prepared, wiring: Wiring, target: str, campaign_id: str | None) -> Any:
    """The runbook's roles, checked before anything is written; a refusal is audited."""
    from steps import roles
    from steps.loader import load

    governance = prepared.governance or roles.Governance(None, "")
    runbook = load(prepared.request.runbook)
    context = {"runbook": runbook.id, "iam_user": target, "mode": wiring.mode, **({"campaign": campaign_id} if campaign_id else {})}
    return _authorised(engine, wiring, runbook, target, governance, context)


def _authorised(
    engine: Engine, wiring: Wiring, runbook: Any, target: str, rules: Governance, context: dict[str, Any], session: str | None = None
) -> Any:
    """roles.authorise, and a refusal audited (`session.refused`, with `context` and why) before it is raised."""
    from steps import roles

    try:
        return roles.authorise(wiring, runbook, target, rules)
    except roles.RoleRefused as exc:
        _, operator = wiring.identity()
        engine.audit.append("session.refused", session=session, actor=operator, context={**context, "why": str(exc)})
        raise


def _check_retire_key(wiring: Wiring, user: str, key_id: str) -> None:
    from steps.aws import aws_error, error_code
    from steps.wiring import NoSuchUser, WiringError

    try:
        keys = wiring.aws_client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            raise NoSuchUser(user) from None
        raise WiringError(f"cannot list the access keys of {user!r}: {aws_error(exc)}") from None
    ids = [k["AccessKeyId"] for k in keys]
    if key_id not in ids:
        raise ComposeError(f"--retire-key: {shown(key_id)} is not one of {user}'s keys ({', '.join(ids) or 'it has none'})")


def resume(engine: Engine, ref: str, *, headless: bool = True, recover: bool = True) -> Session:
    """Resume an unfinished session from the journal with the wiring it started with; the
    operator's roles are checked again (a take-over, or roles changed since)."""
    return engine.resume(ref, lambda row: wiring_for_session(row, headless=headless), recover=recover, authorise=reauthoriser(engine))


def session_governance(row: SessionRow, wiring: Wiring) -> Governance:
    """The roles a session is judged by when it is opened again: training plays by its
    world's scenario; live and dry-run by the roles file it started with, read again (a
    role taken away since counts), else the one found as at a start."""
    from steps import roles

    mode = check_mode(row.mode)
    if mode is Mode.TRAINING:
        world = getattr(wiring, "world", None)
        return world.scenario.governance() if world is not None else roles.Governance.open()
    recorded = (row.options.get("governance") or {}).get("roles_source")
    inventory = row.options.get("inventory")
    if recorded and recorded != "none":
        if not Path(recorded).exists():
            raise ComposeError(f"session {row.id}: its roles file {recorded} is gone: put it back (or abandon the session)")
        return find_governance(mode, recorded, None)
    return find_governance(mode, None, Path(inventory) if inventory else None)


def reauthoriser(engine: Engine, governance: Governance | None = None) -> Callable[[SessionRow, Any, Wiring], None]:
    """The role check of `_start_wired`, for a session opened again (resume, rollback,
    abandon, a take-over by another operator): before anything is written, a refusal
    audited. The target's elevation is looked at again, unless the session deleted it."""
    from steps.engine import TARGET_DELETED

    def check(row: SessionRow, runbook: Any, wiring: Wiring) -> None:
        rules = governance or session_governance(row, wiring)
        target = "" if engine.journal.facts(row.id).get(TARGET_DELETED) else row.target
        context = {"runbook": runbook.id, "iam_user": row.target, "mode": row.mode, "reopened": True}
        _authorised(engine, wiring, runbook, target, rules, context, session=row.id)

    return check


def _in_campaign_world(row: SessionRow) -> None:
    """A training campaign's sessions share its world: they are opened through the campaign."""
    if row.campaign_id and row.mode == Mode.TRAINING and not row.world:
        raise ComposeError(
            f"session {row.id} belongs to training campaign {row.campaign_id}, whose sessions share one simulated world: "
            f"use `handrail campaign resume {row.campaign_id}` or `handrail campaign rollback {row.campaign_id}`"
        )


def reopen(
    engine: Engine, row: SessionRow, *, headless: bool = True, wiring: Wiring | None = None, governance: Governance | None = None
) -> Session:
    """A session opened where it stands, nothing resumed: to read a finished session's
    rollback plan, or to abandon one. Refused, like a resume, in another account or on a
    re-created user; another operator of the account takes it over (audited)."""
    from steps.loader import load

    return engine.open_bound(
        row, load(row.runbook_path), wiring or wiring_for_session(row, headless=headless), authorise=reauthoriser(engine, governance)
    )


# -- campaigns: many sessions at once -------------------------------------------------------------


class Fleet:
    """What a campaign's sessions are wired to.

    Training: one simulated world that every session shares (one account, one clock, one
    fake vault, Heroku, GitHub and host); each session gets its own `SharedTrainingWiring`
    onto it, so its adapters and its operator identity are its own. Live and dry-run: a
    `LiveWiring` per session, the inventory read once.
    """

    def __init__(
        self,
        mode: Mode,
        *,
        world: World | None = None,
        profile: str | None = None,
        region: str | None = None,
        inventory: Inventory | None = None,
        inventory_path: Path | None = None,
        scenario_ref: str | None = None,
        governance: Governance | None = None,
    ) -> None:
        self.mode = mode
        self.governance = governance
        self.world = world
        self.profile, self.region = profile, region
        self._inventory = inventory
        self.inventory_path = inventory_path
        self.scenario_ref = scenario_ref

    @property
    def simulated(self) -> bool:
        return self.world is not None

    @property
    def inventory(self) -> Inventory | None:
        return self.world.inventory if self.world is not None else self._inventory

    def wiring(self, on_checkpoint: Callable[[], None] | None = None) -> Wiring:
        """A session's wiring; in training, onto the shared world, whose saving is
        asked of `on_checkpoint` at each of the session's step boundaries."""
        from steps.wiring import LiveWiring, SharedTrainingWiring

        if self.world is not None:
            return SharedTrainingWiring(self.world, on_checkpoint)
        return LiveWiring(profile=self.profile, region=self.region, dry_run=self.mode == Mode.DRY_RUN, inventory=self._inventory)

    def options(self) -> dict[str, Any]:
        """What a campaign records to be opened again (never a secret)."""
        return {
            "profile": self.profile,
            "region": self.region,
            "scenario": self.scenario_ref,
            "inventory": str(self.inventory_path.resolve()) if self.inventory_path else None,
            "roles": self.governance.source
            if self.governance is not None and self.mode is not Mode.TRAINING and self.governance.roles
            else None,
        }

    def snapshot(self) -> tuple[str | None, float | None]:
        """The shared world and its clock, to save on the campaign (training), else (None, None)."""
        if self.world is None:
            return None, None
        return json.dumps(self.world.snapshot()), self.world.clock.offset

    def export(self) -> dict[str, Any] | None:
        return self.world.export() if self.world is not None else None

    def close(self) -> None:
        if self.world is not None:
            self.world.close()


def open_fleet(
    mode: str,
    *,
    scenario: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    inventory: str | None = None,
    roles: str | None = None,
    headless: bool = True,
    world_factory: WorldFactory | None = None,
) -> Fleet:
    """The wiring source of a new campaign. Training builds ONE world from the scenario
    (default: fleet) for all the campaign's sessions; a scenario that schedules step
    faults is refused, as a fault armed at a step would hit whichever session runs it."""
    checked = check_mode(mode)
    if scenario and checked is not Mode.TRAINING:
        raise ComposeError("--scenario is for training only")
    if inventory and checked is Mode.TRAINING:
        raise ComposeError("--inventory is for live and dry-run: training builds its own from the scenario")
    if checked is Mode.TRAINING:
        from steps.sandbox import scenario as scenarios
        from steps.sandbox.world import World
        from steps.wiring import training_clock

        sc = scenarios.load(scenario or FLEET_SCENARIO)
        if sc.faults:
            raise ComposeError(f"scenario {sc.id} schedules faults at steps: that is for one session (handrail run), not a campaign's many")
        world = world_factory(sc) if world_factory else World.create(sc, training_clock(headless))
        return Fleet(checked, world=world, scenario_ref=sc.source or sc.id, governance=find_governance(checked, roles, None, sc))
    path, inv = find_inventory(inventory)
    governance = find_governance(checked, roles, path)
    return Fleet(checked, profile=profile, region=region, inventory=inv, inventory_path=path, governance=governance)


FLEET_SCENARIO = "fleet"


def restore_fleet(row: CampaignRow, *, headless: bool = True) -> Fleet:
    """A campaign's wiring source again: training brings back its one saved world."""
    mode = check_mode(row.mode)
    if mode is Mode.TRAINING:
        from steps.sandbox.world import World
        from steps.wiring import training_clock

        if not row.world:
            raise ComposeError(f"campaign {row.id}: its simulated world was not saved")
        world = World.restore(json.loads(row.world), training_clock(headless, offset=row.sim_offset or 0.0))
        return Fleet(mode, world=world, scenario_ref=row.options.get("scenario"), governance=world.scenario.governance())
    path = row.options.get("inventory")
    inv_path = Path(path) if path else None
    return Fleet(
        mode,
        profile=row.options.get("profile"),
        region=row.options.get("region"),
        inventory=load_inventory(inv_path) if inv_path else None,
        inventory_path=inv_path,
        governance=find_governance(mode, row.options.get("roles"), inv_path),
    )


_SMALL_WORLD = 160_000  # bytes: a world snapshot this small is saved at every step boundary
_SAVE_SPACING = 30  # else: at most one save per this many times its cost


class CampaignOpener:
    """Opens a campaign's sessions on its fleet: the composition half of `steps.campaign`
    (which schedules and drives them, and never builds a wiring itself)."""

    def __init__(self, engine: Engine, fleet: Fleet, campaign_id: str) -> None:
        self.engine, self.fleet, self.campaign_id = engine, fleet, campaign_id
        self._saved_at = 0.0
        self._save_cost = 0.0
        self._save_size = 0
        self._save_lock = threading.Lock()

    def _wiring(self) -> Wiring:
        return self.fleet.wiring(on_checkpoint=self.save)

    @property
    def simulated(self) -> bool:
        return self.fleet.simulated

    def start(self, target: TargetRow) -> Session:
        """A new session for a planned target, in the campaign, on the fleet's wiring."""
        inventory = self.fleet.inventory
        entry = inventory.user(target.target) if inventory is not None else None
        inputs: dict[str, str | None] = {"target_user": target.target, "check_call": entry.check_call if entry else None}
        inputs.update(target.inputs)
        request = Request(
            runbook=target.runbook,
            mode=self.fleet.mode,
            user=target.target,
            profile=self.fleet.profile,
            region=self.fleet.region,
            inputs=dict(target.inputs),
        )
        from steps.loader import load

        if "check_call" not in load(target.runbook).inputs:
            inputs.pop("check_call", None)
        options = {**self.fleet.options(), "campaign": self.campaign_id}
        prepared = Prepared(request, inputs, options, inventory, None, self.fleet.governance)
        return _start_wired(self.engine, prepared, self._wiring(), campaign_id=self.campaign_id)

    def resume(self, session_id: str, *, recover: bool = True) -> Session:
        check = reauthoriser(self.engine, self.fleet.governance)
        return self.engine.resume(session_id, lambda row: self._wiring(), recover=recover, authorise=check)

    def reopen(self, row: SessionRow) -> Session:
        return reopen(self.engine, row, wiring=self._wiring(), governance=self.fleet.governance)

    def save(self, *, force: bool = False) -> None:
        """Save the shared world on the campaign (training). Asked at every step boundary
        of every target (before the journal records the step), so a kill -9 between steps
        finds the world the journal describes. A snapshot grows with the fleet: while it is
        under _SMALL_WORLD bytes (a person's offboarding, a fleet of tens) every boundary
        saves; past that, saves are spaced _SAVE_SPACING times their cost apart (a save
        holds the interpreter, so the other targets' threads wait too), and a kill may find
        the world a few steps behind: a resume then stops on what it finds (a key still
        Active is not deleted) instead of finishing. `force`: always."""
        if not self.fleet.simulated:
            return
        with self._save_lock:
            began = time.monotonic()
            if not force and self._save_size > _SMALL_WORLD and began - self._saved_at < _SAVE_SPACING * self._save_cost:
                return
            for _ in range(3):
                try:
                    world, offset = self.fleet.snapshot()
                    break
                except RuntimeError:  # a server thread changed the world under the reader: again
                    continue
            else:
                log.debug("campaign %s: world snapshot skipped", self.campaign_id)
                return
            # The snapshot's own cost: the journal's write below may wait for other
            # targets' writes, which says nothing about the size of the world.
            self._save_cost = time.monotonic() - began
            self._save_size = len(world or "")
            self.engine.journal.update_campaign(self.campaign_id, world=world, sim_offset=offset)
            self._saved_at = time.monotonic()


# -- a second operator --------------------------------------------------------------------------


@dataclass
class Approver:
    """Who runs `handrail approve`, as STS says, and the roles they are judged by."""

    account: str
    arn: str
    wiring: Wiring
    governance: Governance
    closer: Callable[[], None]

    def close(self) -> None:
        self.closer()


def approver(row: SessionRow, *, profile: str | None = None, region: str | None = None, roles: str | None = None) -> Approver:
    """The approving identity. Live and dry-run: boto3's credential chain (--profile), in
    another terminal or on another machine. Training: the session's simulated world, signed
    as its second operator (another IAM user of the same account: another STS principal)."""
    from steps import roles as roles_mod

    mode = check_mode(row.mode)
    if mode is Mode.TRAINING:
        from steps.sandbox.aws import SECOND_OPERATOR

        if roles or profile or region:
            raise ComposeError("--roles, --profile and --region are for live sessions: training approves as its world's second operator")
        if row.campaign_id and not row.world:
            fleet = restore_fleet_of(row.campaign_id)
            wiring: Wiring = fleet.wiring()
            world: Any = fleet.world
            close = fleet.close
        else:
            wiring = wiring_for_session(row)
            world, close = getattr(wiring, "world", None), wiring.close
        pair = world.aws.pair_of(SECOND_OPERATOR) if world is not None else None
        if pair is None:
            close()
            raise ComposeError(
                f"session {row.id}: its training world has no second operator (a scenario gives one with `second_operator:`)"
            )
        wiring.switch_operator(pair)
        governance = world.scenario.governance() if world is not None else roles_mod.Governance.open()
        try:
            account, arn = wiring.identity()
        except BaseException:
            close()
            raise
        return Approver(account, arn, wiring, governance, close)
    live = make_wiring(mode, profile=profile, region=region)
    try:
        account, arn = live.identity()
        recorded = (row.options.get("governance") or {}).get("roles_source")
        given = roles or (recorded if recorded and recorded != "none" and Path(recorded).exists() else None)
        inventory = row.options.get("inventory")
        governance = find_governance(mode, given, Path(inventory) if inventory else None)
    except BaseException:
        live.close()
        raise
    return Approver(account, arn, live, governance, live.close)


def restore_fleet_of(campaign_id: str) -> Fleet:
    from steps.journal import Journal

    journal = Journal(journal_location())
    try:
        return restore_fleet(journal.campaign(campaign_id))
    finally:
        journal.close()
