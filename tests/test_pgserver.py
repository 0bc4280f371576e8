"""tests/pgserver.py, the helper .ci/run and the tests start PostgreSQL with: its `stop`
removes the server's directory, so it must never remove anything else."""

from __future__ import annotations

import os

import pgserver
import pytest


@pytest.mark.parametrize("given", ["", ".", "made-by-someone-else"])
def test_stop_refuses_a_directory_start_did_not_make_and_removes_nothing(tmp_path, monkeypatch, capsys, given):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "made-by-someone-else" / "data").mkdir(parents=True)
    (tmp_path / "made-by-someone-else" / "data" / "PG_VERSION").write_text("15\n")
    (tmp_path / "keep.txt").write_text("the checkout")
    before = sorted(os.walk(tmp_path))

    assert pgserver.main(["stop", given]) == 2
    assert sorted(os.walk(tmp_path)) == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing stopped or removed" in err[0]
