"""How long each training scenario takes a headless run, played its intended way.

In-process (world built, rotation driven to its intended end, world closed) and, for the
happy path, as a fresh `handrail run` process too. Prints the median of N runs.

    python3 benchmarks/scenarios.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HANDRAIL_HOME"] = tempfile.mkdtemp(prefix="handrail-bench-")

from steps.audit import AuditLog
from steps.driver import Asker, DriveOptions, Printer, drive
from steps.engine import Engine
from steps.journal import Journal
from steps.paths import audit_path, journal_path
from steps.sandbox import scenario as scenarios
from steps.sandbox.world import World
from steps.wiring import TrainingWiring, training_clock


def intended(name: str, session, world) -> str:
    """Drive a session its scenario's intended way; returns how it ended."""
    quiet = Printer(lambda line: None)
    opts = DriveOptions(yes=True, fast_forward=True, confirm_irreversible=True)
    if name == "two-active-keys":
        keys = world.aws.iam.users[world.scenario.target_user].access_keys
        opts.retire_key = keys[1].access_key_id  # the unused one
    code, _ = drive(session, opts, quiet, Asker())
    if name in ("consumer-fails", "vault-unreachable"):
        while code == 1:  # retry once the fault has passed
            code, _ = drive(session, opts, quiet, Asker())
    if name == "forgotten-consumer":
        session.rollback()
    return session.status


def one(engine: Engine, name: str) -> tuple[float, str]:
    start = time.perf_counter()
    scenario = scenarios.load(name)
    world = World.create(scenario, training_clock(headless=True))
    inputs = {**scenario.inputs, "target_user": scenario.target_user, "check_call": scenario.aws.users[scenario.target_user].check_call}
    session = engine.start("aws-iam-access-key", inputs, TrainingWiring(world))
    status = intended(name, session, world)
    session.close()
    return time.perf_counter() - start, status


def cli_happy_path() -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tui.cli", "run", "--mode", "training", "--yes", "--fast-forward", "--json"],
        check=False,
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    engine = Engine(Journal(journal_path()), AuditLog(audit_path()), os_user="bench")
    one(engine, "happy-path")  # warm-up: imports, the shared moto server
    print(f"headless training scenarios, intended way, median of {n} runs (in-process):")
    for path in scenarios.shipped():
        times, statuses = [], set()
        for _ in range(n):
            seconds, status = one(engine, path.stem)
            times.append(seconds)
            statuses.add(status)
        print(
            f"  {path.stem:<22} {statistics.median(times):6.2f} s   (min {min(times):.2f}, max {max(times):.2f}; ends {', '.join(sorted(statuses))})"
        )
    cold = [cli_happy_path() for _ in range(n)]
    print(
        f"`handrail run --mode training --yes --fast-forward` as a new process: median {statistics.median(cold):.2f} s (min {min(cold):.2f}, max {max(cold):.2f})"
    )


if __name__ == "__main__":
    main()
