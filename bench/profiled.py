"""``python -m bench.profiled OUT keel-args…``: run the ``keel`` command under cProfile,
profiling every thread (the registry does its database work in worker threads), and
write the merged statistics to OUT when it exits.

Each thread is timed by its own CPU clock (``time.thread_time``), so the profile says
where CPU goes; time spent waiting (for a lock, the network, a sleeping busy handler)
does not show.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from typing import Any

from keel.cli import main as keel_main

_profiles: list[cProfile.Profile] = []
_original_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    _profiles.append(profile)
    profile.enable()
    try:
        _original_run(self)
    finally:
        profile.disable()


def main() -> Any:
    out, sys.argv = sys.argv[1], ["keel", *sys.argv[2:]]
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        return keel_main()
    finally:
        profile.disable()
        stats = pstats.Stats(profile)
        for other in _profiles:
            stats.add(other)
        stats.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main())
