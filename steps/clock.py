"""Clocks: the real one, and the simulated one training runs on, and `poll`.

Every wait in the engine goes through a clock, so training can fast-forward a 60 s
consistency wait or the 24 h observation gate while live mode waits for real. Every
polling wait goes through `poll` (or `Clock.poll`), so each one reports progress and
sleeps the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

T = TypeVar("T")
# A wait in progress: (what is polled, seconds elapsed, seconds it may take at most).
Progress = Callable[[str, float, float], None]


def utc(dt: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are taken as UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso(dt: datetime) -> str:
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def human_duration(seconds: float) -> str:
    """3d 4h, 23h 59m, 4m 10s, 4.1 s: precise enough for an operator, never noisy."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    if days:
        return f"{days}d {h}h" if h else f"{days}d"
    if hours:
        return f"{hours}h {m}m" if m else f"{hours}h"
    return f"{m}m {s}s" if s else f"{m}m"


@dataclass(frozen=True)
class Polled(Generic[T]):
    """How a poll ended: the last check's value, whether it passed, after how many
    checks and how many seconds."""

    value: T
    ok: bool
    attempts: int
    elapsed: float


def poll(
    check: Callable[[], T],
    *,
    deadline: float,
    interval: float,
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
    until: Callable[[T], bool] = bool,
    progress: Progress | None = None,
    what: str = "",
    attempts: int | None = None,
    max_interval: float | None = None,
) -> Polled[T]:
    """Call `check` until `until(value)` holds, `deadline` seconds have passed, or
    `attempts` checks were made; never raises by itself (an exception from `check`
    propagates: the caller decides what is worth waiting out).

    The first check is immediate. Between checks: `progress(what, elapsed, deadline)`
    (not for a deadline-less poll), then a sleep of `interval`, cut to end at the
    deadline so the last check falls on it. A check that began before the deadline and
    ended past it (a slow call; in a training campaign, the shared simulated clock moved
    by another session meanwhile) is followed by one last check at once. With
    `max_interval`, the interval doubles after each sleep up to that (backoff for a slow
    remote job).
    """
    start = monotonic()
    count = 0
    while True:
        count += 1
        began = monotonic() - start
        value = check()
        elapsed = monotonic() - start
        if until(value):
            return Polled(value, True, count, elapsed)
        if began >= deadline or (attempts is not None and count >= attempts):
            return Polled(value, False, count, elapsed)
        if progress is not None and math.isfinite(deadline):
            progress(what, min(elapsed, deadline), deadline)
        sleep(max(0.0, min(interval, deadline - elapsed)))
        if max_interval is not None:
            interval = min(interval * 2, max_interval)


class Clock:
    """Real time. `sleep` can be cut short by `wake()` (the TUI's cancel)."""

    simulated = False

    def __init__(self) -> None:
        self._wake = threading.Event()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self._wake.clear()
        self._wake.wait(max(0.0, seconds))

    def wake(self) -> None:
        self._wake.set()

    def poll(
        self,
        check: Callable[[], T],
        *,
        deadline: float,
        interval: float,
        until: Callable[[T], bool] = bool,
        progress: Progress | None = None,
        what: str = "",
    ) -> Polled[T]:
        """`poll` on this clock: a simulated clock fast-forwards the sleeps."""
        return poll(
            check,
            deadline=deadline,
            interval=interval,
            sleep=self.sleep,
            monotonic=self.monotonic,
            until=until,
            progress=progress,
            what=what,
        )


class SimClock(Clock):
    """Real time plus an offset that only grows.

    `advance` moves simulated time forward (fast-forward); with `auto_advance` every
    `sleep` advances instead of waiting, which is how headless training runs.
    Listeners hear every advance (the sandbox runs its scheduled workloads on them).
    """

    simulated = True

    def __init__(self, offset: float = 0.0, auto_advance: bool = False) -> None:
        super().__init__()
        self.offset = float(offset)
        self.auto_advance = auto_advance
        self._cond = threading.Condition()
        self._listeners: list[Callable[[datetime, datetime], None]] = []

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def on_advance(self, listener: Callable[[datetime, datetime], None]) -> None:
        self._listeners.append(listener)

    def advance(self, seconds: float) -> None:
        if seconds <= 0:
            return
        before = self.now()
        with self._cond:
            self.offset += seconds
            self._cond.notify_all()
        after = self.now()
        for listener in list(self._listeners):
            listener(before, after)

    def advance_to(self, when: datetime) -> float:
        """Fast-forward to `when` (no-op if it is already past); returns seconds skipped."""
        delta = (utc(when) - self.now()).total_seconds()
        if delta > 0:
            self.advance(delta)
        return max(0.0, delta)

    def sleep(self, seconds: float) -> None:
        if self.auto_advance:
            self.advance(seconds)
            return
        target = self.monotonic() + max(0.0, seconds)
        self._wake.clear()
        with self._cond:
            # Woken early by advance() (fast-forward) or wake() (cancel).
            while not self._wake.is_set():
                remaining = target - self.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.25))

    def wake(self) -> None:
        super().wake()
        with self._cond:
            self._cond.notify_all()
