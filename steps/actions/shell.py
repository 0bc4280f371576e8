"""The shell step kind: a team's own command as a runbook step, without Python.

    shell: {argv: [...], timeout: 30s, expect_exit: 0, expect_output: "...", env: {NAME: "{x}"}, undo_argv: [...]}

The command is an argument list, never a shell string: each element is filled from
inputs and facts, and no secret may fill one (a command line is visible to every user
of the machine, in `ps`). Secrets reach the command through its environment only.
Output is redacted like everything else the engine writes.
"""

from __future__ import annotations

import os
import re
import signal
import string
import subprocess
from typing import Any

from pydantic import Field, field_validator

from steps.actions import action
from steps.actions.base import ActionFailed, Outcome, Params, StepContext
from steps.clock import human_duration
from steps.secrets import REDACTOR, Secret, redact

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Evidence keeps the tail of the output: enough to see what happened, never a flood.
_MAX_LINES, _MAX_CHARS = 40, 8000


class ShellParams(Params):
    argv: list[str] = Field(min_length=1)
    timeout: float = 30.0
    expect_exit: int | list[int] = 0
    # A regular expression searched in stdout and stderr together (plain text works too).
    expect_output: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("argv")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("argv[0] is the program to run: it cannot be empty")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 3600:
            raise ValueError("a timeout is more than 0s and at most 1h")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @field_validator("expect_output")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            _matcher(value)
        return value

    def templates(self) -> dict[str, tuple[str, bool]]:
        out = {f"argv[{i}]": (arg, False) for i, arg in enumerate(self.argv)}
        out.update({f"env.{name}": (text, True) for name, text in self.env.items()})
        return out

    def exits(self) -> list[int]:
        return self.expect_exit if isinstance(self.expect_exit, list) else [self.expect_exit]


def _matcher(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text, re.MULTILINE)
    except re.error:
        return re.compile(re.escape(text))  # not a regex: the text itself


def _fill(text: str, where: str, values: dict[str, Any]) -> str:
    out = []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        out.append(literal)
        if name is None:
            continue
        if name not in values or values[name] in (None, ""):
            raise ActionFailed(f"{where}: {{{name}}} has no value yet (an earlier step has not run)")
        value = values[name]
        out.append(value.reveal() if isinstance(value, Secret) else str(value))
    return "".join(out)


def _tail(output: str) -> list[str]:
    lines = output[-_MAX_CHARS:].splitlines()
    cut = len(lines) > _MAX_LINES or len(output) > _MAX_CHARS
    return (["  (earlier output cut)"] if cut else []) + ["  | " + line for line in lines[-_MAX_LINES:]]


@action(
    "shell.run",
    title="Run a command",
    command="<argv>",
    mutates=True,
    params=ShellParams,
)
def run(ctx: StepContext) -> Outcome:
    params: ShellParams = ctx.params
    values = dict(ctx.facts)
    argv = [_fill(arg, f"argv[{i}]", values) for i, arg in enumerate(params.argv)]
    for i, arg in enumerate(argv):
        if REDACTOR.contains_secret(arg):
            raise ActionFailed(f"argv[{i}] would carry a secret on the command line: pass it through env instead")
    env = {name: _fill(text, f"env.{name}", {**values, **ctx.secrets}) for name, text in params.env.items()}
    shown = " ".join(redact(a) for a in argv)
    evidence = [f"$ {shown}"] + ([f"environment: {', '.join(sorted(env))}"] if env else [])
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,  # its own process group: a timeout ends the command and its children
        )
    except OSError as exc:
        raise ActionFailed(f"cannot run {argv[0]}: {exc.strerror or exc}", evidence) from None
    timed_out = False
    try:
        raw, _ = proc.communicate(timeout=params.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raw, _ = proc.communicate()
    output = redact(raw.decode("utf-8", errors="replace"))
    evidence += _tail(output)
    if timed_out:
        return Outcome.failed(f"{argv[0]} did not finish within {human_duration(params.timeout)}: stopped", evidence)
    evidence.append(f"exit {proc.returncode}")
    if proc.returncode not in params.exits():
        expected = " or ".join(str(c) for c in params.exits())
        return Outcome.failed(f"{argv[0]} exited {proc.returncode}, expected {expected}", evidence)
    if params.expect_output is not None:
        if not _matcher(params.expect_output).search(output):
            return Outcome.failed(f"{argv[0]} exited {proc.returncode} but its output does not match {params.expect_output!r}", evidence)
        evidence.append(f"output matches {params.expect_output!r}")
    return Outcome.done(f"{argv[0]} exited {proc.returncode}" + (" (output as expected)" if params.expect_output else ""), evidence)
