"""What time it is, for the deadlines and intervals of poll loops.

The one place the pipeline reads the time of day from, so a rehearsal can run the handlers on
simulated time (`use`) without touching `time.time` for everything else in the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_source: Callable[[], float] = time.time


def now() -> float:
    """Seconds since the epoch."""
    return _source()


def use(source: Callable[[], float]) -> Callable[[], float]:
    """Read the time from `source` from now on; returns the source it replaces, to put back."""
    global _source
    previous, _source = _source, source
    return previous
