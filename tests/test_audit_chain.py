"""The audit log is a hash chain: every line carries the hash of the line before, and
`handrail audit verify` names the first line where the chain breaks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from steps.audit import GENESIS, AuditLog

LINES = 8


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.jsonl")
    for n in range(1, LINES + 1):
        audit.append(f"test.event.{n}", session="s-1", actor="arn:aws:iam::123456789012:user/op", context={"n": n})
    return audit


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def verify_cli(cli, path: Path):
    result = cli("audit", "verify", path)
    return result.exit_code, result.stdout + result.stderr


def test_each_line_carries_the_hash_of_the_line_before(log):
    raw = lines_of(log.path)
    assert len(raw) == LINES
    records = [json.loads(line) for line in raw]
    assert records[0]["prev"] == GENESIS
    for before, record in zip(raw, records[1:]):
        assert record["prev"] == hashlib.sha256(before.rstrip(b"\n")).hexdigest()
    assert [r["seq"] for r in records] == list(range(1, LINES + 1))


def test_an_intact_log_verifies_with_exit_0(log, cli):
    assert log.verify().ok
    code, out = verify_cli(cli, log.path)
    assert code == 0
    assert f"{LINES} lines, chain intact" in out


def test_the_log_of_a_real_rotation_verifies(cli, handrail_home):
    assert cli("run", "--yes", "--fast-forward", "--confirm-irreversible").exit_code == 0
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert str(handrail_home / "audit.jsonl") in result.stdout


def _edit(lines: list[bytes], index: int) -> list[bytes]:
    record = json.loads(lines[index])
    record["actor"] = "arn:aws:iam::123456789012:user/someone-else"
    out = list(lines)
    out[index] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    return out


def _delete(lines: list[bytes], index: int) -> list[bytes]:
    return lines[:index] + lines[index + 1 :]


def _insert_copy(lines: list[bytes], index: int) -> list[bytes]:
    return lines[:index] + [lines[index - 1]] + lines[index:]


def _swap(lines: list[bytes], index: int) -> list[bytes]:
    out = list(lines)
    out[index], out[index + 1] = out[index + 1], out[index]
    return out


@pytest.mark.parametrize(
    "tamper, index, first_bad",
    [
        # An edited line still links to the one before it; the chain breaks at the next.
        pytest.param(_edit, 2, {3, 4}, id="edit-line-3"),
        pytest.param(_edit, 0, {1, 2}, id="edit-line-1"),
        pytest.param(_delete, 3, {4}, id="delete-line-4"),
        pytest.param(_delete, 0, {1}, id="delete-line-1"),
        pytest.param(_insert_copy, 4, {5}, id="insert-a-copy-as-line-5"),
        pytest.param(_swap, 5, {6}, id="swap-lines-6-and-7"),
    ],
)
def test_a_tampered_line_is_named_and_verify_exits_1(log, cli, tamper, index, first_bad):
    write_lines(log.path, tamper(lines_of(log.path), index))

    verdict = log.verify()
    assert not verdict.ok
    assert verdict.bad_line in first_bad

    code, out = verify_cli(cli, log.path)
    assert code == 1
    assert f"line {verdict.bad_line}:" in out
    assert len(out.strip().splitlines()) == 1


def test_a_forged_line_with_a_correct_prev_hash_still_breaks_the_chain_after_it(log):
    lines = lines_of(log.path)
    forged = json.loads(lines[3])
    forged["action"] = "secret.rotate.completed"
    lines[3] = json.dumps(forged, separators=(",", ":")).encode() + b"\n"  # its own prev is still right
    write_lines(log.path, lines)
    assert log.verify().bad_line == 5


@pytest.mark.parametrize("cut", [1, 10, 30])
def test_a_log_truncated_mid_line_is_named(log, cli, cut):
    data = log.path.read_bytes()
    log.path.write_bytes(data[: len(data) - cut])

    verdict = log.verify()
    assert not verdict.ok and verdict.bad_line == LINES
    code, out = verify_cli(cli, log.path)
    assert code == 1 and f"line {LINES}:" in out


def test_garbage_in_a_line_is_named(log):
    lines = lines_of(log.path)
    lines[1] = b"not json at all\n"
    write_lines(log.path, lines)
    verdict = log.verify()
    assert (verdict.ok, verdict.bad_line) == (False, 2)


def test_appending_after_a_verified_log_keeps_the_chain(log):
    log.append("later.event", session="s-2")
    assert log.verify().ok
    assert log.verify().lines == LINES + 1


def test_an_edit_of_the_last_line_is_detected(log):
    lines = lines_of(log.path)
    write_lines(log.path, _edit(lines, len(lines) - 1))
    assert not log.verify().ok


def test_verify_of_a_missing_file_is_exit_2(tmp_path, cli):
    result = cli("audit", "verify", tmp_path / "nope.jsonl")
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_the_cli_verify_defaults_to_handrail_homes_log(handrail_home, cli):
    log = AuditLog(handrail_home / "audit.jsonl")
    for n in range(3):
        log.append("x", context={"n": n})
    assert cli("audit", "verify").exit_code == 0
    write_lines(log.path, _delete(lines_of(log.path), 1))
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "line 2:" in result.stderr
