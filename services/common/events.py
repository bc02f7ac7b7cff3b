"""Wake-ups for subscribers of a sequenced event table (the registry's WatchEvents, the
monitor's WatchAlerts).

Commits in this process wake subscribers at once; commits by another process on the
same database are seen by polling at ``poll_s``. The database stays the only source of
events: a wake-up only says "read again".
"""

from __future__ import annotations

import asyncio


class SequenceHub:
    def __init__(self, poll_s: float = 0.2) -> None:
        self._event = asyncio.Event()
        self.poll_s = poll_s
        self.latest = 0

    async def committed(self, sequence: int) -> None:
        self.latest = max(self.latest, sequence)
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return when a sequence above ``seen`` was committed here, or after ``timeout``."""
        if self.latest > seen:
            return
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return
