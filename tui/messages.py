"""Messages from thread workers to the screens: the only way work reaches the UI.

Engine listeners and workers run in worker threads; `post_message` is thread-safe, so
each posts one of these and the screen updates itself on the UI thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from textual.screen import Screen

    from steps.actions.base import Outcome
    from steps.debrief import Debrief
    from steps.engine import Event, Prompt, Session, UndoItem
    from tui.launcher import Catalog


class CatalogLoaded(Message):
    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog


class SessionOpened(Message):
    def __init__(self, session: Session, resumed: bool = False, origin: Screen[Any] | None = None) -> None:
        super().__init__()
        self.session = session
        self.resumed = resumed
        self.origin = origin  # the screen that asked for it


class LaunchFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class EngineEvent(Message):
    """One `steps.engine.Event` (status, step, output, progress, rollback)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class PromptReady(Message):
    """The current step's prompt, freshly computed (its preview may call AWS)."""

    def __init__(self, prompt: Prompt, then_run: bool, request: int) -> None:
        super().__init__()
        self.prompt = prompt
        self.then_run = then_run
        self.request = request  # only the latest request counts


class WorkDone(Message):
    """An intent (run, skip, override, fast-forward) has finished."""

    def __init__(self, what: str, step_id: str | None) -> None:
        super().__init__()
        self.what = what
        self.step_id = step_id


class RollbackDone(Message):
    """The rollback worker has finished: every undo ran (`ok`), or it stopped at the last result."""

    def __init__(self, ok: bool, results: list[tuple[UndoItem, Outcome]]) -> None:
        super().__init__()
        self.ok = ok
        self.results = results


class WorkFailed(Message):
    """An intent was refused or raised: shown to the operator, never a traceback."""

    def __init__(self, what: str, step_id: str | None, error: str) -> None:
        super().__init__()
        self.what = what
        self.step_id = step_id
        self.error = error


class DebriefReady(Message):
    """The training debrief (`steps.debrief.Debrief`), built from the journal."""

    def __init__(self, debrief: Debrief | None, error: str = "") -> None:
        super().__init__()
        self.debrief = debrief  # None when it could not be built: `error` says why
        self.error = error


class Exported(Message):
    """The debrief was written to `path` (or could not be: `error`)."""

    def __init__(self, path: str, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.error = error


# -- the campaign board --------------------------------------------------------------------------


class BoardReady(Message):
    """A campaign's board is planned or reopened (`tui.campaigns.Board`), or could not be (`error`)."""

    def __init__(self, board: Any, error: str = "") -> None:
        super().__init__()
        self.board = board
        self.error = error


class TargetMoved(Message):
    """A target of the board moved (its step, its state); -1: any of them."""

    def __init__(self, position: int) -> None:
        super().__init__()
        self.position = position


class BoardWorkDone(Message):
    """A board worker ended: started, drove, fast-forwarded, closed; `error` when it could not."""

    def __init__(self, what: str, error: str = "") -> None:
        super().__init__()
        self.what = what
        self.error = error


class TargetOpened(Message):
    """The session of a target, opened for its checklist (None: refused or failed, see its row)."""

    def __init__(self, position: int, session: Session | None, error: str = "", rollback: bool = False) -> None:
        super().__init__()
        self.position = position
        self.session = session
        self.error = error
        self.rollback = rollback  # open it on its rollback plan


class CampaignsLoaded(Message):
    """The journal's campaigns for the campaign chooser: (id, one-line label, ended)."""

    def __init__(self, campaigns: list[tuple[str, str, bool]], error: str = "") -> None:
        super().__init__()
        self.campaigns = campaigns
        self.error = error
