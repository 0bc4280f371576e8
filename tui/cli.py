"""The `handrail` command line.

Headless commands never import textual, and nothing heavy (boto3, moto, paramiko,
PyGithub) loads before a command needs it, so `handrail --help` is instant.
Exit codes: 0 done, 1 a step failed (session resumable), 2 bad input (nothing changed),
3 stopped at a gate, a confirmation it may not answer, or a lock held by another session.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from steps import __version__
from steps.status import MODES, SessionStatus, TargetState

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 3


def _one_line(exc: BaseException) -> str:
    text = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    from steps.secrets import redact

    click.echo(f"handrail: {redact(str(message))}", err=True)
    sys.exit(code)


def _check_out(path: str | None, flag: str, force: bool | None = None) -> Path | None:
    """A file the command will write, checked before anything runs (one line, exit 2).
    A document (`force` given: a report, a debrief, kept as evidence) already there is
    refused unless --force, so a stray repeat of the command does not overwrite it. The
    simulated world (--world-out, `force` None) is the command's working state, written
    again by every run and rollback on it."""
    if path is None:
        return None
    from steps.compose import ComposeError, check_output_path

    try:
        target = check_output_path(path, flag)
    except ComposeError as exc:
        fail(str(exc))
    if force is False and target.exists():
        fail(f"{flag}: {path} exists; pass --force to replace it (nothing written)")
    return target


_force = click.option("--force", is_flag=True, help="With --out: replace FILE if it exists.")


def _write_out(path: str | Path, text: str, flag: str) -> bool:
    """Write a command's file at its end; a write the system refuses is one line on stderr
    (the caller decides the exit code), never a traceback."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(
            f"handrail: {flag} {path}: cannot be written ({exc.strerror or type(exc).__name__}); nothing was written there", err=True
        )
        return False
    return True


def _engine():
    from steps.compose import open_engine

    return open_engine()


def _journal():
    from steps.compose import open_journal

    return open_journal()


def _audit(must_exist: bool = True):
    """The journal's audit chain: the shared database's, or the local file (the file is
    read without opening the journal)."""
    from steps.compose import journal_location, open_audit
    from steps.db import is_url

    if is_url(journal_location()):
        return open_audit(_journal())
    from steps.audit import AuditLog
    from steps.paths import audit_path

    path = audit_path()
    if must_exist and not path.exists():
        fail(f"{path}: no such file")
    return AuditLog(path)


class _Handrail(click.Group):
    """The journal's own failures, whatever the command: one line, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from steps.db import DatabaseUrlError, JournalUnavailable, SchemaMismatch
            from steps.journal import LeaseLost

            if isinstance(exc, JournalUnavailable):
                fail(f"{exc}: stopped, nothing recorded is lost; run the command again when the database is back", EXIT_FAILED)
            if isinstance(exc, LeaseLost):
                fail(str(exc), EXIT_FAILED)
            if isinstance(exc, SchemaMismatch | DatabaseUrlError):
                fail(str(exc), EXIT_BAD_INPUT)
            raise
        finally:
            if "steps.compose" in sys.modules:
                sys.modules["steps.compose"].close_journals()


@click.group(cls=_Handrail, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="handrail")
@click.option(
    "--database",
    metavar="URL",
    help="The journal in a team's shared PostgreSQL (postgresql://…); default $HANDRAIL_DATABASE_URL, else the local SQLite file.",
)
@click.pass_context
def main(ctx: click.Context, database: str | None = None) -> None:
    """handrail: an SOP as a live checklist. Each step shows the command it stands for,
    runs when you confirm, shows what it validated, and can be rolled back.

    With no command, opens the app (training sandbox by default: no credentials needed).
    """
    from steps import logs

    if database is not None or "steps.compose" in sys.modules or os.environ.get("HANDRAIL_DATABASE_URL"):
        from steps.compose import journal_location, use_database

        use_database(database)
        journal_location()  # a bad URL is one line (exit 2) before any command runs
    logs.install()
    sys.excepthook = logs.excepthook
    if ctx.invoked_subcommand is None:
        ctx.invoke(tui)


# -- runbooks -----------------------------------------------------------------------------------


@main.command()
@click.argument("file")
def check(file: str) -> None:
    """Validate a runbook file: exit 0, or 2 with a one-line error."""
    from steps.loader import RunbookError, load

    try:
        runbook = load(file)
    except RunbookError as exc:
        fail(str(exc))
    click.echo(f"{file}: ok ({runbook.id}: {len(runbook.steps)} steps)")


@main.command()
@click.argument("runbook", default="aws-iam-access-key")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True)
def plan(runbook: str, fmt: str) -> None:
    """The checklist: each step, the command it stands for, its undo."""
    from steps.loader import RunbookError, load
    from steps.plan import render_plan

    try:
        book = load(runbook)
    except RunbookError as exc:
        fail(str(exc))
    from steps.validate import describe_last

    click.echo(render_plan(book, fmt, last_validated=describe_last(_journal(), book)))


# -- running ------------------------------------------------------------------------------------


_roles_option = click.option(
    "--roles",
    "roles_path",
    metavar="FILE",
    help="Live/dry-run: who holds which role (default: $HANDRAIL_ROLES, then roles.yaml beside the inventory or in the config dir).",
)


def _run_options(f):
    options = [
        click.option("--yes", "-y", is_flag=True, help="Answer yes-confirmations (only those)."),
        click.option("--fast-forward", is_flag=True, help="Training: move the simulated clock through waits and the observation gate."),
        click.option("--override-gate", metavar="REASON", help="Pass a time gate early; the reason goes to the audit log."),
        click.option("--override-block", metavar="REASON", help="Go past an evidence block (e.g. a use after deactivation); audited."),
        click.option("--retire-key", metavar="KEY_ID", help="With two Active keys: the one to retire (the typed choice)."),
        click.option(
            "--confirm-key",
            "confirm_keys",
            metavar="KEY_ID",
            multiple=True,
            help="Answer a typed confirmation by the key id you would type.",
        ),
        click.option(
            "--confirm-irreversible",
            is_flag=True,
            help="Answer an irreversible step's typed key id (a delete: no undo). Audited.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end (progress goes to stderr)."),
        click.option(
            "--world-out",
            type=click.Path(dir_okay=False, writable=True),
            help="Training: write the final simulated world (fingerprints, never values).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


class _TerminalAsker:
    available = True

    def confirm(self, text: str) -> bool:
        return click.confirm(text, default=False, err=True)

    def typed(self, text: str) -> str:
        return click.prompt(text, default="", show_default=False, err=True)

    def manual(self, text: str) -> str:
        return click.prompt(text + " [done/skip/stop]", type=click.Choice(["done", "skip", "stop"]), default="stop", err=True)


def _asker(as_json: bool):
    from steps.driver import Asker

    if sys.stdin.isatty() and sys.stderr.isatty() and not as_json and not os.environ.get("CI"):
        return _TerminalAsker()
    return Asker()


def _finish(session, code: int, message: str, as_json: bool, world_out: str | None) -> None:
    from steps.secrets import redact

    debrief = None
    if session.mode == "training" and getattr(session.wiring, "world", None) is not None:
        from steps import debrief as debriefs

        session.checkpoint()
        debrief = debriefs.build(session.journal, session.audit, session.id)
    if world_out is not None:
        world = getattr(session.wiring, "world", None)
        if world is None:
            click.echo("handrail: --world-out is for training mode only; nothing written", err=True)
        elif not _write_out(world_out, redact(json.dumps(world.export(), indent=2)) + "\n", "--world-out") and code == EXIT_DONE:
            code = EXIT_FAILED
    session.close()
    if as_json:
        summary = session.summary()
        summary["exit_code"] = code
        summary["message"] = message
        if debrief is not None:
            summary["debrief"] = {k: v for k, v in debrief.as_dict().items() if k != "timeline"}
        click.echo(redact(json.dumps(summary, indent=2)))
    else:
        click.echo(redact(message), err=code != 0)
        if debrief is not None:
            from steps.debrief import to_text

            click.echo("")
            click.echo(redact(to_text(debrief)))
    sys.exit(code)


def _drive_options(
    yes: bool,
    fast_forward: bool,
    override_gate: str | None,
    override_block: str | None,
    retire_key: str | None,
    confirm_keys: tuple[str, ...],
    confirm_irreversible: bool,
    world_out: str | None,
):
    """The driver's flags, every one checked before a session, a lock or an audit line exists."""
    from steps.compose import ComposeError, check_output_path
    from steps.driver import DriveOptions
    from steps.engine import EngineError, check_reason

    try:
        for flag, value in (("--override-gate", override_gate), ("--override-block", override_block)):
            if value is not None:
                check_reason(value, flag)
        if world_out is not None:
            check_output_path(world_out, "--world-out")
    except (EngineError, ComposeError) as exc:
        fail(str(exc))
    return DriveOptions(yes, fast_forward, override_gate, override_block, retire_key, list(confirm_keys), confirm_irreversible)


