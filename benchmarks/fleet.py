"""A headless training campaign over a fleet of due users: wall time, CPU time, AWS calls
per rotation (the sandbox's SigV4 gate counts every call, consumers' included; CloudTrail's
LookupEvents and EC2's DescribeRegions, the evidence, apart) and peak
memory, for fleets of 50, 100 and 200 due users; and the speed-up of --concurrency 4
over 1.

Each fleet is one simulated world (a generated scenario: every user due, one in four
listed in the inventory with its pair in the vault and a Heroku app consuming it, one in
five with an Inactive key left over), rotated in one campaign, observation gates
fast-forwarded, as `handrail campaign start --due --fast-forward --yes
--confirm-irreversible` does. Build time (the world) is reported apart from the
campaign's.

    python3 benchmarks/fleet.py [SIZES...]        # default: 50 100 200
    python3 benchmarks/fleet.py --quick           # 20 users, for a smoke run

Wall time on a shared machine depends on what else runs: the load average is printed
with the figures, and CPU time (all threads of the process) is the steadier measure.

Measured on the 2-core machine, load average 4 to 8 from other work (medians of 3 runs):
200 users at --concurrency 4 in 50.4 s wall, 49 s CPU (before step 8 looked up by
resource name and the sandbox's servers used a thread pool: 61.8 s wall, 58.5 s CPU at
load 0.5 to 3); at --concurrency 1, 55.3 s wall, 46 s CPU. 33.6 AWS calls per rotation
without the due list: 33.0, and 3 more for the one user in five whose leftover Inactive
key is deleted (its last use read in step 1 and again in step 1b, then the delete);
37.0 CloudTrail/EC2 calls per rotation (18 regions in step 1 and in 7b, 1 in step 8).
Cost per user, 200 vs 50 users: x0.93 wall, x0.82 CPU.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HANDRAIL_HOME"] = tempfile.mkdtemp(prefix="handrail-bench-")

from steps import campaign, compose, due
from steps.audit import AuditLog
from steps.driver import DriveOptions
from steps.engine import Engine
from steps.journal import Journal
from steps.paths import audit_path, journal_path

CADENCE_DAYS = 30


def fleet_scenario(directory: Path, size: int) -> Path:
    """A scenario of `size` due users (ages 31 to 120 days) besides the target."""
    lines = [
        f"id: bench-fleet-{size}",
        "title: Benchmark fleet",
        "teaches: scale",
        "difficulty: 3",
        "briefing: generated",
        "goal: rotate every due user",
        "target_user: bench-target",
        "aws:",
        "  propagation_delay: 2s",
        "  users:",
        "    bench-target:",
        "      keys: [{status: Active, age: 5d, last_used: 1h}]",  # not due: never touched
    ]
    for i in range(size):
        name = f"bench-user-{i:04d}"
        age = 31 + (i * 7) % 90
        keys = [f"{{status: Active, age: {age}d, last_used: {1 + i % 20}h}}"]
        if i % 5 == 0:
            keys.insert(0, f"{{status: Inactive, age: {age + 30}d, last_used: {age}d}}")
        lines.append(f"    {name}:")
        lines.append(f"      keys: [{', '.join(keys)}]")
        if i % 4 == 0:
            lines.append('      check_call: "s3:ListObjectsV2 Bucket=bench-bucket"')
            lines.append(f"      vault: {{path: /aws/{name}}}")
            lines.append(f"      consumers: [{{type: heroku, app: b-{i:04d}}}]")
    lines += ["  buckets:", "    bench-bucket: {a: 1}"]
    path = directory / f"bench-fleet-{size}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def one(engine: Engine, scenario: Path, concurrency: int) -> dict[str, float]:
    """Build the world, list what is due, run the campaign; figures of the campaign alone."""
    start = time.perf_counter()
    fleet = compose.open_fleet("training", scenario=str(scenario))
    built = time.perf_counter() - start
    try:
        world = fleet.world
        assert world is not None
        reader = fleet.wiring()
        rows = due.report(reader, every=True, concurrency=concurrency)
        targets = campaign.due_targets(rows, CADENCE_DAYS)
        account, arn = reader.identity()
        before = sum(world.aws.calls.values())
        cid = campaign.create(
            engine, targets, name=scenario.stem, kind="due", mode="training", account=account, operator_arn=arn, options=fleet.options()
        )
        opener = compose.CampaignOpener(engine, fleet, cid)
        runner = campaign.Runner(engine.journal, cid, opener, concurrency=concurrency)
        wall, cpu = time.perf_counter(), time.process_time()
        result = runner.run(DriveOptions(yes=True, fast_forward=True, confirm_irreversible=True))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        calls = sum(world.aws.calls.values())
        done = result.counts.get("done", 0)
        for r in result.results:
            if r.state != "done":
                print(f"  {r.user}: {r.state}: {r.detail}", file=sys.stderr)
        return {
            "targets": len(targets),
            "done": done,
            "code": result.code,
            "built": built,
            "wall": wall,
            "cpu": cpu,
            # The due listing is part of the campaign: it is counted in, per rotation.
            "calls_per_rotation": calls / max(1, len(targets)),
            "campaign_calls_per_rotation": (calls - before) / max(1, len(targets)),
            # CloudTrail's LookupEvents and EC2's DescribeRegions: evidence, counted apart.
            "evidence_calls_per_rotation": sum(world.aws.evidence_calls.values()) / max(1, len(targets)),
        }
    finally:
        fleet.close()


def child(size: int, concurrency: int) -> None:
    """One measurement in a fresh process (so peak memory is this fleet's): a warm-up
    campaign of 4 users (imports, the moto server), then the fleet."""
    engine = Engine(Journal(journal_path()), AuditLog(audit_path()), os_user="bench")
    directory = Path(tempfile.mkdtemp(prefix="handrail-bench-fleet-"))
    one(engine, fleet_scenario(directory, 4), concurrency)
    figures = one(engine, fleet_scenario(directory, size), concurrency)
    figures["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def measure(size: int, concurrency: int) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(size), str(concurrency)], capture_output=True, text=True, check=False, env=os.environ
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({size} users, concurrency {concurrency}):\n{proc.stderr[-2000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), int(sys.argv[3]))
        return
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sizes = [20] if "--quick" in sys.argv else [int(a) for a in args] or [50, 100, 200]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("training campaign, every user due, observation gates fast-forwarded, --concurrency 4 (each in a fresh process):")
    print(f"  {'users':>5}  {'wall':>7}  {'per user':>8}  {'cpu':>7}  {'AWS calls/rotation':>26}  {'peak RSS':>8}  result")
    rows = []
    for size in sizes:
        f = measure(size, 4)
        rows.append((size, f))
        print(
            f"  {size:>5}  {f['wall']:6.1f}s  {f['wall'] / size * 1000:6.0f}ms  {f['cpu']:6.1f}s  "
            f"{f['calls_per_rotation']:6.1f} ({f['campaign_calls_per_rotation']:.1f} w/o due list)  {f['rss_mb']:6.0f}MB  "
            f"+{f.get('evidence_calls_per_rotation', 0):.1f} CloudTrail/EC2 calls/rotation  "
            f"{f['done']:.0f}/{f['targets']:.0f} done, exit {f['code']:.0f} (world built in {f['built']:.1f}s)",
            flush=True,
        )
    if len(rows) > 1:
        (small, a), (big, b) = rows[0], rows[-1]
        print(
            f"  cost per user, {big} vs {small} users: x{(b['wall'] / big) / (a['wall'] / small):.2f} wall, "
            f"x{(b['cpu'] / big) / (a['cpu'] / small):.2f} cpu (1.00 = linear)"
        )
    size = sizes[0]
    serial, parallel = measure(size, 1), (rows[0][1] if rows else measure(size, 4))
    print(
        f"speed-up of --concurrency 4 over 1 ({size} users): {serial['wall'] / parallel['wall']:.2f}x "
        f"({serial['wall']:.1f}s -> {parallel['wall']:.1f}s wall; cpu {serial['cpu']:.1f}s -> {parallel['cpu']:.1f}s)"
    )
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
