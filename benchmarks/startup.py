"""Time to first frame: handrail's app against a bare Textual app, same machine, same run.

Each measurement is a fresh Python process that runs the app headless and notes, at its
first `on_ready` (Textual sends Ready once the first frame is on screen), the seconds
since the process started (`tui.startup.process_age`, read from /proc/self/stat on
Linux). The bare app exits there; handrail's first frame is its start screen's chrome,
so it runs on until the form is filled in (runbooks, scenarios, the journal's unfinished
sessions) and notes that too. The two apps alternate, so both see the same machine load.
Both run from bytecode, as an installed app does: the children write theirs to a
temporary cache even where PYTHONDONTWRITEBYTECODE is set, and a first run fills it.

    python benchmarks/startup.py            # 7 rounds
    python benchmarks/startup.py -n 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BARE = """
import time

from textual.app import App
from textual.widgets import Static

from tui.startup import process_age


class Bare(App):
    def compose(self):
        yield Static("hello")

    def on_ready(self):
        self.startup_seconds = process_age()
        self.cpu_seconds = time.process_time()
        self.exit()


app = Bare()
app.run(headless=True, size=(80, 24))
print(app.startup_seconds, app.cpu_seconds)
"""

HANDRAIL = """
import time

from tui.app import HandrailApp
from tui.startup import process_age


class UntilFilledIn(HandrailApp):
    filled_seconds = None

    def on_ready(self):
        # Textual then calls HandrailApp.on_ready, which records startup_seconds.
        self.cpu_seconds = time.process_time()
        self.set_interval(0.005, self.check)

    def check(self):
        if self.start_screen.catalog is not None:  # set once shown in the form
            self.filled_seconds = process_age()
            self.exit()


app = UntilFilledIn()
app.run(headless=True, size=(80, 24))
print(app.startup_seconds, app.cpu_seconds, app.filled_seconds)
"""

APPS = {"bare Textual app": BARE, "handrail": HANDRAIL}


def measure(code: str, home: str) -> list[float]:
    env = {
        **os.environ,
        "HANDRAIL_HOME": home,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONPYCACHEPREFIX": os.path.join(home, "pycache"),
    }
    env.pop("TEXTUAL", None)  # no devtools
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # else handrail's own modules compile on every run
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=home, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed ({done.returncode}):\n{done.stderr}")
    return [float(x) for x in done.stdout.strip().splitlines()[-1].split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in APPS}
    cpu: dict[str, list[float]] = {name: [] for name in APPS}
    filled: list[float] = []
    with tempfile.TemporaryDirectory(prefix="handrail-bench-") as home:
        for code in APPS.values():  # warm the file cache and the bytecode once
            measure(code, home)
        for _ in range(args.rounds):
            for name, code in APPS.items():
                first, first_cpu, *rest = measure(code, home)
                times[name].append(first)
                cpu[name].append(first_cpu)
                filled.extend(rest)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"time to first frame, {args.rounds} rounds (seconds since process start; load {load:.1f} on {os.cpu_count()} CPUs):")
    for name, values in times.items():
        print(f"  {name:<18} median {statistics.median(values):.3f}  min {min(values):.3f}  max {max(values):.3f}")
    ratio = statistics.median(times["handrail"]) / statistics.median(times["bare Textual app"])
    print(f"  ratio handrail / bare: {ratio:.2f}")
    # CPU seconds spent by then: what the wall clock shows on an idle machine, less the waits.
    cpu_ratio = statistics.median(cpu["handrail"]) / statistics.median(cpu["bare Textual app"])
    medians = "  ".join(f"{name} {statistics.median(values):.3f}" for name, values in cpu.items())
    print(f"  CPU seconds by the first frame, medians: {medians}  ratio {cpu_ratio:.2f}")
    print(f"handrail's start screen filled in: median {statistics.median(filled):.3f}  min {min(filled):.3f}  max {max(filled):.3f}")


if __name__ == "__main__":
    main()
