"""Time to first frame: handrail's app against a bare Textual app, same machine, same run.

Each measurement is a fresh Python process that runs the app headless and exits from
its first `on_ready` (Textual sends Ready once the first frame is on screen), printing
the seconds since the process started (`tui.startup.process_age`, read from
/proc/self/stat on Linux). The two apps alternate, so both see the same machine load.

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
from textual.app import App
from textual.widgets import Static

from tui.startup import process_age


class Bare(App):
    def compose(self):
        yield Static("hello")

    def on_ready(self):
        self.startup_seconds = process_age()
        self.exit()


app = Bare()
app.run(headless=True, size=(80, 24))
print(app.startup_seconds)
"""

HANDRAIL = """
from tui.app import HandrailApp


class FirstFrameOnly(HandrailApp):
    def on_ready(self):
        # Textual also calls HandrailApp.on_ready, which records startup_seconds.
        self.exit()


app = FirstFrameOnly()
app.run(headless=True, size=(80, 24))
print(app.startup_seconds)
"""

APPS = {"bare Textual app": BARE, "handrail": HANDRAIL}


def measure(code: str, home: str) -> float:
    env = {**os.environ, "HANDRAIL_HOME": home, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TEXTUAL", None)  # no devtools
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=home, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed ({done.returncode}):\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in APPS}
    with tempfile.TemporaryDirectory(prefix="handrail-bench-") as home:
        for code in APPS.values():  # warm the file cache and the bytecode once
            measure(code, home)
        for _ in range(args.rounds):
            for name, code in APPS.items():
                times[name].append(measure(code, home))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"time to first frame, {args.rounds} rounds (seconds since process start):")
    for name, values in times.items():
        print(f"  {name:<18} median {medians[name]:.3f}  min {min(values):.3f}  max {max(values):.3f}")
    ratio = medians["handrail"] / medians["bare Textual app"]
    print(f"  ratio handrail / bare: {ratio:.2f}")


if __name__ == "__main__":
    main()
