"""handrail's app: the runbook as a live checklist, run one confirmed step at a time.

`run_app()` is what `handrail` and `handrail tui` call. The first frame comes fast
(benchmarks/startup.py): it is the start screen's chrome, its form mounted right after;
nothing heavier than textual is imported before it (the other screens when first shown);
runbooks, scenarios and the journal load in a worker, and boto3 and moto only when a
session opens (in a worker).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from tui.launcher import Catalog, Launcher, LaunchError, Request, load_catalog
from tui.messages import CatalogLoaded, LaunchFailed, SessionOpened
from tui.screens.start import StartScreen
from tui.startup import process_age

if TYPE_CHECKING:  # the other screens are imported when first shown, not before the first frame
    from steps.engine import Session
    from tui.frozen import Frozen
    from tui.screens.help import Section

THEMES = ("textual-dark", "textual-light")


def handrail_commands():
    """The palette's provider, imported when the palette first opens (not at startup)."""
    from tui.commands import HandrailCommands

    return HandrailCommands


NAVIGATION = [
    ("↑ ↓ / mouse", "move in a list; the step you highlight shows on the right"),
    ("enter / click", "choose; the footer's keys can be clicked too"),
    ("tab", "next field or button"),
    ("ctrl+p", "command palette: every action by name"),
]


def freeze_heap(collect: bool = False) -> None:
    """What is loaded by now (textual, the runbook models; with a session boto3, moto and
    its world) stays: out of the cyclic collector's sight, a full collection stops taking
    100-150 ms, during which the UI stands still. `collect` first, so no garbage is kept
    for good; that takes as long, so only where nobody waits on a key."""
    if collect:
        gc.collect()
    gc.freeze()


