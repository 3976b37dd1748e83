"""A command's `now` that moves on while the command waits.

Routes read the time once per request (`api.deps.current_time`, which tests replace). A
command that waits on something slow (the processor's answer, another transaction's locks)
and then decides by the time, whether a hold still runs, must decide by the time after the
wait: `Elapsing(now)()` is the request's `now` plus the real time elapsed since.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta


class Elapsing:
    def __init__(self, now: datetime) -> None:
        self._now = now
        self._read_at = time.monotonic()

    def __call__(self) -> datetime:
        return self._now + timedelta(seconds=time.monotonic() - self._read_at)
