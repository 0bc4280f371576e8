"""The runbook file as typed models.

Types are checked by pydantic; what pydantic cannot see (actions that exist, gates
that point at real steps, placeholders that are defined) is checked by
`steps.loader`, which also turns every error into one line naming file and field.
"""

from __future__ import annotations

import re
import string
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = r"^[a-z][a-z0-9-]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | float) -> float:
    """'60s', '24h', '3d', '1.5h' or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (write it as 60s, 15m, 24h or 3d)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def placeholders(text: str | None) -> list[str]:
    """The `{names}` a command or instruction text refers to."""
    if not text:
        return []
    names = []
    for _, field_name, _, _ in string.Formatter().parse(text):
        if field_name is not None:
            names.append(field_name)
    return names


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Header(_Strict):
    """The SOP's header line."""

    mode: Literal["programmatic", "manual", "hybrid"]
    last_validated: date | None = None
    validation_method: str
    average_duration: str
    required_role: str
    elevated_role: str | None = None


class Input(_Strict):
    prompt: str
    choices: list[str] | None = None
    default: str | None = None
    required: bool = True
    pattern: str | None = None
    # What the pattern allows, in plain words: said instead of the regex when a value fails it.
    hint: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class Item(_Strict):
    id: str = Field(pattern=SLUG)
    text: str


class Prerequisite(_Strict):
    id: str = Field(pattern=SLUG)
    text: str
    # The step whose action checks this prerequisite (ticked when that step is done).
    checked_by: str | None = None


class Undo(_Strict):
    run: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    command: str | None = None
    manual: str | None = None
    summary: str | None = None
    # Manual only: what a person must do after a rollback (a password cannot come back).
    # The rollback says so, records it, and goes on without waiting for a "done".
    later: bool = False

    @model_validator(mode="after")
    def _one_way(self) -> Undo:
        if not self.run and not self.manual:
            raise ValueError("an undo needs 'run' (an action) or 'manual' (instructions)")
        if self.with_ and not self.run:
            raise ValueError("'with' gives parameters to an undo action; this undo has no 'run'")
        if self.later and (self.run or not self.manual):
            raise ValueError("'later' is for a manual undo a person does after the rollback (no 'run')")
        return self


_INPUT_REF = re.compile(r"^\s*\{([A-Za-z_][A-Za-z0-9_]*)\}\s*$")


class Gate(_Strict):
    after: str
    at_least: float
    why: str = ""
    # `at_least: "{observe_for}"`: the duration is that runbook input (the loader checks
    # its default is a duration; `at_least` then holds the default, for the plan).
    at_least_input: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("at_least"), str):
            match = _INPUT_REF.match(data["at_least"])
            if match:
                data = {**data, "at_least": 0, "at_least_input": match.group(1)}
        return data

    @field_validator("at_least", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Manual(_Strict):
    instructions: str
    # Said when a headless run cannot do this step and records it as skipped.
    headless: str = "manual step: nobody at the keyboard to do it"


def shell_command(argv: Any) -> str:
    """The command line an argv stands for, to read (placeholders left as they are)."""
    if not isinstance(argv, list):
        return ""
    safe = re.compile(r"^[\w@%+=:,./{}-]+$")
    return " ".join(str(a) if safe.match(str(a)) else "'" + str(a).replace("'", "'\"'\"'") + "'" for a in argv)


class Step(_Strict):
    id: str = Field(pattern=SLUG)
    number: str = Field(pattern=r"^\d+[a-z]?$")
    title: str
    why: str
    command: str
    run: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    manual: Manual | None = None
    undo: Undo | None = None
    confirm: Literal["auto", "yes", "typed"] = "yes"
    typed: str | None = None
    gate: Gate | None = None
    irreversible: bool = False
    point_of_no_return: bool = False
    # `second-operator`: the step waits until another identity runs `handrail approve`
    # (steps.roles; a roles file can ask it of every irreversible step in live mode).
    approval: Literal["second-operator"] | None = None
    # May the operator skip it? A guard (pre-checks) may not be skipped at all.
    skippable: bool = True
    # A safety step: when it was skipped, the next step's confirmation says this first.
    if_skipped: str | None = None
    # The shell step kind: `shell: {argv: [...], timeout, expect_exit, expect_output, env,
    # undo_argv}` is short for `run: shell.run` with those parameters (and an undo that
    # runs undo_argv). Kept as written so the loader names `shell.*` in its errors.
    shell: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shell_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("shell") is None:
            return data
        shell = data["shell"]
        if not isinstance(shell, dict):
            raise ValueError("shell: write it as a mapping, e.g. {argv: [echo, hello]}")
        for key in ("run", "with", "manual"):
            if key in data:
                raise ValueError(f"a shell step has no {key!r}: its 'shell' mapping says what runs")
        params = {k: v for k, v in shell.items() if k != "undo_argv"}
        data = {**data, "run": "shell.run", "with": params}
        data.setdefault("command", shell_command(shell.get("argv")))
        undo_argv = shell.get("undo_argv")
        if undo_argv is not None:
            if "undo" in data:
                raise ValueError("a shell step gives its undo as shell.undo_argv, not 'undo'")
            undo_with = {k: v for k, v in params.items() if k in ("timeout", "env")} | {"argv": undo_argv}
            data["undo"] = {"run": "shell.run", "with": undo_with, "command": shell_command(undo_argv), "summary": "run the undo command"}
        return data

    @field_validator("undo", mode="before")
    @classmethod
    def _undo_shorthand(cls, value: Any) -> Any:
        # `undo: iam.deactivate_new_key` is short for `undo: {run: iam.deactivate_new_key}`.
        return {"run": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _shape(self) -> Step:
        if not self.run and not self.manual:
            raise ValueError("a step needs 'run' (an action) or 'manual' (instructions)")
        if self.confirm == "typed" and not self.typed:
            raise ValueError("confirm: typed needs 'typed': the placeholder whose value the operator types")
        if self.typed and self.confirm != "typed" and not self.irreversible:
            raise ValueError("'typed' is only meaningful with confirm: typed, or on an irreversible step (the key id it deletes)")
        if self.point_of_no_return and not self.irreversible:
            raise ValueError("a point_of_no_return step must also be irreversible")
        if self.with_ and not self.run:
            raise ValueError("'with' gives parameters to an action; this step has no 'run'")
        return self

    @property
    def is_manual(self) -> bool:
        return self.run is None


class Rollback(_Strict):
    summary: str
    after_point_of_no_return: str


class Reference(_Strict):
    title: str
    url: str = Field(pattern=r"^https?://")


class Runbook(_Strict):
    id: str = Field(pattern=SLUG)
    title: str
    version: int = 1
    sop: str | None = None
    header: Header
    applies_to: str
    when_to_run: list[Item]
    inputs: dict[str, Input]
    prerequisites: list[Prerequisite] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    rollback: Rollback
    gotchas: list[Item] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    # Actions run when a session ends (done, rolled back or abandoned), e.g. releasing a mark.
    on_end: list[str] = Field(default_factory=list)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int:
        for i, step in enumerate(self.steps):
            if step.id == step_id:
                return i
        raise KeyError(step_id)
