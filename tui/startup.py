"""How long this process has been alive: the app's time to first frame is read from it.

Linux knows when a process started (`/proc/self/stat`, field 22, in clock ticks since
boot) and how long ago the machine booted (`CLOCK_BOOTTIME`), so the age includes the
interpreter's own start and every import before the app runs. Elsewhere the age counts
from the first import of this module, after textual's: a rough figure only.
"""

from __future__ import annotations

import os
import time

_IMPORTED = time.perf_counter()


def process_age() -> float:
    """Seconds since this process started (10 ms resolution on Linux)."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read().decode()
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED
