"""The campaign board: one row per target, overall progress; enter opens a target's checklist.

`CampaignsScreen` offers the training campaigns (offboard dana, the fleet's due keys) and
the journal's campaigns. `BoardScreen` shows one campaign (`tui.campaigns.Board`): planned
(nothing written) until ctrl+s confirms it, then driven by the campaign scheduler
(steps.campaign.Runner) in a thread worker, a few targets at a time, each up to the first
thing it may not answer alone. Enter opens the highlighted target in `TargetChecklist`,
the ordinary checklist on that target's session (rollback, gates, typed confirmations);
escape comes back. Every worker reports by message; the rows are read from memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from steps.status import TargetState
from tui.campaigns import TRAINING_CAMPAIGNS, Board, CampaignChoice, Row, counts
from tui.messages import BoardReady, BoardWorkDone, CampaignsLoaded, DebriefReady, TargetMoved, TargetOpened
from tui.screens.checklist import ChecklistScreen
from tui.widgets.footer import fit_palette_key
from tui.widgets.training import TrainingHeader, end_state_table, verdicts_table

if TYPE_CHECKING:
    from steps.debrief import CampaignDebrief
    from steps.engine import Session

# TargetState -> (glyph, theme variable), as the checklist shows a step's state.
LOOKS: dict[str, tuple[str, str]] = {
    TargetState.PLANNED: ("○", "text-muted"),
    TargetState.RUNNING: ("◐", "warning"),
    TargetState.WAITING: ("◷", "warning"),
    TargetState.STOPPED: ("▸", "accent"),
    TargetState.DONE: ("✓", "success"),
    TargetState.FAILED: ("✗", "error"),
    TargetState.BLOCKED: ("■", "error"),
    TargetState.REFUSED: ("⊘", "error"),
    TargetState.ROLLING_BACK: ("↶", "warning"),
    TargetState.ROLLBACK_FAILED: ("✗", "error"),
    TargetState.ROLLED_BACK: ("↶", "secondary"),
    TargetState.ABANDONED: ("↷", "text-muted"),
}
# What the board calls a state (the journal's word is kept in JSON and the CLI).
WORDS = {TargetState.STOPPED: "needs you", TargetState.WAITING: "at its gate"}


def state_text(state: TargetState, colors: dict[str, str]) -> Content:
    glyph, color = LOOKS.get(state, ("?", "text"))
    return Content.from_markup(f"[{colors.get(color, '')}]$glyph $word[/]", glyph=glyph, word=WORDS.get(state, str(state)))


def progress_line(rows: list[Row]) -> str:
    ended = sum(r.state.ended for r in rows)
    words = ", ".join(f"{n} {WORDS.get(TargetState(s), s)}" for s, n in sorted(counts(rows).items()))
    return f"{ended} of {len(rows)} ended · {words}"


class TargetTable(DataTable):
    """The board's rows; enter (shown in the footer) opens the highlighted target."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", tooltip="Open the highlighted target's checklist (escape comes back)")]


# (key, label, width at 120 columns, width under 100)
COLUMNS = (
    ("n", "#", 3, 2),
    ("kind", "Kind", 8, 8),
    ("user", "User", 22, 18),
    ("step", "Step", 34, 16),
    ("state", "Status", 16, 13),
    ("consumers", "Verified", 9, 8),
)


class CampaignsScreen(Screen):
    """Choose a campaign: a training one (planned on its board, confirmed there), or one in the journal."""

    BINDINGS = [
        Binding("enter", "choose", "Open", show=False),
        Binding("escape", "back", "Back", tooltip="The start screen"),
        Binding("q", "app.quit", "Quit"),
    ]
    AUTO_FOCUS = "#campaign-choices"

    def compose(self) -> ComposeResult:
        yield TrainingHeader(
            Content.from_markup("[b]Campaigns[/b] · many sessions on one board"),
            "Each target is its own session: its lock, its gates, its rollback.",
            Content.from_markup("[dim]enter opens the plan on the board; nothing changes before you confirm it[/dim]"),
            id="campaigns-header",
        )
        choices = OptionList(*[self._training(c) for c in TRAINING_CAMPAIGNS], id="campaign-choices")
        choices.border_title = "Training · simulated AWS, nothing real changes"
        yield choices
        journal = OptionList(Option(Content.from_markup("[dim]loading the journal…[/dim]"), disabled=True), id="campaign-journal")
        journal.border_title = "In the journal · enter opens its board"
        yield journal
        yield Footer()

    @staticmethod
    def _training(choice: CampaignChoice) -> Option:
        return Option(Content.from_markup("[b]$title[/b]\n  $text", title=choice.title, text=choice.description), id=choice.id)

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="campaigns", exit_on_error=False)
    def _load(self) -> None:
        from steps import campaign as campaigns

        try:
            journal = self.app.launcher.journal()
            found = []
            for row in journal.campaigns(limit=20):
                s = campaigns.summary(journal, row.id)
                label = f"{row.id}  {'ended' if s.ended else 'open'} · {row.mode} · {row.name} · {len(s.results)} target(s)"
                found.append((row.id, label, s.ended))
        except Exception as exc:
            self.post_message(CampaignsLoaded([], f"journal: {exc}"))
            return
        self.post_message(CampaignsLoaded(found))

    def on_campaigns_loaded(self, message: CampaignsLoaded) -> None:
        journal = self.query_one("#campaign-journal", OptionList)
        journal.clear_options()
        if message.error or not message.campaigns:
            journal.add_option(Option(Content(message.error or "none yet"), disabled=True))
            return
        for cid, label, _ in message.campaigns:
            journal.add_option(Option(Content(label), id=f"journal:{cid}"))

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self._open(event.option.id)

    def action_choose(self) -> None:
        focused = self.focused
        if isinstance(focused, OptionList) and focused.highlighted is not None:
            self._open(focused.get_option_at_index(focused.highlighted).id)

    def _open(self, option_id: str | None) -> None:
        if not option_id:
            return
        if option_id.startswith("journal:"):
            self.app.push_screen(BoardScreen(ref=option_id.removeprefix("journal:")))
            return
        choice = next(c for c in TRAINING_CAMPAIGNS if c.id == option_id)
        self.app.push_screen(BoardScreen(choice=choice))

    def action_back(self) -> None:
        self.app.pop_screen()


class BoardScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", priority=True, tooltip="Confirm the plan: record the campaign and drive its targets"),
        Binding("g", "go", "Go on", tooltip="Drive every target that has not ended to its next stop (a few at a time)"),
        Binding("f", "fast_forward", "Fast-fwd", tooltip="Training: open every waiting target's gate on the simulated clock, then go on"),
        Binding("u", "rollback", "Roll back", tooltip="The highlighted target's rollback plan, in its checklist"),
        Binding("d", "debrief", "Debrief", tooltip="The campaign's debrief: each target's verdicts, the end state"),
        Binding("escape", "back", "Back", show=False, tooltip="Leave the board (the campaign stays resumable)"),
        Binding("q", "quit_board", "Quit", tooltip="Quit; the campaign stays resumable (handrail board C)"),
    ]
    AUTO_FOCUS = "#board-table"

    def __init__(self, choice: CampaignChoice | None = None, ref: str | None = None, board: Board | None = None) -> None:
        super().__init__()
        self.choice, self.ref = choice, ref
        self.board: Board | None = board
        self.busy: str | None = None  # what the board's worker is doing
        self.checklists: dict[int, TargetChecklist] = {}
        self._rows: list[Row] = []
        self._debriefed = False
        self._refresh_pending = False

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TrainingHeader("", "", "", id="board-header")
        with Horizontal(id="board-progress"):
            yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="board-bar")
            yield Static(id="board-counts")
        table = TargetTable(id="board-table", cursor_type="row", zebra_stripes=True)
        table.border_title = "Targets"
        yield table
        yield Static(id="board-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#board-table", DataTable)
        narrow = self.app.size.width < 100
        for key, label, wide, slim in COLUMNS:
            table.add_column(label, key=key, width=slim if narrow else wide)
        self._header()
        if self.board is not None:
            self._ready()
        elif self.choice is not None:
            self.busy = f"building the simulated account of {self.choice.title.lower()} and its plan…"
            self._plan(self.choice)
        else:
            self.busy = f"opening campaign {self.ref}…"
            self._reopen(self.ref or "last")
        self._show()

    def on_resize(self) -> None:
        narrow = self.size.width < 100
        table = self.query_one("#board-table", DataTable)
        for key, _, wide, slim in COLUMNS:
            column = table.columns.get(key)  # type: ignore[call-overload]
            if column is not None:
                column.width = slim if narrow else wide
        table.refresh()
        fit_palette_key(self.query_one(Footer), self.size.width)

    # -- workers --------------------------------------------------------------------------

    def _frozen(self):
        return getattr(self.app, "frozen", None)

    @work(thread=True, exclusive=True, group="board", exit_on_error=False)
    def _plan(self, choice: CampaignChoice) -> None:
        try:
            board = Board.plan_training(self.app.launcher.engine(), choice, self._frozen())
        except Exception as exc:
            self.post_message(BoardReady(None, _line(exc)))
            return
        self.post_message(BoardReady(board))

    @work(thread=True, exclusive=True, group="board", exit_on_error=False)
    def _reopen(self, ref: str) -> None:
        try:
            board = Board.reopen(self.app.launcher.engine(), ref, self._frozen())
        except Exception as exc:
            self.post_message(BoardReady(None, _line(exc)))
            return
        self.post_message(BoardReady(board))

    def on_board_ready(self, message: BoardReady) -> None:
        self.busy = None
        if message.board is None:
            self.query_one("#board-detail", Static).update(Content(f"No board: {message.error}"))
            self.query_one("#board-detail").add_class("-error")
            self.notify(message.error, title="Cannot open the campaign", severity="error")
            self._header(error=message.error)
            return
        self.board = message.board
        self._ready()

    def _ready(self) -> None:
        assert self.board is not None
        self.board.changed = self._changed
        self._show()
        self.refresh_bindings()

    def _changed(self, position: int) -> None:
        """From worker threads: a target moved (several at once become one refresh)."""
        self.post_message(TargetMoved(position))

    @work(thread=True, exclusive=True, group="board", exit_on_error=False)
    def _work(self, what: str, start: bool = False, drive: bool = True, fast_forward: bool = False) -> None:
        board = self.board
        assert board is not None
        try:
            if start:
                board.start()
                self.post_message(TargetMoved(-1))
            positions = None
            if fast_forward:
                positions = board.fast_forward()
                if not positions:
                    self.post_message(BoardWorkDone(what, "no target is waiting at a closed gate"))
                    return
            if drive:
                board.drive(positions)
        except Exception as exc:
            self.post_message(BoardWorkDone(what, _line(exc)))
            return
        self.post_message(BoardWorkDone(what))

    def on_board_work_done(self, message: BoardWorkDone) -> None:
        self.busy = None
        if message.error:
            self.notify(message.error, title=f"Could not {message.what}", severity="error" if "gate" not in message.error else "warning")
        self._show()
        self.refresh_bindings()

    def on_target_moved(self, message: TargetMoved) -> None:
        if not self._refresh_pending:  # a burst of events: one refresh after it
            self._refresh_pending = True
            self.call_after_refresh(self._refresh_now)

    def _refresh_now(self) -> None:
        self._refresh_pending = False
        self._show()

    # -- what is shown --------------------------------------------------------------------

    def _header(self, error: str = "") -> None:
        board = self.board
        if board is None:
            title = self.choice.title if self.choice else f"campaign {self.ref}"
            self.query_one(TrainingHeader).set_lines(
                Content.from_markup("[b]Campaign[/b] · $t", t=title),
                error or (self.busy or ""),
                Content.from_markup("[dim]escape: back[/dim]"),
            )
            return
        where = f"campaign {board.campaign_id}" if board.started else "plan · nothing has changed yet: ctrl+s starts it"
        mode = "TRAINING" if board.mode == "training" else board.mode.upper()
        self.query_one(TrainingHeader).set_lines(
            Content.from_markup("[b]Campaign[/b] · $name · $mode", name=board.name, mode=mode),
            Content(where),
            Content.from_markup(
                "[dim]account $a · $n at a time · enter opens a target, escape comes back[/dim]",
                a=board.account or "?",
                n=str(board.concurrency),
            ),
        )
        self.query_one(".badge", Static).display = board.mode == "training"

    def _show(self) -> None:
        board = self.board
        self._header()
        if board is None:
            return
        rows = board.rows()
        self._rows = rows
        colors = self.app.theme_variables
        table = self.query_one("#board-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for r in rows:
            table.add_row(
                str(r.position + 1),
                r.kind,
                r.user,
                r.step,
                state_text(TargetState.RUNNING if r.driving else r.state, colors),
                r.consumers,
                key=str(r.position),
            )
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1), animate=False)
        bar = self.query_one("#board-bar", ProgressBar)
        bar.update(total=max(1, len(rows)), progress=sum(r.state.ended for r in rows))
        line = progress_line(rows) if board.started else f"{len(rows)} target(s) planned · ctrl+s starts the campaign"
        if self.busy:
            line += f" · {self.busy}"
        self.query_one("#board-counts", Static).update(Content(line))
        self._show_detail()
        ended = board.started and rows and all(r.state.ended for r in rows)
        if ended and not self._debriefed and self.busy is None and self.app.screen is self:
            self._debriefed = True  # the board's end: the campaign's debrief, once
            self.action_debrief()

    def _highlighted(self) -> Row | None:
        table = self.query_one("#board-table", DataTable)
        if not self._rows or table.cursor_row < 0 or table.cursor_row >= len(self._rows):
            return None
        return self._rows[table.cursor_row]

    def _show_detail(self) -> None:
        row = self._highlighted()
        detail = self.query_one("#board-detail", Static)
        detail.remove_class("-error")
        if row is None:
            detail.update(Content(self.busy or ""))
            return
        detail.border_title = f"{row.user} · {row.runbook}"
        text = Content.from_markup("[b]Why[/b] $why", why=row.why)
        if row.detail:
            text += Content.from_markup("\n[b]Now[/b] $d", d=row.detail)
        elif row.driving:
            text += Content("\nThe scheduler is driving it to its next stop.")
        detail.update(text)
        detail.set_class(row.state.failing or row.state is TargetState.REFUSED, "-error")

    @on(DataTable.RowHighlighted)
    def _highlight(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_open()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        board = self.board
        started = board is not None and board.started
        if action == "start":
            return board is not None and not started
        if action in ("go", "rollback", "debrief"):
            return started
        if action == "open":
            return started or None
        if action == "fast_forward":
            return started and board is not None and board.mode == "training"
        return True

    # -- actions --------------------------------------------------------------------------

    def _refuse_if_busy(self) -> bool:
        if self.busy:
            self.notify(f"{self.busy} wait for it to finish.", severity="warning")
            return True
        return False

    def action_start(self) -> None:
        from tui.screens.modals import AskScreen

        board = self.board
        if board is None or board.started or self._refuse_if_busy():
            return
        n = len(board.planned)
        text = (
            f"{n} session(s), {board.concurrency} at a time, in {board.mode} mode. Your yes answers each step's yes-confirmation; "
            "every target stops at what needs you alone: a typed confirmation (each irreversible step), an observation gate, "
            "a refusal or a block. One target stopping never stops the others. The plan goes to the journal and the audit log."
        )
        self.app.push_screen(
            AskScreen(
                f"Start this campaign of {n} target(s)?",
                text,
                yes="Start",
                no="Back",
                variant="error" if board.mode == "live" else "warning",
            ),
            lambda ok: ok and self._begin("start the campaign", "starting the campaign and driving its targets…", start=True),
        )

    def _begin(self, what: str, busy: str, **kwargs: bool) -> None:
        self.busy = busy
        self._show()
        self.refresh_bindings()
        self._work(what, **kwargs)

    def action_go(self) -> None:
        if self.board is None or not self.board.started or self._refuse_if_busy():
            return
        self._settle_all()
        held = [p for p, c in self.checklists.items() if not c.idle]
        if held:
            self.notify("A target's checklist is running a step: the scheduler leaves that target alone.", severity="warning")
        self._begin("go on", "driving the targets to their next stop…")

    def action_fast_forward(self) -> None:
        if self.board is None or not self.board.started or self._refuse_if_busy():
            return
        self._begin("fast-forward", "opening the gates on the simulated clock, then driving on…", fast_forward=True)

    def action_open(self, rollback: bool = False) -> None:
        row = self._highlighted()
        board = self.board
        if row is None or board is None or not board.started:
            return
        if row.driving:
            self.notify(f"{row.user}: the scheduler is driving it to its next stop; open it then.", severity="warning")
            return
        checklist = self.checklists.get(row.position)
        if checklist is not None:
            self._push(checklist, rollback)
            return
        if row.state.ended and row.session_id is None:
            self.notify(f"{row.user}: {row.state}, nothing to open.", severity="warning")
            return
        self._open_target(row.position, rollback)

    @work(thread=True, group="open", exit_on_error=False)
    def _open_target(self, position: int, rollback: bool) -> None:
        assert self.board is not None
        try:
            session = self.board.session(position)
        except Exception as exc:
            self.post_message(TargetOpened(position, None, _line(exc)))
            return
        self.post_message(TargetOpened(position, session, rollback=rollback))

    def on_target_opened(self, message: TargetOpened) -> None:
        self._show()
        if message.session is None:
            row = next((r for r in self._rows if r.position == message.position), None)
            reason = message.error or (row.detail if row else "") or "it could not be opened"
            self.notify(f"{row.user if row else 'target'}: {reason}", title="Not opened", severity="error")
            return
        checklist = self.checklists.get(message.position)
        if checklist is None:
            checklist = TargetChecklist(message.session, self, message.position, self._frozen(), getattr(self.app, "reveal_seconds", 10.0))
            self.checklists[message.position] = checklist
            self.app.install_screen(checklist, f"board-target-{message.position}-{message.session.id}")
        self._push(checklist, message.rollback)

    def _push(self, checklist: TargetChecklist, rollback: bool) -> None:
        self.app.push_screen(checklist)
        if rollback:
            checklist.call_after_refresh(checklist.action_rollback)

    def action_rollback(self) -> None:
        self.action_open(rollback=True)

    def back_from(self, checklist: TargetChecklist) -> None:
        """A target's checklist closed: the board records where it stands and shows it."""
        if self.app.screen is checklist:
            self.app.pop_screen()
        self._settle(checklist.position)

    @work(thread=True, group="settle", exit_on_error=False)
    def _settle(self, position: int) -> None:
        if self.board is not None:
            self.board.settle(position)
        self.post_message(TargetMoved(position))

    def _settle_all(self) -> None:
        for position, checklist in self.checklists.items():
            if checklist.idle:
                self._settle(position)

    def action_debrief(self) -> None:
        board = self.board
        if board is None or not board.started:
            return
        self.app.push_screen(CampaignDebriefScreen(board))

    def on_screen_resume(self) -> None:
        self._show()

    # -- leaving ----------------------------------------------------------------------------

    def _working(self) -> str | None:
        if self.busy:
            return self.busy
        for checklist in self.checklists.values():
            if not checklist.idle:
                return f"{checklist.session.target}: {checklist.busy or 'rolling back'}"
        return None

    def action_back(self) -> None:
        if self.board is not None and self._working():
            self.notify(f"{self._working()}: wait for it, or q quits.", severity="warning")
            return
        self._close_board()
        self.app.pop_screen()

    def action_quit_board(self) -> None:
        from tui.screens.modals import AskScreen

        working = self._working()
        if working is None:
            self._close_board()
            self.app.exit()
            return
        cid = self.board.campaign_id if self.board is not None else None
        text = (
            f"Handrail is busy ({working}). Quitting now stops it where it is: the journal shows each running step as "
            "started and not finished, and on resume it runs again (every step looks at the world before it acts)."
            + (f" Go on with `handrail board {cid}` or `handrail campaign resume {cid}`." if cid else "")
        )
        self.app.push_screen(
            AskScreen("Quit in the middle of a step?", text, yes="Quit now", no="Stay"),
            lambda ok: ok and self._abandon(),
        )

    def _abandon(self) -> None:
        self.app.abandoned_work = True  # workers are inside steps: leave them be, exit hard
        self._note()
        self.app.exit()

    def _note(self) -> None:
        board = self.board
        if board is None or not board.started:
            return
        line = progress_line(self._rows)
        if all(r.state.ended for r in self._rows):
            self.app.exit_note = f"handrail: campaign {board.campaign_id} ended: {line}."
        else:
            self.app.exit_note = (
                f"handrail: campaign {board.campaign_id} is open ({line}); go on with `handrail board {board.campaign_id}` "
                f"or `handrail campaign resume {board.campaign_id}`."
            )

    def _close_board(self) -> None:
        """Every target's session closed (each resumable), the world saved, the fleet closed."""
        for checklist in self.checklists.values():
            checklist.closed = True
            if self.app.uninstall_screen(checklist) and checklist.is_attached:
                checklist.remove()  # installed screens outlive a pop; these go with the board
        self.checklists.clear()
        board = self.board
        if board is None:
            return
        if board.started:
            self._rows = board.rows()
        self._note()
        self.board = None
        clock = board.fleet.world.clock if board.fleet.world is not None else None
        release = getattr(clock, "release", None)
        if release is not None:  # a frozen clock: no worker may sleep on it forever
            release()
        try:
            board.close()
        except Exception as exc:
            self.log.error(f"closing campaign {board.campaign_id}: {exc!r}")

    def on_unmount(self) -> None:
        if self.board is not None and not getattr(self.app, "abandoned_work", False):
            self._close_board()


class TargetChecklist(ChecklistScreen):
    """The checklist, on one target's session of a campaign: escape goes back to the board.

    Everything else is the checklist's own (rollback, gates, typed confirmations); leaving
    the session and quitting go through the board, which owns every target's session."""

    BINDINGS = [
        Binding("escape", "board", "Board", tooltip="Back to the campaign board (this session stays open there)"),
        Binding("n", "board", "Board", show=False, tooltip="Back to the campaign board"),
    ]

    def __init__(self, session: Session, board: BoardScreen, position: int, frozen: Any = None, reveal_seconds: float = 10.0) -> None:
        super().__init__(session, frozen, reveal_seconds)
        self.board, self.position = board, position
        self.closed = False  # the board closed its session: the timer must not tick on it

    def _tick(self) -> None:
        if not self.closed:
            super()._tick()

    def action_board(self) -> None:
        self.board.back_from(self)

    def action_new_session(self) -> None:
        self.board.back_from(self)

    def action_quit_session(self, offer_debrief: bool = True) -> None:
        self.board.action_quit_board()

    def _debrief_when_finished(self) -> None:
        """The board's end shows the campaign's debrief, every target's verdicts in it."""


class CampaignDebriefScreen(Screen):
    """The campaign's debrief: where it ended, and each target's verdicts, rollback and end state."""

    BINDINGS = [
        Binding("m", "export", "Markdown", tooltip="Write the campaign's debrief to a Markdown file"),
        Binding("escape", "back", "Board", tooltip="Back to the board"),
        Binding("q", "quit_board", "Quit"),
    ]
    AUTO_FOCUS = "#campaign-debrief-body"

    def __init__(self, board: Board) -> None:
        super().__init__()
        self.board = board
        self.debrief: CampaignDebrief | None = None
        self.markdown: str | None = None

    def compose(self) -> ComposeResult:
        yield TrainingHeader(
            Content.from_markup("[b]Debrief[/b] · campaign $n", n=self.board.name),
            Content(f"campaign {self.board.campaign_id}"),
            Content.from_markup("[dim]m: Markdown file · escape: the board[/dim]"),
            id="campaign-debrief-header",
        )
        with VerticalScroll(id="campaign-debrief-body"):
            yield Static(Content.from_markup("[dim]building the debrief from the journal…[/dim]"), id="campaign-debrief-end")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(".badge", Static).display = self.board.mode == "training"
        self._build()

    @work(thread=True, exclusive=True, group="debrief", exit_on_error=False)
    def _build(self) -> None:
        from steps import debrief as debriefs
        from steps.secrets import redact

        try:
            self.board.save()  # the world as it is now
            engine = self.board.engine
            d = debriefs.build_campaign(engine.journal, engine.audit, self.board.campaign_id or "")
            self.markdown = redact(debriefs.campaign_to_markdown(d))
        except Exception as exc:
            self.post_message(DebriefReady(None, _line(exc)))
            return
        self.post_message(DebriefReady(d))  # type: ignore[arg-type]

    def on_debrief_ready(self, message: DebriefReady) -> None:
        end = self.query_one("#campaign-debrief-end", Static)
        d: Any = message.debrief
        if d is None:
            end.update(Content(f"No debrief: {message.error}"))
            end.add_class("-error")
            return
        self.debrief = d
        colors = self.app.theme_variables
        end.update(Content.from_markup("[b]End[/b] $end", end=d.end))
        end.border_title = "The campaign"
        body = self.query_one("#campaign-debrief-body", VerticalScroll)
        parts: list[Static] = []
        for t in d.targets:
            box = Static(classes="debrief-part")
            box.border_title = f"{t.position + 1}. {t.user} · {t.runbook} · {WORDS.get(TargetState(t.state), t.state)}"
            if t.debrief is None:
                box.update(Content("Never started: nothing changed."))
            else:
                from rich.console import Group
                from rich.text import Text

                pieces: list[Any] = []
                if t.debrief.gotchas:
                    pieces.append(verdicts_table(t.debrief.gotchas, colors))
                pieces.append(Text(f"Rollback: {t.debrief.rollback}"))
                pieces.append(end_state_table(t.debrief.end_state, colors))
                box.update(Group(*pieces))
            parts.append(box)
        body.mount_all(parts)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_quit_board(self) -> None:
        board = next((s for s in self.app.screen_stack if isinstance(s, BoardScreen)), None)
        if board is not None:
            board.action_quit_board()
        else:
            self.app.exit()

    def action_export(self) -> None:
        from tui.screens.debrief import ExportScreen

        if self.markdown is None:
            self.notify("The debrief is still being built.", severity="warning")
            return
        path = Path.cwd() / f"debrief-{self.board.campaign_id}.md"
        self.app.push_screen(ExportScreen(str(path)), self._export_to)

    def _export_to(self, path: str | None) -> None:
        if path:
            try:
                Path(path).expanduser().write_text(self.markdown or "")
            except OSError as exc:
                self.notify(f"{type(exc).__name__}: {exc.strerror or exc}", title="Not written", severity="error")
                return
            self.notify(path, title="Debrief written")


def _line(exc: BaseException) -> str:
    from steps.secrets import redact

    text = str(exc).strip() or type(exc).__name__
    known = ("ComposeError", "RunbookError", "CampaignNotFound", "PlanError", "UnknownPerson", "LockHeld", "WiringError")
    if type(exc).__name__ not in known:
        text = f"{type(exc).__name__}: {text}"
    return redact(text.splitlines()[0])
