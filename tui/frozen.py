"""Frozen: everything that differs between two runs of the app, held still.

Snapshot tests (and demos that must look the same every time) give `HandrailApp` a
`Frozen`: simulated time stands at `now` and moves only when fast-forwarded, the session
id and the operator's OS user are fixed, and the simulated account's random ids (account,
key ids, secrets) are seeded. Nothing here is used unless a `Frozen` is given.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steps.clock import SimClock


class FrozenClock(SimClock):
    """Simulated time that stands still: waits end only when time is advanced.

    `release()` lets every wait pass in simulated time from then on (the app calls it
    on the way out, so no worker is left sleeping on a clock nobody will advance).
    """

    def __init__(self, start: datetime) -> None:
        super().__init__(offset=0.0, auto_advance=False)
        self.start = start

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.offset

    def release(self) -> None:
        self.auto_advance = True
        self.wake()


@dataclass(frozen=True)
class Frozen:
    now: datetime = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    session_id: str = "20261127-140000-demo"
    os_user: str = "operator"
    seed: int = 2026

    def clock(self) -> FrozenClock:
        return FrozenClock(self.now)

    def journal(self, path: Path):
        """A journal whose next session gets `session_id`."""
        from steps.journal import Journal

        session_id = self.session_id

        class FixedIdJournal(Journal):
            def create_session(self, **fields: Any):
                fields.setdefault("id", session_id)
                return super().create_session(**fields)

        return FixedIdJournal(path)

    @contextmanager
    def seeded(self, salt: str) -> Iterator[None]:
        """Inside: the stdlib's random (the simulated account id) and moto's (key ids,
        secrets) draw a fixed sequence. The stdlib's state is put back on the way out,
        so nothing else in the process becomes predictable."""
        state = random.getstate()
        random.seed(f"{self.seed}:{salt}")
        self.seed_moto(salt)
        try:
            yield
        finally:
            random.setstate(state)

    def seed_moto(self, salt: str) -> None:
        """Seed moto's random source: called before each step runs, so a step's key ids
        depend on that step alone, not on how many calls the steps before it made."""
        try:
            from moto.moto_api._internal import mock_random
        except ImportError:  # no sandbox installed: nothing to seed
            return
        mock_random.seed(f"{self.seed}:moto:{salt}")