class HandrailApp(App):
    """The app. `frozen` holds time and random ids still (tests, snapshots).

    `training=True` (`handrail train`) opens on the list of training scenarios, and on
    `scenario`'s briefing when one is given; the start screen is underneath (escape).
    """

    CSS_PATH = Path(__file__).with_name("handrail.tcss")
    TITLE = "handrail"
    COMMANDS = App.COMMANDS | {handrail_commands}
    BINDINGS = [
        Binding("question_mark", "help", "Help", tooltip="Every key, screen by screen"),
        Binding("ctrl+t", "toggle_theme", "Dark/light", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    # What the start and training screens offer (runbooks, scenarios, unfinished
    # sessions, last validated): loaded in a worker, watched by the screens.
    catalog: reactive[Catalog | None] = reactive(None, always_update=True, init=False)

    def __init__(
        self,
        runbook: str | None = None,
        user: str | None = None,
        mode: str | None = None,
        scenario: str | None = None,
        inventory: str | None = None,
        *,
        profile: str | None = None,
        region: str | None = None,
        training: bool = False,
        frozen: Frozen | None = None,
        reveal_seconds: float = 10.0,
        campaign: str | None = None,
    ) -> None:
        super().__init__()
        self.training = training
        self.campaign = campaign  # `handrail board C`: open on that campaign's board
        self.scenario = scenario
        self.inventory = inventory
        self.frozen = frozen
        self.reveal_seconds = reveal_seconds
        self.cursor_blink = frozen is None
        self.launcher = Launcher(frozen, inventory, profile, region)
        self.session: Session | None = None
        self.startup_seconds: float | None = None
        self._heap_frozen = False
        self.exit_note = ""
        self.abandoned_work = False
        self.start_screen = StartScreen(runbook, user, mode, scenario, inventory)
        self.theme = THEMES[0]

    def monotonic(self) -> float:
        return 0.0 if self.frozen is not None else time.monotonic()

    def get_default_screen(self) -> StartScreen:
        return self.start_screen

    def on_mount(self) -> None:
        if self.training:
            from tui.screens.training import TrainingScreen

            self.push_screen(TrainingScreen(self.scenario))
        if self.campaign:
            from tui.screens.board import BoardScreen

            self.push_screen(BoardScreen(ref=self.campaign))
        # After the first frame: the catalog's imports (pydantic, yaml) must not delay it.
        self.call_after_refresh(self.refresh_catalog)
        self._loop_for_gc = asyncio.get_running_loop()
        gc.callbacks.append(self._after_collection)

    def _after_collection(self, phase: str, info: dict[str, int]) -> None:
        """What survived a full collection is no garbage: freeze it, so the next one looks
        only at what came since (botocore's service models, the world's state, caches)."""
        if phase == "stop" and info["generation"] == 2:
            try:  # any thread may have collected: freeze on the UI loop, after the collection
                self._loop_for_gc.call_soon_threadsafe(gc.freeze)
            except RuntimeError:  # the loop is closed: the app is gone
                gc.callbacks.remove(self._after_collection)

    def on_ready(self) -> None:
        self.startup_seconds = process_age()
        self.log.system(f"handrail: first frame {self.startup_seconds:.3f} s after the process started")

    # -- the catalog ----------------------------------------------------------------------

    def refresh_catalog(self) -> None:
        self._load_catalog()

    @work(thread=True, exclusive=True, group="catalog", exit_on_error=False)
    def _load_catalog(self) -> None:
        try:
            catalog = load_catalog(self.launcher.journal, scenario_file=self.scenario, inventory=self.inventory)
        except Exception as exc:
            catalog = Catalog(problems=[f"cannot list runbooks and scenarios: {exc}"])
        if not self._heap_frozen:  # the first load: what start-up imported stays
            self._heap_frozen = True
            freeze_heap()
        self.post_message(CatalogLoaded(catalog))

    def on_catalog_loaded(self, message: CatalogLoaded) -> None:
        self.catalog = message.catalog

    # -- opening a session --------------------------------------------------------------

    def launch(self, request: Request, origin: Screen | None = None) -> None:
        """Open a session in a worker. `origin`, the screen that asked (start screen by
        default), gets `LaunchFailed`, or loses its "opening…" line when it opens."""
        self._open(lambda: self.launcher.start(request), False, origin or self.start_screen)

    def resume(self, session_id: str, origin: Screen | None = None) -> None:
        self._open(lambda: self.launcher.resume(session_id), True, origin or self.start_screen)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def _open(self, open_session, resumed: bool, origin: Screen) -> None:
        try:
            session = open_session()
        except LaunchError as exc:
            origin.post_message(LaunchFailed(str(exc)))
        except Exception as exc:  # never a traceback: the screen says what went wrong
            from steps.secrets import redact

            origin.post_message(LaunchFailed(redact(f"{type(exc).__name__}: {exc}")))
        else:
            freeze_heap(collect=True)  # while the screen still says "opening…"
            self.post_message(SessionOpened(session, resumed, origin))

    def on_session_opened(self, message: SessionOpened) -> None:
        from tui.screens.briefing import BriefingScreen
        from tui.screens.checklist import ChecklistScreen

        self.session = message.session
        origin = message.origin
        if origin is not None:
            origin.opening = False
            origin.set_status("")
        checklist = ChecklistScreen(message.session, self.frozen, self.reveal_seconds)
        if isinstance(origin, BriefingScreen) and self.screen is origin:
            self.switch_screen(checklist)  # leaving the session comes back to the scenario list
        else:
            self.push_screen(checklist)
        if message.resumed:
            self.notify(f"Resumed session {message.session.id}: {message.session.status}.", title="Resumed")

    def leave_session(self, back_to_start: bool = False, abandon_work: bool = False) -> None:
        """Close the session (it stays resumable unless finished), then go back or exit."""
        session, self.session = self.session, None
        if session is not None:
            if abandon_work:
                self.abandoned_work = True  # a worker is inside a step: leave it be, exit hard
            else:
                self._close(session)
            if session.status.finished:
                self.exit_note = f"handrail: session {session.id} is {session.status}."
            else:
                self.exit_note = (
                    f"handrail: session {session.id} is {session.status}; resume it with `handrail`, or `handrail resume {session.id}`."
                )
        if back_to_start and not abandon_work:
            from tui.screens.checklist import ChecklistScreen

            # Off come the checklist and whatever is above it (the debrief): back to the
            # screen the session was opened from (start screen, scenario list).
            while len(self.screen_stack) > 1:
                top = self.screen
                self.pop_screen()
                if isinstance(top, ChecklistScreen):
                    break
            self.refresh_catalog()
        else:
            self.exit()

    def _close(self, session: Session) -> None:
        release = getattr(session.wiring.clock, "release", None)
        if release is not None:  # a frozen clock: no worker may sleep on it forever
            release()
        try:
            session.close()
        except Exception as exc:
            self.log.error(f"closing session {session.id}: {exc!r}")
        gc.unfreeze()  # the session's world may go now; the next session freezes again

    def on_unmount(self) -> None:
        if self.session is not None and not self.abandoned_work:
            self._close(self.session)
        self.launcher.close()
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        gc.unfreeze()  # what the app froze was its own (several apps run in one test process)

    # -- app-wide actions ---------------------------------------------------------------

    async def action_quit(self) -> None:
        from tui.screens.board import BoardScreen
        from tui.screens.checklist import ChecklistScreen
        from tui.screens.debrief import DebriefScreen, QuitTrainingScreen

        board = next((s for s in self.screen_stack if isinstance(s, BoardScreen)), None)
        if board is not None:  # the board owns its targets' sessions
            board.action_quit_board()
            return
        checklist = next((s for s in self.screen_stack if isinstance(s, ChecklistScreen)), None)
        if checklist is None:
            self.exit()
        elif isinstance(self.screen, (DebriefScreen, QuitTrainingScreen)):
            checklist.action_quit_session(offer_debrief=False)  # the debrief is offered, or on screen
        else:
            checklist.action_quit_session()

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        # Built once and kept (installed): opening it again costs no compose or styling.
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(self.help_sections(), intro=HELP_INTRO), "help")
        self.push_screen("help")

    def help_sections(self) -> list[Section]:
        from tui.screens.board import BoardScreen, CampaignDebriefScreen, CampaignsScreen, TargetChecklist
        from tui.screens.briefing import BriefingScreen
        from tui.screens.checklist import ChecklistScreen
        from tui.screens.debrief import DebriefScreen, ExportScreen, QuitTrainingScreen
        from tui.screens.modals import ConfirmRunScreen, ManualStepScreen, ReasonScreen, TypedConfirmScreen
        from tui.screens.rollback import RollbackScreen
        from tui.screens.training import ScenarioList, TrainingScreen

        def rows(*classes) -> list[tuple[str, str]]:
            seen: dict[str, str] = {}
            for cls in classes:
                for binding in Binding.make_bindings(cls.BINDINGS):
                    if binding.system or not binding.description:
                        continue
                    key = self.get_key_display(binding)
                    seen.setdefault(key, binding.tooltip or binding.description)
            return list(seen.items())

        return [
            ("Checklist", rows(ChecklistScreen)),
            ("Start screen", rows(StartScreen)),
            ("Training scenarios (handrail train)", rows(ScenarioList, TrainingScreen)),
            ("Briefing", rows(BriefingScreen)),
            ("Debrief (training)", rows(DebriefScreen)),
            ("Quitting a training session", rows(QuitTrainingScreen)),
            ("Exporting the debrief", rows(ExportScreen)),
            ("Everywhere", rows(HandrailApp) + NAVIGATION),
            ("Confirm a step", rows(ConfirmRunScreen, TypedConfirmScreen, ReasonScreen)),
            ("Manual step", rows(ManualStepScreen)),
            ("Rollback plan", rows(RollbackScreen)),
            ("Campaign board (many sessions)", rows(BoardScreen, CampaignsScreen)),
            ("A target's checklist, from the board", rows(TargetChecklist)[:1]),
            ("Campaign debrief", rows(CampaignDebriefScreen)),
        ]


HELP_INTRO = (
    "handrail walks a runbook one confirmed step at a time. The list on the left shows each "
    "step's state; the right side shows the highlighted step: why, its command, its undo, its "
    "output and evidence. Nothing runs until you confirm, and u always offers the rollback."
)


def run_app(
    runbook: str | None = None,
    user: str | None = None,
    mode: str | None = None,
    scenario: str | None = None,
    inventory: str | None = None,
    training: bool = False,
    profile: str | None = None,
    region: str | None = None,
    campaign: str | None = None,
) -> None:
    """Run the app in this terminal until the operator quits (`training`: on the
    scenario list, or on `scenario`'s briefing; `campaign`: on that campaign's board)."""
    app = HandrailApp(runbook, user, mode, scenario, inventory, profile=profile, region=region, training=training, campaign=campaign)
    loop = asyncio.new_event_loop()
    try:
        app.run(loop=loop)
    finally:
        if app.exit_note:
            print(app.exit_note)
        if app.abandoned_work:
            # A worker is inside a step (a wait, an AWS call): the journal has the step as
            # started, so resume runs it again. Do not wait for it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
