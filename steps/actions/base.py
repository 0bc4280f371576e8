"""What an action is: a function of a step context that returns an Outcome.

Actions look at the world before they act (so running one twice is safe, and resume is
"run the first unfinished step again"), never ask which mode they run in, and keep
secrets in `ctx.secrets` (memory) only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from steps.clock import Clock, Progress
from steps.model import parse_duration
from steps.secrets import Secret, redact
from steps.status import StepStatus

if TYPE_CHECKING:
    from steps.wiring import Wiring

Status = StepStatus


@dataclass
class Preflight:
    """A dry run's read-only look at the places a step would write: which of them are not
    ready (a dry run that finds one ends non-zero), and the evidence lines."""

    not_ready: list[str]
    lines: list[str]


@dataclass
class Outcome:
    status: Status
    summary: str
    evidence: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    # False when the action found the world already as it should be and changed nothing.
    changed: bool = True

    def __post_init__(self) -> None:
        # Whatever an action wrote, no known secret leaves it.
        self.summary = redact(self.summary)
        self.evidence = [redact(line) for line in self.evidence]
        self.facts = {k: redact(str(v)) for k, v in self.facts.items()}

    @classmethod
    def done(cls, summary: str, evidence: list[str] | None = None, **facts: str) -> Outcome:
        return cls(StepStatus.DONE, summary, evidence or [], dict(facts))

    @classmethod
    def failed(cls, summary: str, evidence: list[str] | None = None, **facts: str) -> Outcome:
        return cls(StepStatus.FAILED, summary, evidence or [], dict(facts))

    @classmethod
    def blocked(cls, summary: str, evidence: list[str] | None = None, **facts: str) -> Outcome:
        """Stopped on evidence: passing needs an override with a typed reason."""
        return cls(StepStatus.BLOCKED, summary, evidence or [], dict(facts))

    @classmethod
    def refused(cls, summary: str, evidence: list[str] | None = None, remedy: str = "", **facts: str) -> Outcome:
        """A guard said no: no skip, no override. `remedy` says what to do instead."""
        return cls(StepStatus.REFUSED, summary, evidence or [], dict(facts, **({"remedy": remedy} if remedy else {})))


@dataclass
class Choice:
    """One option of a typed choice (e.g. which of two Active keys to retire)."""

    value: str
    label: str


@dataclass
class Preview:
    """A read-only look before the operator confirms: what the step will do.

    An action may raise the step's confirmation to `typed` (with the value to type or
    the choices to pick from by typing), e.g. when it would retire an Active key.
    """

    lines: list[str] = field(default_factory=list)
    confirm: Literal["auto", "yes", "typed"] | None = None
    expect: str | None = None
    choices: list[Choice] = field(default_factory=list)
    prompt: str | None = None
    nothing_to_do: bool = False

    def __post_init__(self) -> None:
        self.lines = [redact(line) for line in self.lines]


class ActionFailed(Exception):
    """Raised inside an action for a failure the operator should read as one line."""

    def __init__(self, summary: str, evidence: list[str] | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.evidence = evidence or []

    def outcome(self) -> Outcome:
        return Outcome.failed(self.summary, self.evidence)


class ActionRefused(ActionFailed):
    """A guard refuses (the wrong identity, a key in use, another rotation in flight).
    Not a failure to skip past: the step cannot be skipped or overridden."""

    def __init__(self, summary: str, evidence: list[str] | None = None, remedy: str = "") -> None:
        super().__init__(summary, evidence)
        self.remedy = remedy

    def outcome(self) -> Outcome:
        return Outcome.refused(self.summary, self.evidence, self.remedy)


@dataclass
class StepContext:
    """Everything an action may use. Built by the engine for one run of one step."""

    session_id: str
    runbook_id: str
    method: str
    step_id: str
    inputs: Mapping[str, str]
    facts: Mapping[str, str]
    secrets: dict[str, Secret]
    params: Any
    wiring: Wiring
    answer: str | None = None
    override: str | None = None
    actor: str = ""
    audit: Any = None
    emit: Callable[[str], None] = lambda line: None
    progress: Progress = lambda what, done, total: None
    # Writes facts to the journal at once, before the outcome: what the action is about
    # to do (e.g. the instant it asks AWS for a change), for a run after a crash to read.
    record: Callable[[dict[str, str]], None] = lambda facts: None

    @property
    def clock(self) -> Clock:
        return self.wiring.clock

    def now(self) -> datetime:
        return self.wiring.clock.now()

    def fact(self, name: str) -> str:
        try:
            return self.facts[name]
        except KeyError:
            raise ActionFailed(f"missing fact {name!r}: an earlier step has not run") from None

    def value(self, name: str) -> str:
        """An input or a fact, inputs first."""
        if name in self.inputs and self.inputs[name] not in (None, ""):
            return self.inputs[name]
        return self.fact(name)


@dataclass(frozen=True)
class ActionSpec:
    name: str
    fn: Callable[[StepContext], Outcome]
    title: str
    command: str | None = None
    needs: frozenset[str] = frozenset()
    produces: frozenset[str] = frozenset()
    needs_secrets: frozenset[str] = frozenset()
    produces_secrets: frozenset[str] = frozenset()
    mutates: bool = False
    params: type[Params] | None = None
    preview: Callable[[StepContext], Preview] | None = None
    # A dry run's read-only look at every system the action would change (evidence
    # lines, one verdict per system): the engine calls it where it does not run the action.
    preflight: Callable[[StepContext], Preflight] | None = None
    # An action that needs something of the wiring (e.g. an inventory entry): returns
    # None when it can run, else the reason it cannot (the step then falls back to
    # its manual instructions).
    available: Callable[[Wiring, Mapping[str, str]], str | None] | None = None


class Params(BaseModel):
    """Action parameters (a step's `with:`): unknown ones are refused, and every float
    field takes a duration as the runbook writes it ('60s', '24h') or a number of seconds."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None and cls.model_fields[info.field_name].annotation is float:
            return parse_duration(value)
        return value

    def needs(self) -> dict[str, str]:
        """{parameter: fact} for parameters whose value makes the action rely on a fact
        an earlier step must produce (the loader checks the runbook provides it)."""
        return {}

    def templates(self) -> dict[str, tuple[str, bool]]:
        """{where: (text, a secret may fill it)} for parameters with {placeholders} the
        action fills at run time (the loader checks each is an input, a fact or, where
        allowed, a secret held in memory)."""
        return {}


class WaitParams(Params):
    """A poll: give up after `deadline`, check every `interval`."""

    deadline: float = 60.0
    interval: float = 2.0
