"""Composition: the one place where a mode, profile, region, scenario and inventory
become a wiring, and a request becomes a started or resumed session.

The CLI and the app both call it, so `handrail run` and the start screen open a session
the same way, and only this module (with the tests) imports the training sandbox.
Errors are domain errors, one line each: `ComposeError` and the loader's `RunbookError`
are bad input (nothing was written); `LockHeld`/`SessionBusy` mean another session has it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.status import Mode
from steps.text import shown

if TYPE_CHECKING:
    from steps.engine import Engine, Session
    from steps.inventory import Inventory
    from steps.journal import SessionRow
    from steps.sandbox.scenario import Scenario
    from steps.sandbox.world import World
    from steps.wiring import Wiring

    WorldFactory = Callable[[Scenario], World]

DEFAULT_RUNBOOK = "aws-iam-access-key"


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
    load(request.runbook)

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
    options = {
        "profile": request.profile,
        "region": request.region,
        "scenario": request.scenario,
        "inventory": str(inv_path.resolve()) if inv_path else None,
        **request.options,
    }
    return Prepared(request, inputs, options, inventory, scenario)


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
    try:
        if req.retire_key:
            _check_retire_key(wiring, str(prepared.inputs.get("target_user") or ""), req.retire_key)
        return engine.start(req.runbook, prepared.inputs, wiring, options=prepared.options, session_id=session_id)
    except BaseException:
        wiring.close()
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
    """Resume an unfinished session from the journal with the wiring it started with."""
    return engine.resume(ref, lambda row: wiring_for_session(row, headless=headless), recover=recover)


def reopen(engine: Engine, row: SessionRow, *, headless: bool = True) -> Session:
    """A session opened where it stands, nothing resumed: to read a finished session's
    rollback plan, or to abandon one. Refused, like a resume, in another account or on a
    re-created user; another operator of the account takes it over (audited)."""
    from steps.loader import load

    return engine.open_bound(row, load(row.runbook_path), wiring_for_session(row, headless=headless))
