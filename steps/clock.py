"""Clocks: the real one, and the simulated one training runs on.

Every wait in the engine goes through a clock, so training can fast-forward a 60 s
consistency wait or the 24 h observation gate while live mode waits for real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


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