def _open_session(engine, session_ref: str, recover: bool = True):
    """Resume a session from the journal, or exit with one line (3 if another session or
    process holds it, 2 for anything else)."""
    from steps import compose

    with _refusals():
        return compose.resume(engine, session_ref, recover=recover)


@contextmanager
def _refusals() -> Iterator[None]:
    """The domain's refusals as one line and an exit code: 3 when another session or
    process holds the user or the session, 2 for bad input (nothing was written)."""
    from steps.aws import AwsCallFailed
    from steps.campaign import PlanError
    from steps.compose import ComposeError
    from steps.engine import EngineError
    from steps.journal import LockHeld, SessionBusy, SessionNotFound
    from steps.loader import RunbookError
    from steps.roles import RoleRefused
    from steps.wiring import WiringError

    try:
        yield
    except (LockHeld, SessionBusy, RoleRefused) as exc:
        fail(str(exc), EXIT_STOPPED)
    except (ComposeError, SessionNotFound, EngineError, RunbookError, WiringError, AwsCallFailed, PlanError) as exc:
        fail(_one_line(exc))


def _drive_session(session, opts, as_json: bool, world_out: str | None) -> None:
    from steps.driver import Printer, drive

    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    printer = Printer(echo, progress=sys.stderr.isatty())
    printer.header(session)
    from steps.db import JournalUnavailable
    from steps.journal import LeaseLost

    try:
        code, message = drive(session, opts, printer, _asker(as_json))
    except KeyboardInterrupt:
        code, message = EXIT_STOPPED, f"interrupted: the journal has where the session stands; `handrail resume {session.id}`"
    except (JournalUnavailable, LeaseLost) as exc:
        # Nothing more can be recorded: stop here (no checkpoint, no debrief); the journal
        # has every step up to this one, and resume runs this one again (it looks first).
        session.wiring.close()
        fail(f"{exc}: step stopped; `handrail resume {session.id}` when the database is back", EXIT_FAILED)
    _finish(session, code, message, as_json, world_out)


@main.command()
@click.argument("runbook", default="aws-iam-access-key")
@click.option("--user", "user", metavar="NAME", help="The IAM user to rotate (training: defaults to the scenario's).")
@click.option("--mode", type=click.Choice(MODES), default="training", show_default=True)
@click.option("--scenario", metavar="NAME", help="Training: the scenario to play (default: happy-path).")
@click.option("--reason", type=click.Choice(["scheduled", "operator-initiated", "incident", "offboarding"]), help="Why this rotation runs.")
@click.option("--check-call", metavar="CALL", help="A read-only call the user makes, e.g. 's3:ListObjectsV2 Bucket=raxx-backups'.")
@click.option("--allow-self-rotation", is_flag=True, help="Allow rotating the key you are signed in with (warned, audited).")
@click.option(
    "--input",
    "extra_inputs",
    metavar="NAME=VALUE",
    multiple=True,
    help="Another input of the runbook (e.g. --input person=dana --input observe_for=48h); `handrail plan` lists them.",
)
@click.option("--profile", metavar="PROFILE", help="Live/dry-run: the AWS profile to act as.")
@click.option("--region", metavar="REGION", help="Live/dry-run: the AWS region for API calls.")
@click.option(
    "--inventory",
    "inventory_path",
    metavar="FILE",
    help="Live/dry-run: where each user's pair lives and who consumes it (default: $HANDRAIL_INVENTORY, then the config dir's inventory.yaml).",
)
@_roles_option
@_run_options
def run(
    runbook,
    user,
    mode,
    scenario,
    reason,
    check_call,
    allow_self_rotation,
    extra_inputs,
    profile,
    region,
    inventory_path,
    roles_path,
    yes,
    fast_forward,
    override_gate,
    override_block,
    retire_key,
    confirm_keys,
    confirm_irreversible,
    as_json,
    world_out,
) -> None:
    """Run a runbook headless, from the first step to the end or the first stop."""
    from steps import compose

    if fast_forward and mode != "training":
        fail("--fast-forward is for training only: live time cannot be skipped (use --override-gate REASON)")
    if world_out is not None and mode != "training":
        fail("--world-out is for training only")
    opts = _drive_options(yes, fast_forward, override_gate, override_block, retire_key, confirm_keys, confirm_irreversible, world_out)
    given: dict[str, str] = {}
    for item in extra_inputs:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail(f"--input {item!r}: write it as NAME=VALUE")
        given[name.strip()] = value
    request = compose.Request(
        runbook=runbook,
        mode=mode,
        user=user,
        scenario=scenario,
        reason=reason,
        profile=profile,
        region=region,
        inventory=inventory_path,
        roles=roles_path,
        check_call=check_call,
        allow_self_rotation=allow_self_rotation,
        retire_key=retire_key,
        inputs=given,
    )
    with _refusals():
        session = compose.start(_engine(), request)
    _drive_session(session, opts, as_json, world_out)


