"""Key press to frame: how long the checklist takes to show a key's effect, with and
without a step's worker running.

The real app runs headless (`App.run_test`) on a training session, not frozen: the
simulated clock runs in real time and the simulated AWS account is served on loopback,
as for an operator. The step timed against is validate-new-key of the slow-propagation
scenario with a 55 s propagation delay: its worker polls STS every 2 s and reports
progress until the new key works, and the app's 1 s tick keeps running too.

Each key goes in as a terminal's key would (the driver posts a `Key` to the app, nothing
more). Its latency runs from then to the last frame drawn before the app is quiet again:
no message queued on the screen and its widgets, nothing waiting to be laid out or
repainted, no animation. The frame is rendered to the bytes a terminal would get
(headless Textual stops short of that). Keys: ↓ and ↑ in the step list (the highlight
and the detail pane change), `?` and escape (the help opens and closes), in turn, with a
random 10-50 ms gap so the presses do not fall in step with the app's timers.

    python benchmarks/keypress.py            # 120 presses each way
    python benchmarks/keypress.py -n 300
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

KEYS = ("down", "up", "question_mark", "escape")
CHARS = {"question_mark": "?", "escape": "\x1b"}
STEP = "validate-new-key"


def scenario_file(home: Path) -> str:
    """slow-propagation, its new key refused for 55 s instead of 20 s (its deadline is 60 s)."""
    from steps.sandbox import scenario as scenarios

    source = next(p for p in scenarios.shipped() if p.stem == "slow-propagation").read_text()
    assert "propagation_delay: 20s" in source
    path = home / "slow-propagation-55s.yaml"
    path.write_text(source.replace("propagation_delay: 20s", "propagation_delay: 55s"))
    return str(path)


def make_app(scenario: str):
    from textual._compositor import CompositorUpdate

    from tui.app import HandrailApp

    class Timed(HandrailApp):
        """The app, noting when each frame is drawn."""

        frames: list[float]

        frames: list[tuple[float, float]]  # (wall, this thread's CPU) at each frame

        def _display(self, screen, renderable) -> None:
            drawn = renderable is not None and not self._batch_count
            if drawn and isinstance(renderable, CompositorUpdate):
                renderable.render_segments(self.console)  # what a terminal would be sent
            super()._display(screen, renderable)
            if drawn:
                self.frames.append((time.perf_counter(), time.thread_time()))

    app = Timed(mode="training", scenario=scenario)
    app.frames = []
    return app


class FullCollections:
    """The cyclic collector's full (generation 2) passes: the UI stands still through each."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                self._started = time.perf_counter()
            else:
                self.seconds.append(time.perf_counter() - self._started)

    def take(self) -> list[float]:
        taken, self.seconds = self.seconds, []
        return taken


def quiet(app) -> bool:
    """Nothing left to handle or draw: no message queued, no pending refresh, no animation."""
    screen = app.screen
    if app.message_queue_size or screen._dirty_widgets or screen._layout_required or screen._repaint_required:
        return False
    if screen._scroll_required or screen._recompose_required or screen._callbacks or app.animator._animations:
        return False
    for widget in screen.walk_children(with_self=True):
        if widget.message_queue_size or widget._repaint_required or widget._layout_required or widget._recompose_required:
            return False
    return True


async def until_quiet(app, timeout: float = 10.0) -> None:
    end = time.perf_counter() + timeout
    while not quiet(app):
        if time.perf_counter() > end:
            raise SystemExit("the app did not settle within 10 s")
        await asyncio.sleep(0.001)


async def press(app, key: str, shown) -> tuple[float, float]:
    """Seconds from the key reaching the app to the last frame of its effect, and the UI
    thread's CPU seconds meanwhile; `shown()` says the effect has happened."""
    from textual import events

    await until_quiet(app)
    first = len(app.frames)
    event = events.Key(key, CHARS.get(key))
    event.set_sender(app)
    # As a terminal driver delivers a key. (pilot.press then waits on every widget in
    # turn, which would delay the very frame timed here.)
    start, cpu = time.perf_counter(), time.thread_time()
    app._driver.send_message(event)
    end = start + 10.0
    while not (len(app.frames) > first and shown() and quiet(app)):
        if time.perf_counter() > end:
            raise SystemExit(f"no frame within 10 s of pressing {key}")
        await asyncio.sleep(0.002)
    wall, cpu_at = app.frames[-1]
    return wall - start, cpu_at - cpu


