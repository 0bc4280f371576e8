"""Messages from thread workers to the screens: the only way work reaches the UI.

Engine listeners and workers run in worker threads; `post_message` is thread-safe, so
each posts one of these and the screen updates itself on the UI thread.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class CatalogLoaded(Message):
    def __init__(self, catalog: Any) -> None:
        super().__init__()
        self.catalog = catalog


class SessionOpened(Message):
    def __init__(self, session: Any, resumed: bool = False, origin: Any = None) -> None:
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

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class PromptReady(Message):
    """The current step's prompt, freshly computed (its preview may call AWS)."""

    def __init__(self, prompt: Any, then_run: bool, request: int) -> None:
        super().__init__()
        self.prompt = prompt
        self.then_run = then_run
        self.request = request  # only the latest request counts


class WorkDone(Message):
    """An intent (run, skip, override, fast-forward, rollback) has finished."""

    def __init__(self, what: str, step_id: str | None, result: Any = None) -> None:
        super().__init__()
        self.what = what
        self.step_id = step_id
        self.result = result


class WorkFailed(Message):
    """An intent was refused or raised: shown to the operator, never a traceback."""

    def __init__(self, what: str, step_id: str | None, error: str) -> None:
        super().__init__()
        self.what = what
        self.step_id = step_id
        self.error = error


class DebriefReady(Message):
    """The training debrief (`steps.debrief.Debrief`), built from the journal."""

    def __init__(self, debrief: Any, error: str = "") -> None:
        super().__init__()
        self.debrief = debrief  # None when it could not be built: `error` says why
        self.error = error


class Exported(Message):
    """The debrief was written to `path` (or could not be: `error`)."""

    def __init__(self, path: str, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.error = error