@main.command()
@click.argument("session_ref", metavar="SESSION")
@_run_options
def resume(
    session_ref, yes, fast_forward, override_gate, override_block, retire_key, confirm_keys, confirm_irreversible, as_json, world_out
) -> None:
    """Resume an interrupted session at its first unfinished step."""
    opts = _drive_options(yes, fast_forward, override_gate, override_block, retire_key, confirm_keys, confirm_irreversible, world_out)
    session = _open_session(_engine(), session_ref)
    if fast_forward and not session.wiring.clock.simulated:
        session.close()
        fail("--fast-forward is for training only")
    _drive_session(session, opts, as_json, world_out)


@main.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--yes", "-y", is_flag=True, help="Run the plan without asking.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--world-out", type=click.Path(dir_okay=False, writable=True))
def rollback(session_ref, yes, as_json, world_out) -> None:
    """Show the rollback plan, then undo every completed step in reverse."""
    from steps import driver
    from steps.journal import SessionNotFound

    _check_out(world_out, "--world-out")
    engine = _engine()
    try:
        row = engine.journal.find_session(session_ref)
    except SessionNotFound as exc:
        fail(str(exc))
    if row.status in (SessionStatus.ROLLED_BACK, SessionStatus.ABANDONED):
        fail(f"session {row.id} is {row.status}: nothing to roll back")
    if row.status is SessionStatus.DONE:
        # Finished: nothing to resume, but its plan says whether there is a way back.
        from steps import compose

        with _refusals():
            session = compose.reopen(engine, row)
    else:
        session = _open_session(engine, row.id, recover=False)
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    code, message = driver.rollback(session, yes, driver.Printer(echo), _asker(as_json))
    if code == driver.EXIT_STOPPED and not as_json:  # not confirmed: nothing undone, one line (no debrief)
        session.close()
        fail(message, code)
    _finish(session, code, message, as_json, world_out)


@main.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--reason", required=True, help="Why the step is skipped (audited).")
def skip(session_ref: str, reason: str) -> None:
    """Skip the session's next step with a reason (audited); resume carries on after it."""
    from steps.engine import EngineError

    session = _open_session(_engine(), session_ref)
    current = session.current()
    if current is None:
        session.close()
        fail(f"session {session.id} has no step left to skip")
    try:
        session.skip(current.step.id, reason)
    except EngineError as exc:
        session.close()
        fail(str(exc))
    session.close()
    click.echo(f"session {session.id}: step {current.step.number} ({current.step.id}) skipped: {reason}")


@main.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--reason", required=True, help="Why the session is abandoned (audited).")
def abandon(session_ref: str, reason: str) -> None:
    """Give up a session without undoing it, releasing its lock (audited)."""
    from steps import compose
    from steps.journal import SessionNotFound

    engine = _engine()
    try:
        row = engine.journal.find_session(session_ref)
    except SessionNotFound as exc:
        fail(str(exc))
    if row.finished:
        fail(f"session {row.id} is already {row.status}")
    with _refusals():
        session = compose.reopen(engine, row)
    try:
        session.abandon(reason)
    finally:
        session.close()
    click.echo(f"session {row.id}: abandoned; lock released")


@main.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--step", "step_id", required=True, metavar="STEP", help="The step id that waits for a second operator.")
@click.option("--reason", required=True, help="Why you approve it (audited).")
@click.option("--expires", metavar="DURATION", help="How long the approval stands (default: the roles file's, else 1h; at most 24h).")
@click.option("--profile", metavar="PROFILE", help="Live: the AWS profile you approve as.")
@click.option("--region", metavar="REGION")
@_roles_option
def approve(session_ref, step_id, reason, expires, profile, region, roles_path) -> None:
    """Approve a step that waits for a second operator, as another identity than the
    session's operator (live: your own credentials; training: the world's second operator)."""
    from steps import approval as approvals
    from steps import compose
    from steps.engine import EngineError
    from steps.journal import SessionNotFound
    from steps.roles import iam_groups

    engine = _engine()
    try:
        row = engine.journal.find_session(session_ref)
        expires_in = approvals.expiry(expires, row.options.get("governance") or {}) if expires else None
    except (SessionNotFound, EngineError) as exc:
        fail(str(exc))
    with _refusals():
        who = compose.approver(row, profile=profile, region=region, roles=roles_path)
    try:
        with _refusals():
            grant = approvals.Grant(row, step_id, who.arn, who.account, reason, expires_in)
            try:
                done = approvals.grant(engine.journal, engine.audit, grant, who.governance, iam_groups(who.wiring), engine.os_user)
            except approvals.ApprovalRefused as exc:
                fail(str(exc), EXIT_STOPPED)
    finally:
        who.close()
    click.echo(
        f"session {row.id}: step {done.step_id} approved by {done.approver} until {done.expires_at}; the operator goes on with `handrail resume {row.id}`"
    )


# -- sessions and audit -------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="Include finished sessions.")
def sessions(as_json: bool, show_all: bool) -> None:
    """List sessions from the journal (unfinished ones by default)."""
    journal = _journal()
    rows = journal.sessions() if show_all else journal.unfinished()
    if as_json:
        click.echo(json.dumps([_session_json(journal, r) for r in rows], indent=2))
        return
    if not rows:
        click.echo("no unfinished sessions" if not show_all else "no sessions")
        return
    for r in rows:
        facts = journal.facts(r.id)
        click.echo(
            f"{r.id}  {r.status:<15} {r.mode:<8} {r.runbook_id}  user {r.target or '-'}  old {facts.get('old_key_id', '-')}  new {facts.get('new_key_id', '-')}  updated {r.updated_at}"
        )


def _session_json(journal, row) -> dict[str, Any]:
    facts = journal.facts(row.id)
    return {
        "session": row.id,
        "runbook": row.runbook_id,
        "mode": row.mode,
        "status": row.status,
        "user": row.target,
        "account": row.account,
        "actor": row.actor,
        "reason": row.reason,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "old_key_id": facts.get("old_key_id"),
        "new_key_id": facts.get("new_key_id"),
        "campaign": row.campaign_id,
    }


@main.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--json", "as_json", is_flag=True)
def show(session_ref: str, as_json: bool) -> None:
    """One session's timeline from the journal."""
    from steps.journal import SessionNotFound

    journal = _journal()
    try:
        row = journal.find_session(session_ref)
    except SessionNotFound as exc:
        fail(str(exc))
    events = journal.events(row.id)
    if as_json:
        data = _session_json(journal, row)
        data["facts"] = journal.facts(row.id)
        data["events"] = [e.__dict__ for e in events]
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"session {row.id}: {row.runbook_id}, {row.mode}, {row.status}; user {row.target}; by {row.actor}")
    for e in events:
        when = e.ts_real + (f" (sim {e.ts_sim})" if e.ts_sim else "")
        click.echo(f"  {when}  {e.step_id or '-':<20} {e.kind:<9} {e.status or '':<10} {e.summary}")


