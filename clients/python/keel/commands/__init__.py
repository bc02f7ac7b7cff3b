"""The ``keel`` commands that call a running Keel, one module per command group.

Each module is named by an entry point of the ``keel.commands`` group (see
``keel.cli``): ``models``, ``versions``, ``alias``, ``gates``, ``approve``, ``deploy``,
``predict``, ``drift``, ``perf``, ``fairness``, ``alerts`` and ``audit``.

Every command takes ``--registry``, ``--inference`` and ``--monitor`` (``host:port``;
defaults ``127.0.0.1:50051``/``50052``/``50053``, or ``KEEL_REGISTRY``,
``KEEL_INFERENCE``, ``KEEL_MONITOR``), ``--user`` (``KEEL_USER``) and ``--json``: exactly
one JSON document on stdout and nothing else there (progress and errors go to stderr).

Exit codes, a closed table that scripts can rely on:

====  ==========================================================================
0     done (``keel drift`` without ``--fail-on-drift``: whatever it found)
1     a check failed: ``keel gates check`` would refuse the move, ``keel drift
      --fail-on-drift`` found dataset drift
2     usage error: a bad flag, address, time or input file, a missing optional
      library (numpy, pandas), or INVALID_ARGUMENT / OUT_OF_RANGE from a service
3     not found: NOT_FOUND from a service (a model, version, alias, deployment…)
4     refused: FAILED_PRECONDITION (a gate refused, a version not READY),
      ALREADY_EXISTS, ABORTED (a compare-and-set lost), PERMISSION_DENIED,
      UNAUTHENTICATED, RESOURCE_EXHAUSTED
5     service unavailable or failing: UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL
      and any other status
130   interrupted (Ctrl-C)
====  ==========================================================================

A failed call prints one line on stderr, ``keel: <STATUS>: <message>``, never a
traceback, and nothing on stdout.
"""

from keel.commands._common import (
    EXIT_CHECK_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    exit_code_for,
)

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "exit_code_for",
]