async def presses(app, screen, count: int, rng: random.Random, worker: bool) -> dict[str, list[tuple[float, float]]]:
    """`count` timed presses cycling through KEYS on the checklist `screen`."""
    from tui.screens.help import HelpScreen

    steps = screen.query_one("#steps")
    times: dict[str, list[tuple[float, float]]] = {key: [] for key in KEYS}
    for i in range(count):
        if worker and (screen.idle or screen.running_step != STEP):
            raise SystemExit(f"the {STEP} worker ended after {i} presses (its wait is 55 s): use fewer (-n)")
        key = KEYS[i % len(KEYS)]
        if key in ("down", "up"):
            target = steps.highlighted + (1 if key == "down" else -1)
            shown = lambda t=target: steps.highlighted == t  # noqa: E731
        elif key == "question_mark":
            shown = lambda: isinstance(app.screen, HelpScreen) and app.screen.is_mounted  # noqa: E731
        else:
            shown = lambda: app.screen is screen  # noqa: E731
        times[key].append(await press(app, key, shown))
        await asyncio.sleep(rng.uniform(0.01, 0.05))
    return times


async def bench(count: int, scenario: str) -> tuple[dict, dict, int, list[float], list[float]]:
    from tui_helpers import idle, open_session, take_step

    app = make_app(scenario)
    rng = random.Random(8)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_session(pilot)
        for _ in range(3):  # pre-checks, claim-user (its 5 s settle), free-key-slot
            await take_step(pilot, screen)
            await idle(pilot, screen)
        await presses(app, screen, 2 * len(KEYS), rng, worker=False)  # warm-up: the help's first import
        collections = FullCollections()
        without = await presses(app, screen, count, rng, worker=False)
        collected_without = collections.take()
        # create-key: the simulated IAM's 55 s start now, so validate-new-key starts at once.
        await take_step(pilot, screen)
        await idle(pilot, screen)
        assert screen.current_id == STEP, screen.current_id

        progress = []
        screen.session.listen(lambda event: event.kind == "progress" and progress.append(event))
        if screen.shown_step != STEP:  # the first r shows the next step
            await pilot.press("r")
        await pilot.press("r")  # confirm: auto, so r runs it
        await asyncio.sleep(0.5)
        if screen.running_step != STEP:
            raise SystemExit(f"{STEP} did not start")
        collections.take()
        during = await presses(app, screen, count, rng, worker=True)
        collected_during = collections.take()
        polls = len(progress)

        await pilot.press("f")  # fast-forward the wait: the worker ends before the app does
        await idle(pilot, screen)
    return without, during, polls, collected_without, collected_during


def ms(values: list[float], q: float) -> float:
    """The q-th quantile (0.5: median, 0.99: p99) in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--presses", type=int, default=120, help="timed presses each way (default 120)")
    args = parser.parse_args()
    if args.presses < len(KEYS):  # each key is timed on its own: at least one press of each
        parser.error(f"-n/--presses: at least {len(KEYS)} (one press of each key: {', '.join(KEYS)}), got {args.presses}")
    with tempfile.TemporaryDirectory(prefix="handrail-bench-") as home:
        os.environ["HANDRAIL_HOME"] = home
        without, during, polls, gc_without, gc_during = asyncio.run(bench(args.presses, scenario_file(Path(home))))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"key press to frame, {args.presses} presses each way, the checklist at 80x24 (load {load:.1f} on {os.cpu_count()} CPUs):")
    print(f"  {'':<26}{'latency p50':>12}{'p99':>8}{'max':>8}   UI thread CPU p50   p99")
    for name, times in (("no worker running", without), (f"{STEP} polling", during)):
        wall = [w for values in times.values() for w, _ in values]
        cpu = [c for values in times.values() for _, c in values]
        print(
            f"  {name:<26}{ms(wall, 0.5):9.1f} ms{ms(wall, 0.99):5.0f} ms{ms(wall, 1):5.0f} ms"
            f"{ms(cpu, 0.5):14.1f} ms{ms(cpu, 0.99):5.0f} ms"
        )
    by_key = "  ".join(f"{key} {ms([w for w, _ in without[key]], 0.5):.0f}/{ms([w for w, _ in during[key]], 0.5):.0f}" for key in KEYS)
    print(f"  median latency by key, ms (no worker/polling): {by_key}")
    print(f"  ({polls} progress reports from the worker while its keys were timed)")
    for name, passes in (("no worker", gc_without), ("polling", gc_during)):
        longest = f", longest {max(passes) * 1000:.0f} ms" if passes else ""
        print(f"  full garbage collections while timing, {name}: {len(passes)}{longest}")


if __name__ == "__main__":
    main()