@main.command()
@click.argument("session_ref", metavar="SESSION|last")
@click.option("--json", "as_json", is_flag=True)
def evidence(session_ref: str, as_json: bool) -> None:
    """A session's CloudTrail evidence, as recorded: who used the old key before the
    rotation, any use after its deactivation, and the session's writes as CloudTrail
    logged them (read from the journal: no AWS call)."""
    from steps.cloudtrail import session_findings, to_text
    from steps.journal import SessionNotFound
    from steps.secrets import redact

    journal = _journal()
    try:
        row = journal.find_session(session_ref)
    except SessionNotFound as exc:
        fail(str(exc))
    findings = session_findings(journal.facts(row.id))
    if as_json:
        data = {"session": row.id, "user": row.target, "account": row.account, "status": row.status, **findings}
        click.echo(redact(json.dumps(data, indent=2)))
    else:
        click.echo(redact("\n".join(to_text(row.id, findings))))


@main.command()
@click.argument("runbook", default="aws-iam-access-key")
@click.option("--mode", type=click.Choice(["training", "live"]), default="training", show_default=True)
@click.option("--yes", "-y", is_flag=True, help="Live: create the throwaway user without asking.")
@click.option("--profile", metavar="PROFILE")
@click.option("--region", metavar="REGION")
def validate(runbook: str, mode: str, yes: bool, profile: str | None, region: str | None) -> None:
    """The SOP's validation method: create a throwaway IAM user, rotate its key with
    RUNBOOK, delete the user (even on failure); records the date and outcome."""
    from steps.driver import Printer
    from steps.loader import RunbookError, load
    from steps.validate import throwaway_user
    from steps.validate import validate as run_validation
    from steps.wiring import WiringError

    try:
        load(runbook)
    except RunbookError as exc:
        fail(str(exc))
    from steps.compose import make_wiring

    wiring = make_wiring(mode, profile=profile, region=region)
    try:
        account, arn = wiring.identity()
    except WiringError as exc:
        wiring.close()
        fail(str(exc))
    user = throwaway_user()
    click.echo(f"validate {runbook} ({mode}) in account {account} as {arn}:")
    click.echo(f"  will create IAM user {user} with one access key, rotate it with the runbook, then delete the user and its keys")
    if mode == "live" and not yes:
        asker = _asker(False)
        if not (getattr(asker, "available", False) and asker.confirm("create it?")):
            wiring.close()
            fail("not confirmed: nothing was created (pass --yes to skip the question)", EXIT_STOPPED)
    result = run_validation(_engine(), runbook, wiring, Printer(click.echo), user=user)
    wiring.close()
    click.echo(f"validation {'passed' if result.ok else 'FAILED'}: {result.detail}")
    sys.exit(EXIT_DONE if result.ok else EXIT_FAILED)


@main.command()
@click.argument("session_ref", metavar="SESSION", default="last")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--out", "out", metavar="FILE", help="Write it to FILE, e.g. debrief.md (refused if FILE exists, unless --force).")
@_force
def debrief(session_ref: str, fmt: str, out: str | None, force: bool) -> None:
    """A training session's debrief: timeline, gotchas and whether each was handled, end state."""
    from steps import debrief as debriefs
    from steps.journal import SessionNotFound
    from steps.secrets import redact

    _check_out(out, "--out", force)
    engine = _engine()
    try:
        d = debriefs.build(engine.journal, engine.audit, session_ref)
    except SessionNotFound as exc:
        fail(str(exc))
    text = {"text": debriefs.to_text, "markdown": debriefs.to_markdown}.get(fmt, lambda x: json.dumps(x.as_dict(), indent=2))(d)
    text = redact(text)
    if out is not None:
        if not _write_out(out, text if text.endswith("\n") else text + "\n", "--out"):
            sys.exit(EXIT_FAILED)
        click.echo(f"debrief written to {out}")
    else:
        click.echo(text)


@main.command()
@click.argument("ref", metavar="SESSION|CAMPAIGN|last", default="last")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--out", "out", metavar="FILE", help="Write it to FILE (refused if FILE exists, unless --force).")
@_force
def report(ref: str, fmt: str, out: str | None, force: bool) -> None:
    """The report of a session or a campaign, in any mode: who (operator, roles,
    approvers), what (runbook, version, sha256), when, each step's evidence, every
    override and skip, CloudTrail findings, the end state and the audit chain's check."""
    from steps import report as reports
    from steps.journal import SessionNotFound

    target = _check_out(out, "--out", force)
    try:
        data = reports.build(_journal(), _audit(must_exist=False), ref)
    except SessionNotFound as exc:
        fail(str(exc))
    text = reports.to_markdown(data) if fmt == "markdown" else reports.to_json(data) + "\n"
    if target is None:
        click.echo(text, nl=False)
        return
    if not _write_out(target, text, "--out"):
        sys.exit(EXIT_FAILED)
    click.echo(f"report of {data['kind']} {data.get('session') or data.get('campaign')} written to {target}")


@main.command()
@click.argument("scenario", required=False)
@click.option("--list", "list_only", is_flag=True, help="Print the scenarios and exit (no app).")
def train(scenario: str | None, list_only: bool) -> None:
    """Training: practise the SOP's gotchas on a simulated cloud, no credentials needed.

    Opens the app on the list of scenarios (easiest first), or on SCENARIO's briefing
    (a shipped scenario's id, or a scenario file). --list prints them without the app."""
    from steps.loader import RunbookError
    from steps.sandbox import scenario as scenarios

    try:
        found = scenarios.load_all()
    except RunbookError as exc:
        fail(str(exc))
    if list_only:
        width = max(len(s.id) for s in found)
        for s in sorted(found, key=lambda s: (s.campaign, s.difficulty, s.id)):
            click.echo(f"{s.id:<{width}}  {'*' * s.difficulty:<3}  {s.title}: {s.teaches}")
        click.echo("")
        click.echo("play one: handrail train SCENARIO   (headless: handrail run --scenario SCENARIO --yes --fast-forward)")
        for s in found:
            if s.campaign:
                click.echo(
                    f"{s.id} is a campaign: handrail due --scenario {s.id}, then handrail campaign start --due --scenario {s.id} --yes --fast-forward --confirm-irreversible"
                )
        return
    if scenario:
        try:
            scenarios.load(scenario)
        except RunbookError as exc:
            fail(str(exc))
    from tui.app import run_app

    run_app(mode="training", scenario=scenario, training=True)


@main.group()
def audit() -> None:
    """The append-only audit log."""


@audit.command("verify")
@click.argument("file", required=False)
def audit_verify(file: str | None) -> None:
    """Check the hash chain (a file given, else the journal's: the shared database's, or
    the local file); exit 1 naming the first record that breaks it."""
    from steps.audit import AuditLog

    if file:
        if not Path(file).exists():
            fail(f"{file}: no such file")
        log = AuditLog(Path(file))
    else:
        log = _audit()
    verdict = log.verify()
    unit = "lines" if isinstance(log, AuditLog) else "records"
    if verdict.ok:
        click.echo(f"{log.where}: ok, {verdict.lines} {unit}, chain intact" + (f" ({verdict.note})" if verdict.note else ""))
        return
    click.echo(f"{log.where}: {unit[:-1]} {verdict.bad_line}: {verdict.reason}", err=True)
    sys.exit(EXIT_FAILED)


