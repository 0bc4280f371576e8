"""A bad runbook is one line naming file and field, exit 2, never a traceback.

Every malformed file here is the shipped runbook with one thing broken (or raw text for
what YAML itself refuses), so each case proves the check that catches that one thing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from steps.actions import registry
from steps.loader import RunbookError, load, runbooks_dir, shipped
from steps.model import Runbook

RUNBOOK = "aws-iam-access-key"


def step_index(data: dict[str, Any], step_id: str) -> int:
    return next(i for i, s in enumerate(data["steps"]) if s["id"] == step_id)


def step(data: dict[str, Any], step_id: str) -> dict[str, Any]:
    return data["steps"][step_index(data, step_id)]


@dataclass
class Broken:
    """One way to break the shipped runbook, and the one line it must produce."""

    break_it: Callable[[dict[str, Any]], None]
    where: Callable[[dict[str, Any]], str]  # computed on the unbroken file
    message: str  # a fragment of the message


def _set(step_id: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        step(d, step_id)[key] = value

    return mutate


def _at(step_id: str, suffix: str = "") -> Callable[[dict[str, Any]], str]:
    return lambda d: f"steps[{step_index(d, step_id)}]{suffix}"


def _gate_after(target: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        step(d, "delete-old-key")["gate"]["after"] = target

    return mutate


def _del(step_id: str, key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        del step(d, step_id)[key]

    return mutate


def _with(step_id: str, **params: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        step(d, step_id).setdefault("with", {}).update(params)

    return mutate


def _undo_run(step_id: str, action: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        step(d, step_id)["undo"]["run"] = action

    return mutate


def _undo_command(step_id: str, command: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        step(d, step_id)["undo"]["command"] = command

    return mutate


def _manual(step_id: str, text: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        step(d, step_id)["manual"]["instructions"] = text

    return mutate


def _manual_only(step_id: str) -> Callable[[dict[str, Any]], None]:
    """The step keeps its manual instructions and loses its action (and so its facts)."""

    def mutate(d: dict[str, Any]) -> None:
        s = step(d, step_id)
        del s["run"]
        s.pop("with", None)

    return mutate


def _second_point_of_no_return(d: dict[str, Any]) -> None:
    s = step(d, "free-key-slot")
    s["irreversible"] = True
    s["point_of_no_return"] = True


def _confirm_typed_without_typed(d: dict[str, Any]) -> None:
    s = step(d, "delete-old-key")
    s["confirm"] = "typed"
    s.pop("typed", None)


def _top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        d[key] = value

    return mutate


def _drop_top(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        del d[key]

    return mutate


BROKEN: dict[str, Broken] = {
    "unknown-run-action": Broken(_set("create-key", "run", "iam.create_kee"), _at("create-key", ".run"), "unknown action 'iam.create_kee'"),
    "unknown-undo-action-shorthand": Broken(
        _set("create-key", "undo", "iam.delte_key"), _at("create-key", ".undo"), "unknown action 'iam.delte_key'"
    ),
    "unknown-undo-action-object": Broken(
        _undo_run("deactivate-old-key", "iam.reactivate_old_kee"),
        _at("deactivate-old-key", ".undo.run"),
        "unknown action 'iam.reactivate_old_kee'",
    ),
    "duplicate-step-id": Broken(
        _set("validate-new-key", "id", "create-key"), _at("validate-new-key", ".id"), "duplicate step id 'create-key'"
    ),
    "duplicate-step-number": Broken(
        _set("validate-new-key", "number", "2"), _at("validate-new-key", ".number"), "duplicate step number '2'"
    ),
    "gate-after-missing-step": Broken(
        _gate_after("deactivate-old"), _at("delete-old-key", ".gate.after"), "'deactivate-old' is not a step"
    ),
    "gate-after-later-step": Broken(
        _gate_after("audit-record"), _at("delete-old-key", ".gate.after"), "'audit-record' is not an earlier step"
    ),
    "gate-after-itself": Broken(
        _gate_after("delete-old-key"), _at("delete-old-key", ".gate.after"), "'delete-old-key' is not an earlier step"
    ),
    "undefined-placeholder-in-command": Broken(
        _set("create-key", "command", "aws iam create-access-key --user-name {target_usr}"),
        _at("create-key", ".command"),
        "undefined placeholder {target_usr}",
    ),
    "placeholder-only-a-later-step-defines": Broken(
        _set("create-key", "command", "echo {deactivated_at}"), _at("create-key", ".command"), "undefined placeholder {deactivated_at}"
    ),
    "undefined-placeholder-in-manual-instructions": Broken(
        _manual("propagate", "Set the pair at {vault_path}"), _at("propagate", ".manual.instructions"), "undefined placeholder {vault_path}"
    ),
    "undefined-placeholder-in-undo-command": Broken(
        _undo_command("create-key", "aws iam update-access-key --access-key-id {new_key} --status Inactive"),
        _at("create-key", ".undo.command"),
        "undefined placeholder {new_key}",
    ),
    "unbalanced-brace-in-command": Broken(
        _set("create-key", "command", "echo {target_user"), _at("create-key", ".command"), "bad placeholder syntax"
    ),
    "confirm-maybe": Broken(_set("create-key", "confirm", "maybe"), _at("create-key", ".confirm"), "'maybe'"),
    "gate-at-least-soon": Broken(
        lambda d: step(d, "delete-old-key")["gate"].__setitem__("at_least", "soon"),
        _at("delete-old-key", ".gate.at_least"),
        "not a duration: 'soon'",
    ),
    "irreversible-sometimes": Broken(_set("create-key", "irreversible", "sometimes"), _at("create-key", ".irreversible"), "'sometimes'"),
    "step-missing-title": Broken(_del("create-key", "title"), _at("create-key", ".title"), "required field is missing"),
    "runbook-missing-header": Broken(_drop_top("header"), lambda d: "header", "required field is missing"),
    "unknown-step-field": Broken(_set("create-key", "retries", 3), _at("create-key", ".retries"), "unknown field"),
    "unknown-top-level-field": Broken(_top("owner", "ops"), lambda d: "owner", "unknown field"),
    "confirm-typed-without-typed": Broken(_confirm_typed_without_typed, _at("delete-old-key"), "confirm: typed needs 'typed'"),
    "typed-names-nothing": Broken(
        lambda d: step(d, "delete-old-key").update(confirm="typed", typed="old_key"),
        _at("delete-old-key", ".typed"),
        "'old_key' is not an input or a fact",
    ),
    "action-param-wrong-type": Broken(
        _with("validate-new-key", deadline="soon"), _at("validate-new-key", ".with.deadline"), "not a duration: 'soon'"
    ),
    "action-param-unknown": Broken(_with("validate-new-key", timeout="5s"), _at("validate-new-key", ".with.timeout"), "unknown field"),
    "slot-rule-window-not-a-duration": Broken(
        _with("free-key-slot", block_if_used_within="a day"),
        _at("free-key-slot", ".with.block_if_used_within"),
        "not a duration: 'a day'",
    ),
    "verification-rule-not-a-boolean": Broken(
        _with("deactivate-old-key", block_until_consumers_verified="sometimes"),
        _at("deactivate-old-key", ".with.block_until_consumers_verified"),
        "valid boolean",
    ),
    "verification-rule-with-no-verifying-step": Broken(
        _manual_only("verify-downstream"),
        _at("deactivate-old-key", ".with.block_until_consumers_verified"),
        "needs 'downstream_verified_at', which no earlier step provides",
    ),
    "params-for-an-action-without-params": Broken(_with("create-key", x=1), _at("create-key", ".with"), "takes no parameters"),
    "two-points-of-no-return": Broken(_second_point_of_no_return, lambda d: "steps", "more than one point_of_no_return"),
    "point-of-no-return-not-irreversible": Broken(
        _set("create-key", "point_of_no_return", True), _at("create-key"), "must also be irreversible"
    ),
    "step-without-run-or-manual": Broken(_del("create-key", "run"), _at("create-key"), "needs 'run' (an action) or 'manual'"),
    "undo-needs-a-fact-nothing-provides": Broken(
        _set("free-key-slot", "undo", "iam.deactivate_new_key"), _at("free-key-slot", ".undo"), "needs 'new_key_id'"
    ),
    "no-steps": Broken(_top("steps", []), lambda d: "steps", "at least 1"),
    "bad-step-id": Broken(lambda d: d["steps"][0].__setitem__("id", "Pre Checks"), lambda d: "steps[0].id", "'Pre Checks'"),
    "input-default-not-a-choice": Broken(
        lambda d: d["inputs"]["reason"].__setitem__("default", "whim"),
        lambda d: "inputs.reason.default",
        "'whim' is not one of the choices",
    ),
    "prerequisite-checked-by-missing-step": Broken(
        lambda d: d["prerequisites"][0].__setitem__("checked_by", "nope"), lambda d: "prerequisites[0].checked_by", "'nope' is not a step"
    ),
}


def assert_one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line, got {len(lines)}:\n{text}"
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture
def broken_file(shipped_runbook, write_yaml) -> Callable[[str], tuple[Path, str, str]]:
    def make(case: str) -> tuple[Path, str, str]:
        spec = BROKEN[case]
        where = spec.where(shipped_runbook)
        data = copy.deepcopy(shipped_runbook)
        spec.break_it(data)
        return write_yaml(f"{case}.yaml", data), where, spec.message

    return make


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_malformed_runbook_is_one_line_naming_file_field_and_problem(case, broken_file, cli):
    path, where, message = broken_file(case)

    with pytest.raises(RunbookError) as caught:
        load(str(path))
    err = caught.value
    assert (err.source, err.where) == (str(path), where)
    assert message in err.message
    assert str(err) == f"{path}: {where}: {err.message}"
    assert "\n" not in str(err)

    result = cli("check", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    line = assert_one_line(result.stderr)
    assert line == f"handrail: {path}: {where}: {err.message}"


@pytest.mark.parametrize(
    "text, where, message",
    [
        pytest.param("id: x\nsteps: [\n  - a: b\n", "line 3, column 3", "invalid YAML", id="bad-yaml-syntax"),
        pytest.param("id: x\ntitle: first\nid: y\n", "line 3, column 1", "duplicate key 'id'", id="duplicate-yaml-key"),
        pytest.param("id: x\n\tsteps: []\n", "line 2, column 1", "invalid YAML", id="tab-indentation"),
        pytest.param("", "", "the file is empty", id="empty-file"),
        pytest.param("# only a comment\n", "", "the file is empty", id="comment-only-file"),
        pytest.param("- id: x\n- id: y\n", "", "expected a mapping at the top, got list", id="top-level-list"),
        pytest.param("just words\n", "", "expected a mapping at the top, got str", id="top-level-scalar"),
    ],
)
def test_a_file_yaml_refuses_is_one_line_with_line_and_column(text, where, message, write_yaml, cli):
    path = write_yaml("raw.yaml", text)

    with pytest.raises(RunbookError) as caught:
        load(str(path))
    assert caught.value.where == where
    assert message in caught.value.message
    expected = f"{path}: {where}: " if where else f"{path}: "
    assert str(caught.value).startswith(expected)

    result = cli("check", path)
    assert result.exit_code == 2
    assert assert_one_line(result.stderr) == f"handrail: {caught.value}"


def test_a_control_character_in_the_yaml_is_reported_with_its_line_and_column(write_yaml):
    path = write_yaml("nul.yaml", "id: x\ntitle: a\x00b\n")
    with pytest.raises(RunbookError) as caught:
        load(str(path))
    assert caught.value.where.startswith("line 2")


def test_a_missing_file_is_one_line_and_exit_2(tmp_path, cli):
    path = tmp_path / "nowhere.yaml"
    result = cli("check", path)
    assert result.exit_code == 2
    assert assert_one_line(result.stderr) == f"handrail: {path}: no such file"


def test_an_unknown_runbook_id_names_the_known_ones(cli):
    result = cli("check", "aws-iam-acces-key")
    assert result.exit_code == 2
    line = assert_one_line(result.stderr)
    assert "no such runbook" in line and RUNBOOK in line


def test_a_directory_is_not_a_runbook(tmp_path, cli):
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    result = cli("check", folder)
    assert result.exit_code == 2
    assert "is a directory" in assert_one_line(result.stderr)


def test_a_mutated_copy_that_is_still_valid_loads(shipped_runbook, write_yaml):
    """The control for every case above: dumping the dict back does not itself break the file."""
    path = write_yaml("copy.yaml", copy.deepcopy(shipped_runbook))
    book = load(str(path))
    assert [s.id for s in book.steps] == [s["id"] for s in shipped_runbook["steps"]]


# -- the shipped runbook -------------------------------------------------------------------------


def test_every_shipped_runbook_passes_handrail_check(cli):
    files = shipped()
    assert files, f"no runbook shipped in {runbooks_dir()}"
    for path in files:
        result = cli("check", path)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{path}: ok")


def test_the_shipped_runbook_checks_by_id(cli):
    result = cli("check", RUNBOOK)
    assert result.exit_code == 0, result.output
    assert f"{RUNBOOK}: ok" in result.stdout


def test_the_shipped_runbook_covers_the_sop():
    book = load(RUNBOOK)
    numbers = [s.number for s in book.steps]
    for n in ("1", "2", "3", "4", "5", "6", "7", "7b", "8"):
        assert n in numbers, f"SOP step {n} is missing"
    assert numbers.index("7") < numbers.index("7b") < numbers.index("8")
    h = book.header
    assert (h.mode, h.required_role) == ("programmatic", "ops")
    assert h.last_validated is not None and h.validation_method and h.average_duration
    assert {w.id for w in book.when_to_run} >= {"scheduled", "operator-initiated", "incident", "offboarding"}
    delete = next(s for s in book.steps if s.number == "7b")
    assert delete.point_of_no_return and delete.irreversible
    assert delete.gate is not None and delete.gate.at_least >= 24 * 3600
    assert book.step(delete.gate.after).number == "7"
    for number in ("2", "7"):
        assert next(s for s in book.steps if s.number == number).undo is not None, f"step {number} has no undo (the SOP's rollback)"
    assert book.references and book.gotchas


def expected_undo(step) -> str:
    if step.undo.run:
        return step.undo.command or registry()[step.undo.run].command
    return step.undo.manual


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_plan_shows_every_step_with_its_command_and_its_undo(fmt, cli):
    book: Runbook = load(RUNBOOK)
    result = cli("plan", RUNBOOK, "--format", fmt)
    assert result.exit_code == 0, result.output
    out = result.stdout
    position = -1
    for s in book.steps:
        heading = f"### {s.number}. {s.title}" if fmt == "markdown" else f"{s.number:>3}. {s.title}"
        assert heading in out, f"step {s.number} missing from the {fmt} plan"
        assert out.index(heading) > position, f"step {s.number} out of order"
        position = out.index(heading)
        for line in s.command.splitlines():
            assert (f"$ {line}" if fmt == "text" else line) in out, f"step {s.number}: command line {line!r} missing"
        if s.undo is not None:
            assert expected_undo(s) in out, f"step {s.number}: undo missing"
    assert out.count("undo: ") == len(book.steps)
    assert book.rollback.summary.strip() in out
    assert book.rollback.after_point_of_no_return.strip() in out


def test_plan_text_says_which_step_is_the_point_of_no_return(cli):
    lines = cli("plan", RUNBOOK).stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("7b."))
    undo_line = next(line for line in lines[start:] if line.strip().startswith("undo:"))
    assert "point of no return" in undo_line


def test_plan_of_a_broken_runbook_is_exit_2(broken_file, cli):
    path, where, _ = broken_file("unknown-run-action")
    result = cli("plan", path)
    assert result.exit_code == 2
    assert f"{path}: {where}:" in assert_one_line(result.stderr)


# -- the two YAML parsers ------------------------------------------------------------------------


def test_every_shipped_file_reads_the_same_with_libyaml_and_with_the_python_parser():
    import yaml

    from steps import yamlfile

    if yamlfile._FastLoader is None:
        pytest.skip("PyYAML was built without libyaml here")
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "runbooks").glob("*.yaml")) + sorted((root / "steps/sandbox/scenarios").glob("*.yaml"))
    assert len(files) > 5
    for path in files:
        text = path.read_text()
        assert yaml.load(text, Loader=yamlfile._FastLoader) == yaml.load(text, Loader=yamlfile._UniqueKeyLoader), path


@pytest.mark.parametrize("python_only", [False, True], ids=["libyaml", "python"])
@pytest.mark.parametrize(
    "nesting",
    ["- " * 16000 + "x", "[" * 1000 + "]" * 1000, "[" * 30000, "- " * 60000 + "x", "{a: " * 5000],
    ids=["block-16000", "flow-1000", "flow-30000", "block-60000", "mapping-5000"],
)
def test_a_file_nested_past_the_limit_is_one_line_naming_where_and_never_a_crash(tmp_path, monkeypatch, nesting, python_only):
    """libyaml composes by C recursion: past ~40,000 levels it took the process down (this
    test's worker with it); both scanners took seconds on deep flow brackets. The column
    shows the refusal comes at the limit, not at the end of the file."""
    from steps import yamlfile

    if python_only:
        monkeypatch.setattr(yamlfile, "_FastLoader", None)
    path = tmp_path / "deep.yaml"
    path.write_text("a:\n  " + nesting + "\n")
    with pytest.raises(RunbookError) as caught:
        yamlfile.read_yaml(path)
    column = 3 + {"-": 2, "[": 1, "{": 4}[nesting[0]] * 63  # the 64th level under "a" opens here
    assert str(caught.value) == f"{path}: line 2, column {column}: invalid YAML: nested more than 64 levels deep"


@pytest.mark.parametrize("python_only", [False, True], ids=["libyaml", "python"])
def test_a_file_nested_to_the_limit_is_read_and_a_mistake_after_it_still_named(tmp_path, monkeypatch, python_only):
    from steps import yamlfile

    if python_only:
        monkeypatch.setattr(yamlfile, "_FastLoader", None)
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 63 + "]" * 63 + "\n")
    value = yamlfile.read_yaml(path)["a"]
    for _ in range(62):
        (value,) = value
    assert value == []
    path.write_text("a: " + "[" * 63 + "]" * 63 + "\nb: [1, 2\n")
    with pytest.raises(RunbookError, match=r"line 3, column 1: invalid YAML: expected ',' or ']', but got"):
        yamlfile.read_yaml(path)
