"""Opening sessions for the app: what the start screen offers, and starting or
resuming a session the way `handrail run` and `handrail resume` do.

Plain Python, no textual: the app calls these from thread workers, because the first
training world imports moto and boto3 (about a second).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from steps.compose import Request
from steps.status import Mode
from tui.frozen import Frozen

if TYPE_CHECKING:
    from steps.engine import Engine, Session
    from steps.journal import SessionRow


@dataclass(frozen=True)
class RunbookChoice:
    ref: str  # what Engine.start takes: the shipped runbook's id
    title: str
    reasons: tuple[str, ...]
    default_reason: str | None


@dataclass(frozen=True)
class ScenarioChoice:
    id: str
    title: str
    teaches: str
    briefing: str
    goal: str
    difficulty: int
    target_user: str
    reason: str | None
    runbook: str = "aws-iam-access-key"
    gotchas: tuple[str, ...] = ()


def scenario_choice(ref: str, sc: Any, title: str | None = None) -> ScenarioChoice:
    """What the app shows of a scenario; `ref` is what the launcher loads it by."""
    return ScenarioChoice(
        ref,
        title or sc.title,
        sc.teaches,
        sc.briefing.strip(),
        sc.goal,
        sc.difficulty,
        sc.target_user,
        sc.inputs.get("reason"),
        sc.runbook,
        tuple(sc.gotchas),
    )


@dataclass
class Catalog:
    runbooks: list[RunbookChoice] = field(default_factory=list)
    scenarios: list[ScenarioChoice] = field(default_factory=list)
    unfinished: list[SessionRow] = field(default_factory=list)
    inventory: str | None = None  # the inventory file live and dry-run sessions use
    inventory_users: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    validated: dict[str, str] = field(default_factory=dict)  # runbook ref -> "last validated" line
    where: dict[str, str] = field(default_factory=dict)  # unfinished session id -> its next step

    def request(self, scenario: ScenarioChoice) -> Request:
        """A training session of `scenario`, as the start screen would ask for it: the
        scenario's runbook, target user and reason (else the runbook's default reason)."""
        book = self.runbook(scenario.runbook)
        reason = scenario.reason or (book.default_reason if book else None)
        return Request(book.ref if book else scenario.runbook, "training", scenario.target_user, scenario.id, reason)

    def unfinished_training(self) -> list[SessionRow]:
        return [row for row in self.unfinished if row.mode == "training"]

    def runbook(self, ref: str | None) -> RunbookChoice | None:
        return next((r for r in self.runbooks if r.ref == ref), self.runbooks[0] if self.runbooks else None)

    def scenario(self, scenario_id: str | None) -> ScenarioChoice | None:
        return next((s for s in self.scenarios if s.id == scenario_id), None)


class LaunchError(Exception):
    """Why a session could not be opened, as one line for the operator."""


@contextmanager
def _one_line() -> Iterator[None]:
    """Every refusal from composition or the engine reaches the app as one LaunchError."""
    try:
        yield
    except LaunchError:
        raise
    except Exception as exc:  # RunbookError, ComposeError, EngineError, LockHeld, a broken world...
        from steps.compose import ComposeError
        from steps.engine import EngineError
        from steps.journal import LockHeld, SessionBusy, SessionNotFound
        from steps.loader import RunbookError
        from steps.roles import RoleRefused
        from steps.wiring import WiringError

        known = (ComposeError, EngineError, LockHeld, SessionBusy, SessionNotFound, RunbookError, WiringError, RoleRefused)
        text = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
        raise LaunchError(text.strip().splitlines()[0] if text.strip() else type(exc).__name__) from None


def load_catalog(
    journal_factory: Callable[[], Any] | None = None, scenario_file: str | None = None, inventory: str | None = None
) -> Catalog:
    """What the start screen offers. `scenario_file`: a scenario given by path (a
    trainer's own), offered beside the shipped ones under its path. `inventory`: the
    inventory file (else $HANDRAIL_INVENTORY, else the config dir's), whose users the
    live and dry-run modes offer."""
    from steps.compose import ComposeError
    from steps.loader import RunbookError, load, shipped
    from steps.sandbox import scenario as scenarios

    catalog = Catalog()
    books = {}
    for path in shipped():
        try:
            book = load(path)
        except RunbookError as exc:
            catalog.problems.append(str(exc))
            continue
        books[path.stem] = book
        reason = book.inputs.get("reason")
        catalog.runbooks.append(
            RunbookChoice(path.stem, book.title, tuple(reason.choices or ()) if reason else (), reason.default if reason else None)
        )
    for path in scenarios.shipped():
        try:
            sc = scenarios.load(str(path))
        except RunbookError as exc:
            catalog.problems.append(str(exc))
            continue
        if sc.campaign:
            continue  # played from the command line (handrail campaign start); no board yet
        catalog.scenarios.append(scenario_choice(sc.id, sc))
    catalog.scenarios.sort(key=lambda s: (s.difficulty, s.id != scenarios.DEFAULT, s.id))
    if scenario_file and catalog.scenario(scenario_file) is None:
        try:
            sc = scenarios.load(scenario_file)
        except RunbookError as exc:
            catalog.problems.append(str(exc))
        else:
            catalog.scenarios.insert(0, scenario_choice(scenario_file, sc, f"{sc.title} ({scenario_file})"))
    try:
        path, found = _inventory(inventory)
    except (RunbookError, ComposeError) as exc:
        catalog.problems.append(str(exc))
    else:
        if found is not None:
            catalog.inventory, catalog.inventory_users = str(path), sorted(found.users)
    try:
        journal = (journal_factory or _journal)()
        catalog.unfinished = journal.unfinished()
        catalog.where = {row.id: session_where(journal, row, books) for row in catalog.unfinished}
        catalog.validated = {ref: describe_last(journal, book) for ref, book in books.items()}
    except Exception as exc:  # an unreadable journal must not keep the app from opening
        catalog.problems.append(f"journal: {exc}")
    return catalog


def session_where(journal: Any, row: SessionRow, books: dict[str, Any]) -> str:
    """Where an unfinished session stands, from its journal: the first step not behind it."""
    from steps.status import StepStatus

    if row.status.rolling:
        return "rolling back"
    book = next((b for b in books.values() if b.id == row.runbook_id), None)
    if book is None:
        return ""
    status: dict[str, str] = {}
    for event in journal.events(row.id):
        if event.step_id and event.kind == "started":
            status[event.step_id] = StepStatus.RUNNING
        elif event.step_id and event.kind in ("step", "undone", "reopened") and event.status:
            status[event.step_id] = event.status
    for step in book.steps:
        if not StepStatus(status.get(step.id, StepStatus.PENDING)).passed:
            return f"step {step.number} · {step.title}"
    return ""


def session_label(row: SessionRow, where: str = ""):
    """A resume list's entry: enough to tell sessions apart (when, mode, scenario, where, who)."""
    from textual.content import Content

    started = row.created_at.replace("T", " ")[:16] + " UTC" if row.created_at else "?"
    what = (row.options.get("scenario") or "happy-path") if row.mode == Mode.TRAINING else f"user {row.target or '-'}"
    return Content.from_markup(
        "[b]$id[/b] $status\n  started $started · $mode\n  $what · at $where\n  operator $actor",
        id=row.id,
        status=str(row.status),
        started=started,
        mode=str(row.mode),
        what=what,
        where=where or "?",
        actor=row.actor or "-",
    )


def describe_last(journal: Any, book: Any) -> str:
    from steps.validate import describe_last as describe

    return describe(journal, book)


def _inventory(given: str | None):
    """(path, Inventory) as `handrail run` finds them, or (None, None)."""
    from steps.compose import find_inventory

    return find_inventory(given)


def _journal():
    from steps.compose import open_journal

    return open_journal()


class Launcher:
    """Builds the engine once and opens sessions on it."""

    def __init__(
        self, frozen: Frozen | None = None, inventory: str | None = None, profile: str | None = None, region: str | None = None
    ) -> None:
        self.frozen = frozen
        self.inventory = inventory
        self.profile, self.region = profile, region  # what `handrail tui --profile/--region` gave live and dry-run
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()  # the catalog and a launch may both ask first

    def engine(self) -> Engine:
        with self._engine_lock:
            return self._make_engine()

    def _make_engine(self) -> Engine:
        if self._engine is None:
            from steps.compose import open_audit
            from steps.engine import Engine
            from steps.paths import journal_path

            journal = self.frozen.journal(journal_path()) if self.frozen else _journal()
            self._engine = Engine(journal, open_audit(journal), os_user=self.frozen.os_user if self.frozen else None)
        return self._engine

    def journal(self):
        return self.engine().journal

    def start(self, request: Request) -> Session:
        """Start a session as `handrail run` does (training builds its simulated world)."""
        from steps import compose

        if request.mode != Mode.TRAINING:
            request = replace(
                request,
                inventory=request.inventory or self.inventory,
                profile=request.profile or self.profile,
                region=request.region or self.region,
            )
        request = replace(request, options={**request.options, "opened_by": "tui"})
        world_factory = self.frozen.world if self.frozen else None
        session_id = self.frozen.session_id if self.frozen else None
        with _one_line():
            return compose.start(self.engine(), request, headless=False, session_id=session_id, world_factory=world_factory)

    def resume(self, session_ref: str) -> Session:
        """Resume an unfinished session from the journal (training: its saved world)."""
        from steps import compose

        with _one_line():
            return compose.resume(self.engine(), session_ref, headless=False)

    def close(self) -> None:
        if self._engine is not None:
            try:
                self._engine.journal.close()
            except Exception:
                pass