@audit.command("show")
@click.option("--session", "session_ref", help="Only this session's records.")
@click.option("--file", "file", type=click.Path(dir_okay=False), help="Another audit file.")
def audit_show(session_ref: str | None, file: str | None) -> None:
    """Print audit records as JSON lines."""
    from steps.audit import AuditLog

    log = AuditLog(Path(file)) if file else _audit(must_exist=False)
    for record in log.records():
        if session_ref and not str(record.get("session") or "").startswith(session_ref) and record.get("session") != session_ref:
            continue
        click.echo(json.dumps(record))


@main.group()
def db() -> None:
    """The journal's database: its schema, and bringing an old journal in."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations the journal's database lacks (needs CREATE on the schema)."""
    from steps.compose import journal_location
    from steps.db import SCHEMA_VERSION, is_url
    from steps.journal import open_backend

    where = journal_location()
    if is_url(where):
        from steps.db_postgres import PostgresBackend

        backend = PostgresBackend(str(where), check_schema=False)
    else:
        backend = open_backend(where, upgrade=False)
    try:
        applied = backend.upgrade()
    finally:
        backend.close()
    if applied:
        click.echo(f"{backend.where}: schema upgraded to version {SCHEMA_VERSION} (applied {', '.join(map(str, applied))})")
    else:
        click.echo(f"{backend.where}: schema at version {SCHEMA_VERSION}, nothing to do")


@db.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--audit",
    "audit_file",
    type=click.Path(dir_okay=False),
    help="Its audit log (default: audit.jsonl beside FILE, when there is one).",
)
def db_import(file: str, audit_file: str | None) -> None:
    """Bring a SQLite journal (and its audit log) into the shared database, all or nothing."""
    from steps.compose import open_journal
    from steps.db_import import ImportRefused, import_journal
    from steps.engine import _os_user

    source = Path(file)
    audit = Path(audit_file) if audit_file else source.with_name("audit.jsonl")
    if audit_file and not audit.is_file():
        fail(f"--audit {audit_file}: no such file")
    journal = open_journal()
    try:
        done = import_journal(source, journal, audit if audit.is_file() else None, actor=_os_user())
    except ImportRefused as exc:
        fail(str(exc))
    finally:
        journal.close()
    counts = ", ".join(f"{n} {table}" for table, n in done.counts.items() if n)
    click.echo(
        f"{journal.where}: imported {counts or 'nothing'}; {done.audit_lines} audit line(s) re-chained after a journal.imported record"
    )


@main.group()
def inventory() -> None:
    """Where each IAM user's pair lives, and who consumes it."""


@inventory.command("check")
@click.argument("file", required=False)
def inventory_check(file: str | None) -> None:
    """Validate an inventory file: exit 0, or 2 with a one-line error."""
    from steps.compose import inventory_file, load_inventory
    from steps.loader import RunbookError

    path = inventory_file(file)
    if path is None:
        fail("no inventory: give a FILE, set HANDRAIL_INVENTORY, or create the config dir's inventory.yaml")
    try:
        inv = load_inventory(path)
    except RunbookError as exc:
        fail(str(exc))
    for name, entry in inv.users.items():
        where = entry.vault.type if entry.vault else "no vault"
        click.echo(f"{name}: {where}; {len(entry.consumers)} consumer(s): {', '.join(c.name for c in entry.consumers) or '-'}")
    click.echo(f"{path}: ok ({len(inv.users)} user(s))")


@main.group()
def sandbox() -> None:
    """The training sandbox as a long-running process, for live-mode rehearsals."""


@sandbox.command("serve")
@click.option("--scenario", metavar="NAME", help="The scenario to seed (default: happy-path).")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Where to write the inventory, env file and SSH files (default: a new temp dir).",
)
def sandbox_serve(scenario: str | None, directory: str | None) -> None:
    """Serve the whole sandbox until interrupted, and print the environment a
    `handrail run --mode live` needs to point at it."""
    from steps.loader import RunbookError
    from steps.sandbox.serve import serve

    try:
        serve(scenario, directory, click.echo)
    except RunbookError as exc:
        fail(str(exc))


# -- fleets and campaigns -----------------------------------------------------------------------


