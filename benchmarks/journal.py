"""The shared journal under load: 8 operator processes × 25 training rotations each,
against one journal, PostgreSQL then SQLite (one file shared by the 8 processes).

Every process plays the same few IAM users of the same AWS account id (its own simulated
world, so the rotations themselves never collide; the journal's locks are what the
processes contend for). A process that finds a user locked tries the next one.

Reported per backend:
- that no lock was ever held twice: a witness outside handrail (a file created with
  O_EXCL when a session's lock is taken, removed just before it is released) never
  collided, and the lock table is empty at the end;
- the latency of each journal write (create session + lease, events, facts, session
  updates, lock release) and of each audit append: p50, p99;
- the journal's time per step, and the total wall time.

    python3 benchmarks/journal.py                          # starts a throwaway PostgreSQL (fsync on)
    python3 benchmarks/journal.py --database postgresql://…   # an existing, upgraded database
    python3 benchmarks/journal.py --processes 4 --sessions 10 # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ACCOUNT = "111122223333"
USERS = [f"bench-op-{i}" for i in range(4)]


def scenario(directory: Path) -> Path:
    lines = [
        "id: bench-journal",
        "title: Benchmark journal",
        "teaches: contention",
        "difficulty: 1",
        "briefing: generated",
        "goal: rotate",
        f"target_user: {USERS[0]}",
        "inputs: {reason: scheduled}",
        "aws:",
        "  propagation_delay: 0s",
        "  status_delay: 0s",
        "  users:",
    ]
    for user in USERS:
        lines += [
            f"    {user}:",
            "      keys: [{status: Active, age: 92d, last_used: 3h}]",
            '      check_call: "s3:ListObjectsV2 Bucket=bench-journal"',
        ]
    lines += ["  buckets:", "    bench-journal: {daily.tar.gz: 16}"]
    path = directory / "bench-journal.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def operator(index: int, sessions: int, where: str, home: Path, witness: Path, scenario_path: Path) -> dict[str, Any]:
    """One operator process: `sessions` rotations, each on the first user not locked."""
    os.environ["HANDRAIL_HOME"] = str(home)
    from steps.audit import open_audit
    from steps.driver import Asker, DriveOptions, Printer, drive
    from steps.engine import Engine
    from steps.journal import Journal, LockHeld
    from steps.sandbox import scenario as scenarios
    from steps.sandbox.world import World
    from steps.wiring import TrainingWiring, training_clock

    writes: list[float] = []
    appends: list[float] = []
    collisions: list[str] = []

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                writes.append(time.perf_counter() - t)

        return wrapper

    class Timed(Journal):
        add_event = timed(Journal.add_event)
        set_facts = timed(Journal.set_facts)
        update_session = timed(Journal.update_session)

        def create_session(self, **fields: Any) -> Any:
            t = time.perf_counter()
            row = Journal.create_session(self, **fields)
            writes.append(time.perf_counter() - t)
            if fields.get("lock"):
                try:  # the witness: taken only while this process holds the lease
                    os.close(os.open(witness / row.target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    collisions.append(f"{row.target} by {row.id}")
            return row

        def release_lock(self, session_id: str) -> None:
            lock = self.lock_of(session_id)
            if lock:
                (witness / lock[1]).unlink(missing_ok=True)
            t = time.perf_counter()
            Journal.release_lock(self, session_id)
            writes.append(time.perf_counter() - t)

    journal = Timed(where)
    audit = open_audit(journal, home / "audit.jsonl")
    append = audit.append

    def timed_append(*args: Any, **kwargs: Any) -> int:
        t = time.perf_counter()
        try:
            return append(*args, **kwargs)
        finally:
            appends.append(time.perf_counter() - t)

    audit.append = timed_append  # type: ignore[method-assign]
    engine = Engine(journal, audit, os_user=f"op{index}")
    world = World.create(scenarios.load(str(scenario_path)), training_clock(True), account_id=ACCOUNT)
    sc = world.scenario
    done = refused = steps = 0
    attempt = index
    started = time.perf_counter()
    try:
        while done < sessions:
            user = USERS[attempt % len(USERS)]
            attempt += 1
            inputs = {**sc.inputs, "target_user": user, "check_call": sc.aws.users[user].check_call}
            try:
                session = engine.start("aws-iam-access-key", inputs, TrainingWiring(world))
            except LockHeld:
                refused += 1
                if attempt % len(USERS) == index % len(USERS):
                    time.sleep(0.02)  # every user was locked: a moment before the next round
                continue
            code, message = drive(
                session, DriveOptions(yes=True, fast_forward=True, confirm_irreversible=True), Printer(lambda line: None), Asker()
            )
            if code != 0:
                raise SystemExit(f"operator {index}: session {session.id} ended {code}: {message}")
            steps += sum(1 for s in session.step_states() if s.status == "done")
            session.journal.release_holder(session.id)
            done += 1
    finally:
        world.close()
        journal.close()
    return {
        "done": done,
        "refused": refused,
        "steps": steps,
        "wall": time.perf_counter() - started,
        "writes": writes,
        "appends": appends,
        "collisions": collisions,
    }


def run(label: str, where: str, processes: int, sessions: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="handrail-bench-journal-"))
    witness = base / "witness"
    witness.mkdir()
    path = scenario(base)
    procs = []
    started = time.perf_counter()
    for i in range(processes):
        home = base / f"home-{i}" if label == "postgresql" else base / "shared-home"
        out = base / f"out-{i}.json"
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, __file__, "--child", str(i), str(sessions), where, str(home), str(witness), str(path), str(out)],
                    env={**os.environ, "HANDRAIL_HOME": str(home)},
                ),
                out,
            )
        )
    for proc, _ in procs:
        if proc.wait() != 0:
            raise SystemExit(f"{label}: an operator process failed")
    total = time.perf_counter() - started
    results = [json.loads(out.read_text()) for _, out in procs]
    writes = sorted(w for r in results for w in r["writes"])
    appends = sorted(a for r in results for a in r["appends"])
    steps = sum(r["steps"] for r in results)

    from steps.journal import Journal

    journal = Journal(where)
    with journal.backend.read() as tx:
        left = tx.rows("SELECT * FROM locks")
        sessions_row = tx.one("SELECT COUNT(*) AS n FROM sessions")
        finished = tx.one("SELECT COUNT(*) AS n FROM sessions WHERE status = 'done'")
    journal.close()
    from steps.audit import open_audit

    verdict = open_audit(Journal(where), base / "shared-home" / "audit.jsonl").verify() if label == "postgresql" else None
    return {
        "backend": label,
        "sessions": sessions_row["n"] if sessions_row else 0,
        "done": finished["n"] if finished else 0,
        "refused": sum(r["refused"] for r in results),
        "collisions": [c for r in results for c in r["collisions"]],
        "locks_left": len(left),
        "writes": len(writes),
        "p50_ms": 1000 * statistics.median(writes),
        "p99_ms": 1000 * writes[int(0.99 * (len(writes) - 1))],
        "audit_p50_ms": 1000 * statistics.median(appends),
        "audit_p99_ms": 1000 * appends[int(0.99 * (len(appends) - 1))],
        "journal_ms_per_step": 1000 * sum(writes) / max(1, steps),
        "steps": steps,
        "total_s": total,
        "audit_ok": verdict.ok if verdict else None,
        "audit_records": verdict.lines if verdict else None,
    }


def report(r: dict[str, Any]) -> None:
    held_twice = "never" if not r["collisions"] and r["locks_left"] == 0 else f"COLLISIONS {r['collisions']}, locks left {r['locks_left']}"
    print(
        f"{r['backend']:<10}  {r['done']}/{r['sessions']} sessions done, {r['refused']} refusals (user locked); "
        f"a lock held twice: {held_twice}\n"
        f"            journal write p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms ({r['writes']} writes); "
        f"audit append p50 {r['audit_p50_ms']:.2f} ms, p99 {r['audit_p99_ms']:.2f} ms; "
        f"journal time per step {r['journal_ms_per_step']:.2f} ms ({r['steps']} steps); total {r['total_s']:.1f} s"
        + (f"; audit chain in the database: {r['audit_records']} records, intact={r['audit_ok']}" if r["audit_ok"] is not None else "")
    )


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        index, sessions, where, home, witness, path, out = sys.argv[2:9]
        result = operator(int(index), int(sessions), where, Path(home), Path(witness), Path(path))
        Path(out).write_text(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=25)
    parser.add_argument("--database", help="an upgraded PostgreSQL database (default: a throwaway server, fsync on)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    server = None
    url = args.database
    if not url:
        import pgserver

        server = pgserver.start(durable=True)
        url = server.url
        from steps.db_postgres import PostgresBackend

        PostgresBackend(url, check_schema=False).upgrade()
    try:
        print(f"{args.processes} operator processes × {args.sessions} training rotations, {len(USERS)} contended users; load {load:.1f}")
        pg = run("postgresql", url, args.processes, args.sessions)
        report(pg)
        sqlite_path = str(Path(tempfile.mkdtemp(prefix="handrail-bench-sqlite-")) / "journal.sqlite3")
        lite = run("sqlite", sqlite_path, args.processes, args.sessions)
        report(lite)
    finally:
        if server is not None:
            server.stop()
    if pg["collisions"] or lite["collisions"] or pg["locks_left"] or lite["locks_left"]:
        raise SystemExit("a lock was held twice")


if __name__ == "__main__":
    main()
