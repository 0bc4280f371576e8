"""Every stored snapshot belongs to a snapshot test.

syrupy fails a run that leaves a snapshot unused, but not under pytest-xdist (each
worker sees only its share of the tests, so it skips the check): this test keeps it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import test_tui_snapshots
from tui_helpers import SIZES

STORED = Path(__file__).parent / "__snapshots__" / "test_tui_snapshots"


def test_every_stored_snapshot_has_its_test():
    tests = {
        name: inspect.signature(fn).parameters
        for name, fn in inspect.getmembers(test_tui_snapshots, inspect.isfunction)
        if name.startswith("test_") and {"snap_compare", "snap_sizes"} & set(inspect.signature(fn).parameters)
    }
    # A test on `snap_sizes` stores one snapshot per size; one at a fixed size, one.
    expected = {f"{name}[{size}]" if "snap_sizes" in params else name for name, params in tests.items() for size in SIZES}
    stored = {p.stem for p in STORED.glob("*.svg")}
    assert stored, f"no snapshots in {STORED}"
    unused = sorted(stored - expected)
    assert not unused, f"snapshots no test takes (delete them, or run `pytest -n0 --snapshot-update`): {unused}"