def _fleet_options(f):
    """Where the fleet is: a mode and its wiring (training: a scenario, default fleet)."""
    options = [
        click.option("--mode", type=click.Choice(MODES), default="training", show_default=True),
        click.option("--scenario", metavar="NAME", help="Training: the scenario to play (default: fleet)."),
        click.option("--profile", metavar="PROFILE", help="Live/dry-run: the AWS profile to act as."),
        click.option("--region", metavar="REGION", help="Live/dry-run: the AWS region for API calls."),
        click.option(
            "--inventory",
            "inventory_path",
            metavar="FILE",
            help="Live/dry-run: the inventory (default: $HANDRAIL_INVENTORY, then the config dir's inventory.yaml).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _cadence(text: str) -> float:
    from steps.model import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        fail(f"--cadence: {exc}")
    if seconds <= 0:
        fail("--cadence must be longer than 0")
    return seconds


_concurrency = click.option(
    "--concurrency", type=click.IntRange(1, 64), default=4, show_default=True, help="How many sessions run at once."
)


def _echo_err(as_json: bool):
    return (lambda line: click.echo(line, err=True)) if as_json else click.echo


@main.command()
@click.option("--cadence", default="30d", show_default=True, help="Due when the oldest Active key is at least this old (the SOP: 30 days).")
@click.option("--all-users", is_flag=True, help="Every IAM user that has access keys, not only the inventory's.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@_concurrency
@_fleet_options
def due(cadence, all_users, as_json, concurrency, mode, scenario, profile, region, inventory_path) -> None:
    """Which users are due for rotation: each Active key's age and last use, overdue past
    90 days (AWS Config access-keys-rotated, CIS), and Inactive keys left over.

    Read-only. Lists the inventory's users; --all-users lists every IAM user with keys."""
    from steps import compose
    from steps import due as dues

    seconds = _cadence(cadence)
    with _refusals():
        fleet = compose.open_fleet(mode, scenario=scenario, profile=profile, region=region, inventory=inventory_path)
    try:
        with _refusals():
            rows = dues.report(fleet.wiring(), every=all_users, cadence=seconds, concurrency=concurrency)
    finally:
        fleet.close()
    days = seconds / 86400
    if as_json:
        click.echo(json.dumps([r.as_dict(days) for r in rows], indent=2))
        return
    if not rows:
        click.echo("no IAM user to list" + ("" if all_users else " (the inventory lists none: --all-users lists every user with keys)"))
        return
    width = max(len(r.user) for r in rows)
    click.echo(f"{'user':<{width}}  {'age':>5}  {'last used':<16}  {'due':<7}  notes")
    for r in rows:
        mark = "OVERDUE" if r.overdue and r.due else "due" if r.due else "-"
        age = f"{r.age_days}d" if r.age_days is not None else "-"
        notes = []
        if r.inactive_left:
            notes.append(f"Inactive {', '.join(r.inactive_left)} left over")
        if not r.in_inventory:
            notes.append("not in the inventory")
        if r.operator:
            notes.append("the operator's own user")
        if r.error:
            notes.append(r.error)
        click.echo(f"{r.user:<{width}}  {age:>5}  {(r.last_used_ago or 'never'):<16}  {mark:<7}  {'; '.join(notes)}")
    due_n = sum(r.due for r in rows)
    overdue = sum(r.due and r.overdue for r in rows)
    click.echo(f"{due_n} of {len(rows)} due at {cadence} ({overdue} past the 90-day ceiling); rotate them: handrail campaign start --due")


@main.group()
def campaign() -> None:
    """Many rotations at once: each its own session (lock, gates, rollback); one failing never stops the others."""


class _Bar:
    """Progress on stderr: a bar with counts, redrawn in place on a terminal (fitted to its
    width); else a line each time another tenth of the targets settles (or ends). Called
    from the campaign's worker threads: one redraw at a time."""

    WIDTH = 30

    def __init__(self) -> None:
        import threading

        self.tty = sys.stderr.isatty()
        self._shown = (-1, -1)
        self._lock = threading.Lock()
        self._drawn = False

    def __call__(self, counts, total: int) -> None:
        settled = total - counts.get("running", 0) - counts.get("planned", 0)
        ended = sum(n for state, n in counts.items() if TargetState(state).ended)
        words = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if n)
        with self._lock:
            if self.tty:
                click.echo("\r" + self.line(settled, ended, total, words) + "\033[K", err=True, nl=False)
                self._drawn = True
                return
            tenths = (settled * 10 // max(1, total), ended * 10 // max(1, total))
            if tenths[0] > self._shown[0] or tenths[1] > self._shown[1]:
                self._shown = (max(tenths[0], self._shown[0]), max(tenths[1], self._shown[1]))
                click.echo(f"[{settled}/{total}] {words}", err=True)

    @classmethod
    def line(cls, settled: int, ended: int, total: int, words: str, columns: int | None = None) -> str:
        """`[####==....] 7/20 settled  3 done, 4 waiting, 13 running`: # ended, = stopped
        on the way (waiting, failed...), . not there yet; cut to the terminal's width."""
        import shutil

        whole = max(1, total)
        done = int(cls.WIDTH * ended / whole)
        stopped = int(cls.WIDTH * settled / whole) - done
        bar = "#" * done + "=" * max(0, stopped)
        text = f"[{bar}{'.' * (cls.WIDTH - len(bar))}] {settled}/{total}  {words}"
        width = (columns or shutil.get_terminal_size((80, 24)).columns) - 1
        return text if len(text) <= width else text[: max(0, width - 1)] + "…"

    def end(self) -> None:
        with self._lock:
            if self.tty and self._drawn:
                click.echo("", err=True)
                self._drawn = False


def _campaign_result(summary, as_json: bool, note: str | None = None, extra: dict | None = None, code: int | None = None) -> None:
    """Print where the campaign stands and exit with its code (or `code`)."""
    from steps.secrets import redact

    code = summary.code if code is None else code
    if as_json:
        data = summary.as_dict()
        data["exit_code"] = code
        data["message"] = summary.message()
        if note:
            data["note"] = note
        data.update(extra or {})
        click.echo(redact(json.dumps(data, indent=2)))
    else:
        width = max([len(r.user) for r in summary.results] + [4])
        for r in summary.results:
            keys = f"{r.facts.get('old_key_id') or '-'} -> {r.facts.get('new_key_id') or '-'}"
            click.echo(redact(f"  {r.user:<{width}}  {r.state:<15} {r.session_id or '-':<24} {keys}"))
            if not r.state.ended and r.detail:
                click.echo(redact(f"  {'':<{width}}  {r.detail}"))
        click.echo(redact(summary.message()))
        if note:
            click.echo(redact(note))
    sys.exit(code)


def _world_out(fleet, world_out: str | None) -> bool:
    """Write the fleet's world (training); False when the file could not be written."""
    if world_out is None:
        return True
    from steps.secrets import redact

    data = fleet.export()
    if data is None:
        click.echo("handrail: --world-out is for training mode only; nothing written", err=True)
        return True
    return _write_out(world_out, redact(json.dumps(data, indent=2)) + "\n", "--world-out")


def _drive_campaign(engine, fleet, campaign_id: str, opts, concurrency: int, as_json: bool, world_out: str | None) -> None:
    from steps import campaign as campaigns
    from steps import compose

    bar = _Bar()
    opener = compose.CampaignOpener(engine, fleet, campaign_id)
    try:
        with _refusals():
            runner = campaigns.Runner(engine.journal, campaign_id, opener, concurrency=concurrency, progress=bar)
        try:
            summary = runner.run(opts)
        except KeyboardInterrupt:
            bar.end()
            fail(f"interrupted: the journal has where each session stands; `handrail campaign resume {campaign_id}`", EXIT_STOPPED)
        bar.end()
        written = _world_out(fleet, world_out)
    finally:
        fleet.close()
    note = None
    if summary.code == EXIT_STOPPED and any(r.state == "waiting" for r in summary.results):
        note = f"waiting at observation gates: `handrail campaign resume {campaign_id}` once they open"
    _campaign_result(summary, as_json, note, code=EXIT_FAILED if not written and summary.code == EXIT_DONE else None)


@campaign.command("start")
@click.option("--due", "due_users", is_flag=True, help="Rotate every user due at the cadence (see `handrail due`).")
@click.option("--user", "users", metavar="NAME", multiple=True, help="Rotate this IAM user (repeatable), instead of --due.")
@click.option("--cadence", default="30d", show_default=True, help="--due: rotate keys at least this old.")
@click.option("--all-users", is_flag=True, help="--due: every IAM user with keys, not only the inventory's.")
@click.option(
    "--reason", type=click.Choice(["scheduled", "operator-initiated", "incident", "offboarding"]), help="--user: why they rotate."
)
@click.option("--name", metavar="NAME", help="The campaign's name (default: what it rotates, and when).")
@click.option(
    "--runbook", default="aws-iam-access-key", show_default=True, metavar="RUNBOOK", help="The runbook each target runs (an id or a path)."
)
@_concurrency
@_fleet_options
@_roles_option
@_run_options
def campaign_start(
    due_users,
    users,
    cadence,
    all_users,
    reason,
    name,
    runbook,
    concurrency,
    mode,
    scenario,
    profile,
    region,
    inventory_path,
    roles_path,
    yes,
    fast_forward,
    override_gate,
    override_block,
    retire_key,
    confirm_keys,
    confirm_irreversible,
    as_json,
    world_out,
) -> None:
    """Plan a campaign, show it, and on --yes run every target's session, a few at a time.

    Each target stops at its observation gate (24 h) unless --fast-forward (training) or
    --override-gate REASON; `handrail campaign resume C` finishes them later."""
    from steps import campaign as campaigns
    from steps import due as dues

    if due_users == bool(users):
        fail("name what the campaign rotates: --due (every due user) or --user NAME (repeatable)")
    if due_users and reason:
        fail("--reason is for --user: a --due campaign's reason is scheduled")
    if name is not None and (not name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name) > 200):
        fail("--name: give a name of 1 to 200 characters, without control characters")
    seconds = _cadence(cadence)

    def plan(fleet, reader):
        if not due_users:
            targets = campaigns.user_targets(users, runbook=runbook, reason=reason or "operator-initiated")
            campaigns.check_plan(targets)
            for user in users:
                reader.target_identity(user)  # a user that is not there is bad input, before anything is recorded
            return targets, []
        rows = dues.report(reader, every=all_users, cadence=seconds, concurrency=concurrency)
        left_out = [r for r in rows if not r.rotatable]
        notes = [f"left out: {sum(1 for r in left_out if not r.due)} user(s) not due at {cadence}"] if left_out else []
        notes += [f"left out: {r.user}: {r.why(seconds / 86400)}" for r in left_out if r.due]
        return campaigns.due_targets(rows, seconds / 86400, runbook=runbook), notes

    stamp = _stamp()
    _start_campaign(
        plan,
        kind="due" if due_users else "users",
        name=name or (f"due at {cadence}, {stamp}" if due_users else f"{len(users)} user(s), {stamp}"),
        options={"cadence": cadence, "all_users": all_users},
        fleet_args=(mode, scenario, profile, region, inventory_path, roles_path),
        run_args=(yes, fast_forward, override_gate, override_block, retire_key, confirm_keys, confirm_irreversible, as_json, world_out),
        concurrency=concurrency,
    )


def _stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M")


def _start_campaign(plan, *, kind: str, name: str, options: dict, fleet_args: tuple, run_args: tuple, concurrency: int) -> None:
    """Open the fleet, make the plan (plan(fleet, reader) -> (targets, notes)), show it,
    take the yes, record the campaign and run it. Nothing is written before the yes."""
    from steps import campaign as campaigns
    from steps import compose
    from steps.loader import load

    mode, scenario, profile, region, inventory_path, roles_path = fleet_args
    yes, fast_forward, override_gate, override_block, retire_key, confirm_keys, confirm_irreversible, as_json, world_out = run_args
    if fast_forward and mode != "training":
        fail("--fast-forward is for training only: live time cannot be skipped (use --override-gate REASON)")
    if world_out is not None and mode != "training":
        fail("--world-out is for training only")
    opts = _drive_options(yes, fast_forward, override_gate, override_block, retire_key, confirm_keys, confirm_irreversible, world_out)
    engine = _engine()
    echo = _echo_err(as_json)
    with _refusals():
        fleet = compose.open_fleet(mode, scenario=scenario, profile=profile, region=region, inventory=inventory_path, roles=roles_path)
    try:
        with _refusals():
            reader = fleet.wiring()
            account, operator_arn = reader.identity()
            targets, notes = plan(fleet, reader)
            campaigns.check_plan(targets)
            for runbook in sorted({t.runbook for t in targets}):
                load(runbook)  # a runbook that is not there is bad input, before anything starts
        echo(f"campaign plan: {len(targets)} target(s) in account {account}, {mode}, as {operator_arn}, {concurrency} at a time:")
        for n, t in enumerate(targets, 1):
            echo(f"  {n:>3}. {t.user} ({t.runbook}): {t.why}")
        for note in notes:
            echo(f"  {note}")
        if not targets:
            if as_json:
                click.echo(json.dumps({"campaign": None, "targets": [], "exit_code": EXIT_DONE, "message": "nothing to do"}))
            else:
                click.echo("nothing to do: no campaign started")
            sys.exit(EXIT_DONE)
        if not yes:
            asker = _asker(as_json)
            if not (getattr(asker, "available", False) and asker.confirm(f"start this campaign of {len(targets)} session(s)?")):
                fail("campaign not started: the plan needs a yes (pass --yes, or answer at a terminal); nothing changed", EXIT_STOPPED)
        with _refusals():
            campaign_id = campaigns.create(
                engine,
                targets,
                name=name,
                kind=kind,
                mode=mode,
                account=account,
                operator_arn=operator_arn,
                options={**fleet.options(), **options},
                world=fleet.snapshot(),
            )
        echo(f"campaign {campaign_id}: started")
    except BaseException:
        fleet.close()
        raise
    _drive_campaign(engine, fleet, campaign_id, opts, concurrency, as_json, world_out)


@main.command()
@click.argument("person")
@_concurrency
@_fleet_options
@_roles_option
@_run_options
def offboard(
    person,
    concurrency,
    mode,
    scenario,
    profile,
    region,
    inventory_path,
    roles_path,
    yes,
    fast_forward,
    override_gate,
    override_block,
    retire_key,
    confirm_keys,
    confirm_irreversible,
    as_json,
    world_out,
) -> None:
    """Someone leaves: a campaign that offboards PERSON's own IAM users (runbook
    aws-iam-user-offboarding) and rotates every pair they could read (their blast radius,
    from the inventory's people)."""
    from steps import campaign as campaigns
    from steps.inventory import UnknownPerson

    def plan(fleet, reader):
        if fleet.inventory is None:
            fail("offboard needs an inventory that lists people (--inventory, $HANDRAIL_INVENTORY or the config dir's)")
        try:
            return campaigns.offboard_targets(fleet.inventory, person), []
        except UnknownPerson as exc:
            fail(str(exc))

    _start_campaign(
        plan,
        kind="offboard",
        name=f"offboard {person}, {_stamp()}",
        options={"person": person},
        fleet_args=(mode, scenario, profile, region, inventory_path, roles_path),
        run_args=(yes, fast_forward, override_gate, override_block, retire_key, confirm_keys, confirm_irreversible, as_json, world_out),
        concurrency=concurrency,
    )


def _find_campaign(engine, ref: str):
    return _find_campaign_in(engine.journal, ref)


@campaign.command("list")
@click.option("--json", "as_json", is_flag=True)
def campaign_list(as_json: bool) -> None:
    """The campaigns in the journal, newest first, with where their targets stand."""
    from steps import campaign as campaigns

    journal = _journal()
    summaries = [campaigns.summary(journal, row.id) for row in journal.campaigns()]
    if as_json:
        click.echo(json.dumps([{k: v for k, v in s.as_dict().items() if k != "targets"} for s in summaries], indent=2))
        return
    if not summaries:
        click.echo("no campaigns")
        return
    for s in summaries:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(s.counts.items()))
        click.echo(f"{s.campaign_id}  {'ended' if s.ended else 'open':<5}  {s.mode:<8}  {s.name}  ({len(s.results)} target(s): {counts})")


@campaign.command("show")
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--json", "as_json", is_flag=True)
def campaign_show(campaign_ref: str, as_json: bool) -> None:
    """One campaign: every target, why it is there, its session and where it stands.
    Exits like the campaign: 0 all done, 1 any failed or blocked, 3 any waiting."""
    from steps import campaign as campaigns

    engine = _engine()
    row = _find_campaign(engine, campaign_ref)
    summary = campaigns.summary(engine.journal, row.id)
    if as_json:
        targets = engine.journal.targets(row.id)
        _campaign_result(summary, True, extra={"why": {t.target: t.why for t in targets}})
    click.echo(f"campaign {row.id}: {row.name}; {row.mode}, account {row.account}, by {row.actor}, started {row.created_at}")
    _campaign_result(summary, False)


@campaign.command("debrief")
@click.argument("campaign_ref", metavar="CAMPAIGN", default="last")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--out", "out", metavar="FILE", help="Write it to FILE, e.g. debrief.md (refused if FILE exists, unless --force).")
@_force
def campaign_debrief(campaign_ref: str, fmt: str, out: str | None, force: bool) -> None:
    """A campaign's debrief: each target's verdicts, rollback and end state, and where the
    campaign ended (what the board shows at its end)."""
    from steps import debrief as debriefs
    from steps.journal import CampaignNotFound
    from steps.secrets import redact

    _check_out(out, "--out", force)
    try:
        d = debriefs.build_campaign(_journal(), _audit(must_exist=False), campaign_ref)
    except CampaignNotFound as exc:
        fail(str(exc))
    render = {"text": debriefs.campaign_to_text, "markdown": debriefs.campaign_to_markdown}
    text = redact(render[fmt](d) if fmt in render else json.dumps(d.as_dict(), indent=2))
    if out is not None:
        if not _write_out(out, text if text.endswith("\n") else text + "\n", "--out"):
            sys.exit(EXIT_FAILED)
        click.echo(f"debrief written to {out}")
    else:
        click.echo(text)


@campaign.command("resume")
@click.argument("campaign_ref", metavar="CAMPAIGN")
@_concurrency
@_run_options
def campaign_resume(
    campaign_ref,
    concurrency,
    yes,
    fast_forward,
    override_gate,
    override_block,
    retire_key,
    confirm_keys,
    confirm_irreversible,
    as_json,
    world_out,
) -> None:
    """Go on with every target that has not ended (start the ones never started)."""
    from steps import compose

    opts = _drive_options(yes, fast_forward, override_gate, override_block, retire_key, confirm_keys, confirm_irreversible, world_out)
    engine = _engine()
    row = _find_campaign(engine, campaign_ref)
    if fast_forward and row.mode != "training":
        fail("--fast-forward is for training only")
    if world_out is not None and row.mode != "training":
        fail("--world-out is for training only")
    with _refusals():
        fleet = compose.restore_fleet(row)
    _echo_err(as_json)(f"campaign {row.id}: resuming")
    _drive_campaign(engine, fleet, row.id, opts, concurrency, as_json, world_out)


@campaign.command("rollback")
@click.argument("campaign_ref", metavar="CAMPAIGN")
@click.option("--yes", "-y", is_flag=True, help="Run every plan without asking.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--world-out", type=click.Path(dir_okay=False, writable=True))
@_concurrency
def campaign_rollback(campaign_ref, yes, as_json, world_out, concurrency) -> None:
    """Show every target's rollback plan, then undo them (each session on its own)."""
    from steps import campaign as campaigns
    from steps import compose

    _check_out(world_out, "--world-out")
    engine = _engine()
    row = _find_campaign(engine, campaign_ref)
    echo = _echo_err(as_json)
    with _refusals():
        fleet = compose.restore_fleet(row)
    try:
        opener = compose.CampaignOpener(engine, fleet, row.id)
        runner = campaigns.Runner(engine.journal, row.id, opener, concurrency=concurrency, progress=_Bar())
        plans = runner.rollback_plans()
        echo(f"rollback of campaign {row.id} ({row.name}):")
        for t, session, plan, note in plans:
            if plan is None:
                echo(f"  {t.target}: {note}")
            elif not plan.possible:
                echo(f"  {t.target}: cannot roll back: {plan.reason}")
            else:
                echo(f"  {t.target} (session {session.id}, {session.status}): {len(plan.items)} undo(s)")
                for item in plan.items:
                    echo(f"      undo step {item.step.number} ({item.step.title}): {item.summary}")
        if not yes and not (getattr(_asker(as_json), "available", False) and _asker(as_json).confirm("run these rollbacks?")):
            runner.close()
            fail("rollback not confirmed: pass --yes, or confirm at a terminal; nothing changed", EXIT_STOPPED)
        summary, impossible = runner.rollback(plans)
        written = _world_out(fleet, world_out)
    finally:
        fleet.close()
    # A target with no way back (its old key deleted) leaves the rollback undone: exit 1.
    note = f"no way back for {len(impossible)} target(s): " + "; ".join(impossible) if impossible else None
    _campaign_result(summary, as_json, note, code=EXIT_FAILED if impossible or not written else None)


# -- the app ------------------------------------------------------------------------------------


@main.command()
@click.argument("campaign_ref", metavar="CAMPAIGN", default="last")
def board(campaign_ref: str) -> None:
    """Open the app on a campaign's board (default: the newest campaign): one row per
    target; enter opens a target's checklist, escape comes back, g drives them on."""
    journal = _journal()
    try:
        row = _find_campaign_in(journal, campaign_ref)
    finally:
        journal.close()
    from tui.app import run_app

    run_app(campaign=row.id)


def _find_campaign_in(journal, ref: str):
    from steps.journal import CampaignNotFound

    try:
        return journal.find_campaign(ref)
    except CampaignNotFound as exc:
        fail(str(exc))


@main.command()
@click.argument("runbook", required=False)
@click.option("--user", metavar="NAME")
@click.option("--mode", type=click.Choice(MODES), default=None)
@click.option("--scenario", metavar="NAME")
@click.option(
    "--inventory",
    "inventory_path",
    metavar="FILE",
    help="Live/dry-run: the inventory (default: $HANDRAIL_INVENTORY, then the config dir's).",
)
@click.option("--profile", metavar="PROFILE", help="Live/dry-run: the AWS profile to act as.")
@click.option("--region", metavar="REGION", help="Live/dry-run: the AWS region for API calls.")
def tui(
    runbook: str | None,
    user: str | None,
    mode: str | None,
    scenario: str | None,
    inventory_path: str | None = None,
    profile: str | None = None,
    region: str | None = None,
) -> None:
    """Open the app (the default when no command is given; training needs no credentials)."""
    from steps.compose import find_inventory

    with _refusals():
        path, _ = find_inventory(inventory_path)
    from tui.app import run_app

    run_app(
        runbook=runbook,
        user=user,
        mode=mode,
        scenario=scenario,
        inventory=str(path) if path else None,
        profile=profile,
        region=region,
    )


if __name__ == "__main__":
    main()
