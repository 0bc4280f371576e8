"""The shell step kind: a command as an argument list, secrets through the environment
only, a timeout, expectations on exit code and output, an undo command, output redacted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

SECRET_VALUE = "sk-live-7f3a9c2e5b1d4f60a8e2"


def _register_secret_action() -> None:
    """A test action that holds a secret in memory, as create-key does."""
    from steps.actions import action, registry
    from steps.actions.base import Outcome, StepContext
    from steps.secrets import Secret

    if "test.hold_token" in registry():
        return

    @action("test.hold_token", title="Hold a token in memory", produces_secrets=("api_token",), mutates=False)
    def hold_token(ctx: StepContext) -> Outcome:
        outcome = Outcome.done("holding the token in memory")
        outcome.secrets["api_token"] = Secret(SECRET_VALUE, "api_token")
        return outcome


def runbook(steps: list[dict[str, Any]], **inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "team-steps",
        "title": "A team's own steps",
        "header": {"mode": "programmatic", "validation_method": "tests", "average_duration": "1m", "required_role": "ops"},
        "applies_to": "tests",
        "when_to_run": [{"id": "always", "text": "in tests"}],
        "inputs": {"workdir": {"prompt": "a folder", "required": False}, **inputs},
        "steps": steps,
        "rollback": {"summary": "undo the commands", "after_point_of_no_return": "none"},
    }


def shell_step(step_id: str, number: str, shell: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"id": step_id, "number": number, "title": f"run {step_id}", "why": "a team's own step", "shell": shell, **more}


@pytest.fixture
def local_wiring():
    """A wiring with a real clock and a fixed identity: shell steps need no AWS."""
    from steps.clock import Clock
    from steps.wiring import Wiring

    class Local(Wiring):
        def __init__(self) -> None:
            super().__init__(Clock())

        def identity(self) -> tuple[str, str]:
            return "123456789012", "arn:aws:iam::123456789012:user/tester"

    return Local


@pytest.fixture
def start(make_engine, write_yaml, local_wiring):
    _register_secret_action()

    def go(steps: list[dict[str, Any]], inputs: dict[str, str] | None = None, **runbook_inputs: Any):
        path = write_yaml("team.yaml", runbook(steps, **runbook_inputs))
        engine = make_engine()
        return engine, engine.start(path, inputs or {}, local_wiring())

    return go


def test_a_command_that_succeeds_shows_its_output_and_fills_its_arguments(start, tmp_path: Path) -> None:
    step = shell_step("greet", "1", {"argv": ["sh", "-c", 'echo "hello $1"', "sh", "{workdir}"], "expect_output": "hello .*"})
    _, session = start([step], {"workdir": str(tmp_path)})
    outcome = session.run("greet", answer=None)
    assert outcome.status == "done", outcome
    assert f"  | hello {tmp_path}" in outcome.evidence and "exit 0" in outcome.evidence
    assert session.prompt("greet").command == f"sh -c 'echo \"hello $1\"' sh {tmp_path}"


def test_a_command_that_misses_its_expectations_fails(start) -> None:
    steps = [
        shell_step("exits", "1", {"argv": ["sh", "-c", "echo nope; exit 3"]}),
        shell_step("says", "2", {"argv": ["echo", "all good"], "expect_output": "^ready$"}),
        shell_step("allowed", "3", {"argv": ["sh", "-c", "exit 3"], "expect_exit": [0, 3]}),
    ]
    _, session = start(steps)
    outcome = session.run("exits")
    assert outcome.status == "failed" and outcome.summary == "sh exited 3, expected 0"
    assert "  | nope" in outcome.evidence
    session.skip("exits", "test")
    outcome = session.run("says")
    assert outcome.status == "failed" and "does not match '^ready$'" in outcome.summary
    session.skip("says", "test")
    assert session.run("allowed").status == "done"


def test_a_command_that_runs_too_long_is_killed_with_its_children(start) -> None:
    step = shell_step("hangs", "1", {"argv": ["sh", "-c", "echo started; sleep 30 & sleep 30"], "timeout": "1s"})
    _, session = start([step])
    began = time.monotonic()
    outcome = session.run("hangs")
    assert time.monotonic() - began < 10
    assert outcome.status == "failed" and outcome.summary == "sh did not finish within 1.0 s: stopped"
    assert "  | started" in outcome.evidence


def test_a_secret_reaches_the_command_through_its_environment_and_its_output_is_redacted(start, handrail_home: Path) -> None:
    steps = [
        {
            "id": "hold",
            "number": "1",
            "title": "hold a token",
            "why": "the test",
            "command": "hold it",
            "run": "test.hold_token",
            "confirm": "auto",
        },
        shell_step(
            "use",
            "2",
            {"argv": ["sh", "-c", 'echo "token is $API_TOKEN"; echo "$API_TOKEN" >&2'], "env": {"API_TOKEN": "{api_token}"}},
        ),
    ]
    engine, session = start(steps)
    session.run("hold")
    outcome = session.run("use")
    assert outcome.status == "done"
    assert "  | token is ****" in outcome.evidence and "environment: API_TOKEN" in outcome.evidence
    assert not any(SECRET_VALUE in line for line in outcome.evidence)
    session.close()
    for path in handrail_home.rglob("*"):
        if path.is_file():
            assert SECRET_VALUE.encode() not in path.read_bytes(), path


def test_the_undo_command_runs_in_a_rollback(start, tmp_path: Path) -> None:
    made = tmp_path / "made"
    step = shell_step("make", "1", {"argv": ["touch", "{workdir}/made"], "undo_argv": ["rm", "{workdir}/made"]})
    _, session = start([step], {"workdir": str(tmp_path)})
    assert session.run("make").status == "done" and made.exists()
    plan = session.rollback_plan()
    assert [item.command for item in plan.items] == [f"rm {tmp_path}/made"]
    ok, results = session.rollback()
    assert ok and results[0][1].status == "done"
    assert not made.exists()


# -- the file ---------------------------------------------------------------------------------


def check(cli, write_yaml, steps: list[dict[str, Any]]):
    path = write_yaml("team.yaml", runbook(steps))
    return cli("check", path)


def test_handrail_check_keeps_secrets_off_the_command_line(cli, write_yaml) -> None:
    _register_secret_action()
    hold = {"id": "hold", "number": "1", "title": "hold", "why": "the test", "command": "hold it", "run": "test.hold_token"}
    result = check(cli, write_yaml, [hold, shell_step("leak", "2", {"argv": ["curl", "-u", "me:{api_token}", "https://x"]})])
    assert result.exit_code == 2
    assert "steps[1].shell.argv[2]: {api_token} is a secret: it never goes on a command line; pass it through env" in result.output
    fine = shell_step("ok", "2", {"argv": ["sh", "-c", "use-token"], "env": {"TOKEN": "{api_token}"}})
    assert check(cli, write_yaml, [hold, fine]).exit_code == 0


@pytest.mark.parametrize(
    ("shell", "more", "where"),
    [
        ({"argv": []}, {}, "steps[0].shell.argv"),
        ({"argv": ["echo", "{nobody}"]}, {}, "steps[0].shell.argv[1]: undefined placeholder {nobody}"),
        ({"argv": ["echo"], "env": {"X": "{nobody}"}}, {}, "steps[0].shell.env.X: undefined placeholder {nobody}"),
        ({"argv": ["echo"], "env": {"not a name": "x"}}, {}, "steps[0].shell.env"),
        ({"argv": ["echo"], "timeout": "soon"}, {}, "steps[0].shell.timeout: not a duration"),
        ({"argv": ["echo"], "expect_exit": "zero"}, {}, "steps[0].shell.expect_exit"),
        ({"argv": ["echo"], "shout": True}, {}, "steps[0].shell.shout"),
        ({"argv": ["echo"], "undo_argv": ["echo", "{nobody}"]}, {}, "undefined placeholder {nobody}"),
        ({"argv": ["echo"]}, {"run": "shell.run"}, "a shell step has no 'run'"),
    ],
)
def test_handrail_check_names_the_shell_field_that_is_wrong(cli, write_yaml, shell, more, where) -> None:
    result = check(cli, write_yaml, [shell_step("bad", "1", shell, **more)])
    assert result.exit_code == 2, result.output
    assert where in result.output


def test_the_plan_shows_a_shell_step_as_its_command_and_its_undo(cli, write_yaml) -> None:
    step = shell_step("make", "1", {"argv": ["touch", "{workdir}/a b"], "undo_argv": ["rm", "{workdir}/a b"]})
    path = write_yaml("team.yaml", runbook([step]))
    text = cli("plan", path).stdout
    assert "[shell command; confirm yes]" in text
    assert "$ touch '{workdir}/a b'" in text
    assert "undo: run the undo command: rm '{workdir}/a b'" in text
    data = yaml.safe_load(path.read_text())
    assert "run" not in data["steps"][0]  # the file says shell:, the model says shell.run
