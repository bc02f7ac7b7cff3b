"""WatchAlerts: every alert event after a resume point, in sequence order, then live
ones. Events committed in this process wake the stream at once (the hub); other
replicas' are found by polling the table every ``poll_s``."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from services.common.errors import OutOfRange
from services.monitor.alert_records import AlertEvent, severity_rank
from services.monitor.alert_store import AlertCore, AlertStore
from services.monitor.alert_validation import invalid

BATCH = 500


async def start_after(core: AlertCore, after: int | None, history_ns: int) -> int:
    """The sequence a stream resuming at ``after`` starts after (None: now; 0: the oldest
    retained event). OUT_OF_RANGE when ``after`` is past the newest event or older than
    the retained history."""
    if after is not None and after < 0:
        raise invalid("after_sequence", f"expected 0 or more, got {after}")
    cutoff = core.clock() - history_ns
    first, latest = await core.read(lambda store: store.event_bounds(cutoff))
    if after is None:
        return latest
    if after > latest:
        raise OutOfRange(
            f"after_sequence {after} is beyond the newest alert event ({latest}); "
            "re-read the alerts with ListAlerts and watch from now"
        )
    if after == 0:
        return first - 1
    if after < first - 1:
        raise OutOfRange(
            f"after_sequence {after} is older than the retained history (oldest event "
            f"{first}); re-read the alerts with ListAlerts and watch from now"
        )
    return after


def _after(seen: int, model: str, rank: int, store: AlertStore) -> list[AlertEvent]:
    return store.events_after(seen, model, rank, BATCH)


async def watch(
    core: AlertCore, after: int | None, model: str, min_severity: str, history_ns: int
) -> AsyncIterator[AlertEvent]:
    """Matching events after the resume point, then live ones; never ends by itself."""
    seen = await start_after(core, after, history_ns)
    rank = severity_rank(min_severity)
    while True:
        mark = core.hub.latest  # commits here after this wake the wait below
        events = await core.read(functools.partial(_after, seen, model, rank))
        for event in events:
            yield event
        if events:
            seen = events[-1].sequence
            if len(events) == BATCH:
                continue
        await core.hub.wait(mark, core.hub.poll_s)
