"""The checklist: the runbook as a live list of steps, run one confirmed step at a time.

Every intent (run, skip, override, fast-forward, roll back) goes to the engine in a
thread worker; the engine's events come back as `EngineEvent` messages, the worker's
end as `WorkDone` or `WorkFailed`. Nothing here blocks the UI, and nothing a worker
raises reaches the operator as a traceback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from steps.clock import human_duration
from steps.engine import EngineError, Event
from steps.loader import render
from steps.plan import undo_text
from steps.secrets import redact
from steps.status import Needs, SessionStatus, StepStatus
from tui.hints import hints
from tui.messages import EngineEvent, PromptReady, RollbackDone, WorkDone, WorkFailed
from tui.screens.modals import AskScreen, ConfirmRunScreen, ManualStepScreen, ManualUndoScreen, ReasonScreen, TypedConfirmScreen
from tui.screens.rollback import RollbackScreen
from tui.states import step_status
from tui.widgets.banner import SessionBanner
from tui.widgets.detail import StepDetail, StepView, Wait
from tui.widgets.footer import SteadyFooter, fit_palette_key
from tui.widgets.repaint import WholeFrames
from tui.widgets.secret import SecretReveal, secret_in_use
from tui.widgets.steplist import Prerequisites, StepList

if TYPE_CHECKING:
    from steps.engine import Prompt, Session, UndoItem
    from steps.model import Step
    from tui.frozen import Frozen


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, EngineError):
        text = f"{type(exc).__name__}: {text}"
    return redact(text)


class ChecklistScreen(WholeFrames, Screen):
    BINDINGS = [
        Binding("u", "rollback", "Roll back", tooltip="Show the rollback plan; y runs it"),
        Binding("ctrl+z", "rollback", "Roll back", show=False, tooltip="Same as u"),
        Binding("r", "run", "Run", tooltip="Run the next step (it asks to confirm)"),
        Binding("s", "skip", "Skip", tooltip="Skip the next step with a reason (audited)"),
        Binding("o", "override", "Override", tooltip="Pass a closed gate or a block early, with a reason (audited)"),
        Binding("f", "fast_forward", "Fast-fwd", tooltip="Training: skip the wait or the gate on the simulated clock"),
        # q and ? before the keys that matter least: a footer too wide cuts these last.
        Binding("q", "quit_session", "Quit", tooltip="Quit; the session can be resumed (training: debrief offered)"),
        Binding("question_mark", "app.help", "Help", tooltip="Every key, screen by screen"),
        Binding("c", "copy", "Copy", tooltip="Copy the highlighted step's command to the clipboard"),
        Binding("v", "reveal", "Reveal", tooltip="Show the new secret for a few seconds (audited)"),
        Binding("d", "debrief", "Debrief", show=False, tooltip="Training: the debrief (verdicts, end state, timeline)"),
        Binding("b", "briefing", "Briefing", show=False, tooltip="Training: the scenario's briefing and goal, again"),
        Binding("n", "new_session", "New session", show=False, tooltip="Leave this session (resumable) for the screen it came from"),
    ]

    def __init__(self, session: Session, frozen: Frozen | None = None, reveal_seconds: float = 10.0) -> None:
        super().__init__()
        self.session = session
        self.frozen = frozen
        self.reveal_seconds = reveal_seconds
        self.prompt: Prompt | None = None  # the current step's, once computed
        self.outputs: dict[str, list[str]] = {}
        self.waits: dict[str, Wait] = {}
        self.notes: dict[str, str] = {}
        self.answers: dict[str, str] = {}
        self._approval_rechecked = False  # r asked for a fresh prompt while the step waited for a second operator
        self.busy: str | None = None  # what a step worker is doing
        self.running_step: str | None = None
        self.rolling_back = False
        self.fast_waits = False  # the running step's waits pass on the simulated clock
        self._prompt_request = 0
        self._footer_key: tuple | None = None
        self._detail_due = False  # a redraw of the detail is scheduled (_refresh_detail_soon)
        self._detail_drawn = 0.0  # when the stream last redrew it (time.monotonic)
        self.opened_at: float | None = None
        self._questions: list[threading.Event] = []
        world = getattr(session.wiring, "world", None)
        self.scenario = world.scenario if world is not None and session.mode == "training" else None
        self.debrief_seen = False  # training: the debrief was on screen once
        self._debriefed: str | None = None  # the finished status the debrief was shown for
        self.set_class(session.mode == "live", "-live")

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield SessionBanner(self.session, id="banner")
        if self.scenario is not None:
            goal = Static(Content.from_markup("[b $warning]Goal[/] $goal", goal=self.scenario.goal), id="goal")
            goal.tooltip = f"{self.scenario.goal}\n\n(b shows the whole briefing)"
            yield goal
        with Horizontal(id="main"):
            with Vertical(id="left"):
                steps = StepList(self.session, id="steps")
                steps.border_title = self.session.runbook.title
                yield steps
                yield Prerequisites(self.session, id="prereqs")
            yield StepDetail(self.session, self.reveal_seconds, id="detail")
        yield SteadyFooter(compact=True)

    def on_mount(self) -> None:
        self.opened_at = self.app.monotonic()
        self.session.listen(self._engine_listener)
        current = self.session.current()
        steps = self.query_one(StepList)
        steps.select_step(current.step.id if current else self.session.runbook.steps[-1].id)
        steps.focus()
        # The detail follows the highlight in the same turn as the key that moved it (a
        # watcher runs at once), so one frame shows both; OptionHighlighted would arrive
        # after the list's own frame, and cost a second one.
        self.watch(steps, "highlighted", self._highlight_moved, init=False)
        self.set_interval(1.0, self._tick)
        self.refresh_all()
        if current is not None:
            self.refresh_prompt()

    def on_unmount(self) -> None:
        for question in self._questions:  # a rollback waiting on a modal: answer "not done"
            question.set()

    def on_resize(self) -> None:
        self.set_class(self.size.height >= 36, "-roomy")
        fit_palette_key(self.query_one(SteadyFooter), self.size.width)

    # -- what is shown --------------------------------------------------------------------

    @property
    def current_id(self) -> str | None:
        state = self.session.current()
        return state.step.id if state else None

    @property
    def shown_step(self) -> str | None:
        return self.query_one(StepList).highlighted_step

    def refresh_all(self) -> None:
        self.query_one(StepList).refresh_states()
        self.query_one(Prerequisites).refresh_ticks()
        self.query_one(SessionBanner).refresh_text(self.elapsed)
        self.refresh_detail()
        self._refresh_footer()

    def _refresh_footer(self) -> None:
        """Re-check the bindings only when what `check_action` looks at has changed:
        each check rebuilds the footer."""
        session = self.session
        current = session.current()
        gate = session.gate_state(current.step) if current is not None else None
        key = (
            session.status,
            current.step.id if current else None,
            current.status if current else None,
            gate is not None and gate.open,
            secret_in_use(session),
        )
        if key != self._footer_key:
            self._footer_key = key
            self.refresh_bindings()

    @property
    def elapsed(self) -> float:
        return 0.0 if self.opened_at is None else self.app.monotonic() - self.opened_at

    def _tick(self) -> None:
        self.query_one(SessionBanner).refresh_text(self.elapsed)
        current = self.session.current()
        if current is not None and current.step.gate is not None:
            self.query_one(StepList).refresh_states()
            if self.shown_step == current.step.id:
                self.refresh_detail()

    def refresh_detail(self) -> None:
        step_id = self.shown_step
        if step_id is not None:
            self.query_one(StepDetail).show(self.view(step_id))

    def view(self, step_id: str) -> StepView:
        session = self.session
        state = session.states[step_id]
        current_id = self.current_id
        status = step_status(session, state, current_id)
        prompt = self.prompt if self.prompt is not None and self.prompt.step.id == step_id else None
        step = state.step
        values = session.values()
        command = prompt.command if prompt else render(step.command, values)
        undo = render(undo_text(step), values)
        if state.status is StepStatus.DONE and values.get(f"changed:{step_id}") == "no":
            undo = "none needed: it changed nothing"  # not "irreversible" for a step that did nothing
        gate = session.gate_state(step) if step_id == current_id else None
        return StepView(
            state=state,
            status=status,
            command=command,
            undo=undo,
            prompt=prompt,
            gate=gate,
            output=self.outputs.get(step_id, []),
            wait=self.waits.get(step_id) if status is StepStatus.RUNNING else None,
            hints=hints(
                session,
                step_id,
                status,
                busy=self.busy,
                rolling_back=self.rolling_back,
                waiting=any(w.left > 0 for w in self.waits.values()),
                prompt=prompt,
            ),
            note=self.notes.get(step_id, ""),
            secret_here=self._secret_here(step),
        )

    @staticmethod
    def _secret_here(step: Step) -> bool:
        from steps.actions import registry

        spec = registry().get(step.run or "")
        return step.manual is not None or bool(spec and "new_secret" in spec.produces_secrets)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        session = self.session
        current = session.current()
        if action == "fast_forward":
            return session.wiring.clock.simulated
        if action in ("debrief", "briefing"):
            return self.scenario is not None
        if action == "reveal":  # not for a key a rollback has deactivated
            return secret_in_use(session)
        if action in ("run", "skip"):
            return current is not None or None
        if action == "override":
            if current is None:
                return False
            return session.obstacle(current) in (Needs.BLOCKED, Needs.GATE)
        return True

    # -- engine events (from worker threads) -------------------------------------------------

    def _engine_listener(self, event: Event) -> None:
        if self.frozen is not None:  # each step's random ids depend on that step alone
            if event.kind == "step" and getattr(event.data, "status", None) is StepStatus.RUNNING:
                self.frozen.seed_moto(f"{event.step_id}:{event.data.attempts}")
            elif event.kind == "rollback" and event.data == "started":
                self.frozen.seed_moto(f"undo:{event.step_id}")
        self.post_message(EngineEvent(event))

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        step_id = event.step_id
        if event.kind == "step" and step_id:
            if event.data.status is StepStatus.RUNNING:
                self.running_step = step_id
                self.outputs[step_id] = []
                self.notes.pop(step_id, None)
                self.query_one(StepList).select_step(step_id)
            else:
                self.waits.pop(step_id, None)
                if self.running_step == step_id:
                    self.running_step = None
            self.prompt = None
        elif event.kind == "output" and step_id:
            self.outputs.setdefault(step_id, []).append(str(event.data))
        elif event.kind == "progress" and step_id:
            what, done, total = event.data
            self.waits[step_id] = Wait(str(what), float(done), float(total))
        elif event.kind == "rollback" and step_id:
            lines = self.outputs.setdefault(step_id, [])
            if event.data == "started":
                self.query_one(StepList).select_step(step_id)
                lines.append("rollback: undoing this step…")
            else:
                lines.append(f"rollback: {'undone' if event.data.status == 'done' else 'FAILED'}: {event.data.summary}")
                lines.extend(f"  {line}" for line in event.data.evidence)
        if event.kind in ("progress", "output"):
            self._refresh_detail_soon()  # only the detail shows them
        else:
            self.refresh_all()

    STREAM_INTERVAL = 0.1  # seconds between redraws for a stream of progress or output

    def _refresh_detail_soon(self) -> None:
        """Progress and output come as streams (each poll of a wait, each line of a
        command): redraw the detail once for the events already queued, and at most
        every STREAM_INTERVAL, not once per event."""
        if self._detail_due:
            return
        self._detail_due = True
        wait = self._detail_drawn + self.STREAM_INTERVAL - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self._flush_detail)
        else:
            self.call_later(self._flush_detail)

    def _flush_detail(self) -> None:
        self._detail_due = False
        self._detail_drawn = time.monotonic()
        self.refresh_detail()

    # -- workers ------------------------------------------------------------------------

    def refresh_prompt(self, then_run: bool = False) -> None:
        """Compute the current step's prompt in a worker; a newer request supersedes it."""
        self._prompt_request += 1
        self._compute_prompt(self._prompt_request, then_run)

    @work(thread=True, exclusive=True, group="prompt", exit_on_error=False)
    def _compute_prompt(self, request: int, then_run: bool) -> None:
        try:
            state = self.session.current()
            if state is None:
                return
            prompt = self.session.prompt(state.step.id)
        except Exception as exc:
            self.post_message(WorkFailed("prepare", None, _error_text(exc)))
            return
        self.post_message(PromptReady(prompt, then_run, request))

    @work(thread=True, exclusive=True, group="step", exit_on_error=False)
    def intent(self, what: str, step_id: str | None, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:
            self.post_message(WorkFailed(what, step_id, _error_text(exc)))
            return
        self.post_message(WorkDone(what, step_id))

    @work(thread=True, exclusive=True, group="rollback", exit_on_error=False)
    def rollback(self) -> None:
        try:
            ok, results = self.session.rollback(manual_done=self._ask_manual_undo)
        except Exception as exc:
            self.post_message(WorkFailed("rollback", None, _error_text(exc)))
            return
        self.post_message(RollbackDone(ok, results))

    def _ask_manual_undo(self, item: UndoItem) -> bool:
        """Called by the engine, in the rollback worker: ask the operator, wait for the answer."""
        answered = threading.Event()
        answer: list[bool] = [False]

        def ask() -> None:
            def done(ok: bool | None) -> None:
                answer[0] = bool(ok)
                answered.set()

            self.app.push_screen(ManualUndoScreen(item), done)

        self._questions.append(answered)
        self.app.call_from_thread(ask)
        answered.wait()
        self._questions.remove(answered)
        return answer[0]

    def start_intent(self, what: str, step_id: str | None, call: Callable[[], Any], busy: str) -> None:
        self.busy = busy
        self.refresh_all()
        self.intent(what, step_id, call)

    def on_prompt_ready(self, message: PromptReady) -> None:
        if message.request != self._prompt_request:
            return  # superseded by a newer request
        prompt = message.prompt
        if prompt.step.id != self.current_id:  # stale: the session moved on meanwhile
            if not self.busy and self.current_id:
                self.refresh_prompt(then_run=message.then_run)
            return
        self.prompt = prompt
        self.refresh_all()
        if message.then_run:
            self._confirm_and_run(prompt)

    def on_rollback_done(self, message: RollbackDone) -> None:
        self.rolling_back = False
        if message.ok:
            self.notify(f"Session {self.session.id} rolled back: {len(message.results)} step(s) undone.", title="Rolled back")
        else:
            item, outcome = message.results[-1]
            self.notify(
                f"Rollback stopped at step {item.step.number}: {outcome.summary}. Fix it, then u runs the rest.",
                title="Rollback stopped",
                severity="error",
            )
        self._after_work()

    def on_work_done(self, message: WorkDone) -> None:
        self.busy = None
        self._end_fast_waits()
        if message.what == "run" and message.step_id:
            state = self.session.states[message.step_id]
            if state.status.stopped:
                self.notify(
                    f"Step {state.step.number} {state.status}: {state.summary}",
                    severity="error",
                    title=f"Step {state.step.number} {state.status}",
                )
        self._after_work(follow=message.what != "run")

    def _after_work(self, follow: bool = True) -> None:
        if follow:
            self._follow_current()
        self.refresh_all()
        if self.current_id and not self.rolling_back:
            self.refresh_prompt()
        self._debrief_when_finished()

    def _debrief_when_finished(self) -> None:
        """Training: the session has just finished (done, rolled back): the debrief."""
        status = self.session.status
        if (
            self.scenario is None
            or status not in (SessionStatus.DONE, SessionStatus.ROLLED_BACK)
            or self._debriefed == status
            or not self.idle
        ):
            return
        self._debriefed = status
        if self.app.screen is self:
            self.action_debrief()

    def on_work_failed(self, message: WorkFailed) -> None:
        if message.what == "rollback":
            self.rolling_back = False
        elif message.what != "prepare":
            self.busy = None
            self._end_fast_waits()
        step_id = message.step_id or self.current_id
        if step_id:
            self.notes[step_id] = message.error
        self.notify(message.error, title=f"Could not {message.what}", severity="error")
        self.refresh_all()
        if message.what != "prepare" and self.current_id and not self.rolling_back:
            self.refresh_prompt()

    def _follow_current(self) -> None:
        current = self.current_id
        if current is not None:
            self.query_one(StepList).select_step(current)

    @property
    def idle(self) -> bool:
        return self.busy is None and not self.rolling_back

    # -- the list -------------------------------------------------------------------------

    def _highlight_moved(self, highlighted: int | None) -> None:
        self.refresh_detail()

    # -- actions --------------------------------------------------------------------------

    def _refuse_if_busy(self) -> bool:
        if self.rolling_back:
            self.notify("a rollback is running", severity="warning")
            return True
        if self.busy:
            hint = " (f fast-forwards its wait)" if self.session.wiring.clock.simulated and self.waits else ""
            self.notify(f"{self.busy}: wait for it to finish{hint}", severity="warning")
            return True
        return False

    def action_run(self) -> None:
        if self._refuse_if_busy():
            return
        state = self.session.current()
        if state is None:
            self.notify(f"No step left: the session is {self.session.status}.", severity="warning")
            return
        if self.shown_step != state.step.id:  # show the next step first: nothing runs unseen
            self.query_one(StepList).select_step(state.step.id)
            return
        if self.prompt is not None and self.prompt.step.id == state.step.id:
            self._confirm_and_run(self.prompt)
        else:
            self.refresh_prompt(then_run=True)

    def _confirm_and_run(self, prompt: Prompt) -> None:
        if not self.idle or self.app.screen is not self:
            return  # a step is running, or a question is already open
        session, step = self.session, prompt.step
        if prompt.needs is Needs.GATE:
            assert prompt.gate is not None
            hint = "f fast-forwards (training), " if prompt.fast_forward else ""
            self.notify(f"{prompt.gate.describe()}. {hint}o passes it early with a reason.", title="The gate is closed", severity="warning")
            return
        if prompt.needs is Needs.APPROVAL and prompt.approval is not None:
            if not self._approval_rechecked:  # the approval may have come in since: ask afresh once
                self._approval_rechecked = True
                self.refresh_prompt(then_run=True)
                return
            self._approval_rechecked = False
            self.notify(prompt.approval.describe(), title="Waiting for a second operator", severity="warning", timeout=20)
            return
        self._approval_rechecked = False
        attempts = session.states[step.id].attempts
        attempt = attempts + 1 if attempts else None  # a retry says which one it is
        if prompt.confirm is Needs.MANUAL:
            self.app.push_screen(
                ManualStepScreen(prompt, session, self.reveal_seconds, attempt), lambda choice: self._manual_answer(prompt, choice)
            )
        elif prompt.confirm is Needs.RUN:
            self._run(step.id)
        elif prompt.confirm is Needs.TYPED:
            self.app.push_screen(TypedConfirmScreen(prompt, attempt), lambda answer: answer and self._run(step.id, answer=answer))
        else:
            self.app.push_screen(ConfirmRunScreen(prompt, attempt), lambda ok: ok and self._run(step.id, how="confirmed in the app"))

    def _manual_answer(self, prompt: Prompt, choice: str | None) -> None:
        if choice == "done":
            self._run(prompt.step.id)
        elif choice == "skip":
            self.action_skip()

    def _run(self, step_id: str, answer: str | None = None, override: str | None = None, how: str = "typed") -> None:
        if answer is not None:
            self.answers[step_id] = answer
        step = self.session.states[step_id].step
        self.start_intent(
            "run", step_id, lambda: self.session.run(step_id, answer=answer, override=override, how=how), f"running step {step.number}"
        )

    def action_skip(self) -> None:
        if self._refuse_if_busy():
            return
        state = self.session.current()
        if state is None:
            return
        refusal = self.session.skip_refusal(state)
        if refusal:
            self.notify(refusal, title="Cannot be skipped", severity="error", timeout=12)
            return
        step = state.step
        explanation = (
            f"Step {step.number} ({step.title}) will be recorded as skipped, with your reason, in the journal and the "
            "audit log. Later steps may need what it would have done."
        )
        self.app.push_screen(
            ReasonScreen(f"Skip step {step.number}?", explanation),
            lambda reason: (
                reason and self.start_intent("skip", step.id, lambda: self.session.skip(step.id, reason), f"skipping step {step.number}")
            ),
        )

    def action_override(self) -> None:
        if self._refuse_if_busy():
            return
        state = self.session.current()
        if state is None:
            return
        step = state.step
        obstacle = self.session.obstacle(state)
        if obstacle is Needs.BLOCKED:
            explanation = (
                f"Step {step.number} stopped on evidence: {state.summary}\n\nOverriding runs it again past that check. "
                "Your reason goes to the audit log."
            )
            self.app.push_screen(
                ReasonScreen(f"Override the block on step {step.number}?", explanation),
                lambda reason: reason and self._run(step.id, answer=self.answers.get(step.id), override=reason),
            )
            return
        gate = self.session.gate_state(step)
        if obstacle is Needs.GATE and gate is not None:
            explanation = f"{gate.describe()}.\n{gate.why}\n\nPassing the gate early is recorded with your reason in the audit log."
            self.app.push_screen(
                ReasonScreen(f"Pass the gate of step {step.number} early?", explanation),
                lambda reason: (
                    reason
                    and self.start_intent(
                        "override the gate", step.id, lambda: self.session.override_gate(step.id, reason), "passing the gate"
                    )
                ),
            )
            return
        self.notify("Nothing to override: the next step is neither blocked nor behind a closed gate.", severity="warning")

    def action_fast_forward(self) -> None:
        session = self.session
        clock = session.wiring.clock
        if not clock.simulated:
            self.notify("Live time cannot be skipped: o passes a gate early with a reason (audited).", severity="warning")
            return
        running = self.running_step
        wait = self.waits.get(running) if running else None
        if wait is not None and wait.left > 0:
            if not self.fast_waits:
                self._fast_forward_waits(running, wait)
            return
        if self._refuse_if_busy():
            return
        state = session.current()
        if state is not None and session.obstacle(state) is Needs.GATE:
            step_id = state.step.id
            self.start_intent("fast-forward", step_id, lambda: session.fast_forward(step_id), "fast-forwarding the simulated clock")
            return
        self.notify("Nothing to fast-forward: no wait is running and no gate is closed.", severity="warning")

    def _fast_forward_waits(self, step_id: str, wait: Wait) -> None:
        """The rest of this step's waits pass on the simulated clock, as in a headless
        training run: a poll still polls, so the evidence says when the key really
        worked (not 'after the deadline')."""
        self.session.skip_waits(step_id, wait.what, wait.left)
        self.fast_waits = True
        self.notify(
            f"Fast-forward: the rest of this wait passes on the simulated clock (at most {human_duration(wait.left)}).",
            title="Fast-forward",
        )

    def _end_fast_waits(self) -> None:
        self.fast_waits = False  # the engine ends the skipped waits with the step

    def action_copy(self) -> None:
        step_id = self.shown_step
        if step_id is None:
            return
        view = self.view(step_id)
        self.app.copy_to_clipboard(view.command)
        self.notify(f"Copied the command of step {view.state.step.number}.", title="Copied")

    def action_reveal(self) -> None:
        if not self.query_one(SecretReveal).ask(self.shown_step or self.current_id):
            self.notify("There is no new secret to reveal (none in memory, or its key was rolled back).", severity="warning")

    def action_rollback(self) -> None:
        session = self.session
        if self.rolling_back:
            self.notify("A rollback is already running.", severity="warning")
            return
        if session.status in (SessionStatus.ROLLED_BACK, SessionStatus.ABANDONED):
            self.notify(f"The session is {session.status}: nothing to roll back.", severity="warning")
            return
        try:
            plan = session.rollback_plan()
        except Exception as exc:
            self.notify(_error_text(exc), title="No rollback plan", severity="error")
            return
        note = ""
        if self.busy:
            note = f"Now {self.busy}: the rollback starts when it ends, and undoes it too if it completes."
        self.app.push_screen(RollbackScreen(session, plan, note), self._rollback_confirmed)

    def _rollback_confirmed(self, ok: bool | None) -> None:
        if ok:
            self.rolling_back = True
            self.refresh_all()
            self.rollback()

    def action_new_session(self) -> None:
        if not self.idle:
            self._refuse_if_busy()
            return
        self.app.leave_session(back_to_start=True)

    def action_debrief(self) -> None:
        from tui.screens.debrief import DebriefScreen

        if self.scenario is None:
            self.notify("The debrief is for training sessions.", severity="warning")
            return
        if not self.idle:
            self._refuse_if_busy()
            return
        if any(isinstance(s, DebriefScreen) for s in self.app.screen_stack):
            return
        self.debrief_seen = True
        self.app.push_screen(DebriefScreen(self.session))

    def action_briefing(self) -> None:
        from tui.launcher import Catalog, scenario_choice
        from tui.screens.briefing import BriefingScreen

        if self.scenario is None:
            self.notify("The briefing is for training sessions.", severity="warning")
            return
        sc = self.scenario
        ref = sc.source or sc.id
        catalog = getattr(self.app, "catalog", None) or Catalog()
        self.app.push_screen(BriefingScreen(catalog.scenario(ref) or scenario_choice(ref, sc), catalog, session=self.session))

    def action_quit_session(self, offer_debrief: bool = True) -> None:
        if self.idle:
            if offer_debrief and self.scenario is not None and not self.debrief_seen:
                from tui.screens.debrief import QuitTrainingScreen

                self.app.push_screen(QuitTrainingScreen(self.session.id, self.session.status), self._quit_answer)
                return
            self.app.leave_session()
            return
        what = self.busy or "rolling back"
        text = (
            f"Handrail is {what}. Quitting now stops it where it is: the journal shows the step as started "
            f"and not finished, and on resume it runs again (every step looks at the world before it acts). "
            f"Resume from the start screen, or with `handrail resume {self.session.id}`."
        )
        self.app.push_screen(
            AskScreen("Quit in the middle of a step?", text, yes="Quit now", no="Stay"),
            lambda ok: ok and self.app.leave_session(abandon_work=True),
        )

    def _quit_answer(self, choice: str | None) -> None:
        if choice == "debrief":
            self.action_debrief()
        elif choice == "quit":
            self.app.leave_session()
