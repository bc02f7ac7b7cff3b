"""What every fuzz module shares: generic calls of any RPC through a synchronous channel,
the checks made on every answer, the hypothesis settings and the figures.

Examples per service come from ``KEEL_FUZZ_EXAMPLES`` (default 500, spread evenly over
the service's RPCs); the run is fixed by ``KEEL_FUZZ_SEED`` (default 0; ``random`` picks
one and prints it), so a failure reproduces with the command printed under it. The slow
suite::

    KEEL_FUZZ_EXAMPLES=10000 KEEL_FUZZ_SEED=random .venv/bin/pytest -m fuzz tests/fuzz
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import text_format
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st

from services.common.identity import IDENTITY_HEADER

EXAMPLES = int(os.environ.get("KEEL_FUZZ_EXAMPLES", "500"))
_SEED = os.environ.get("KEEL_FUZZ_SEED", "0")
SEED = random.randrange(2**32) if _SEED == "random" else int(_SEED)
DEADLINE_S = float(os.environ.get("KEEL_FUZZ_DEADLINE_S", "10"))
# Per test (one RPC): room to shrink a failure, hangs included, and print it.
TIMEOUT_S = 600 + EXAMPLES // 10
# How long a watch (or a client stream held open) runs before the test cancels it.
CANCEL_AFTER_S = 0.15
MAX_RESPONSES = 1_000
# A Python traceback, or a frame of one, inside a status message.
STACK_TRACE = re.compile(r"Traceback|File \"|line \d+,? in ")
USERS = ("alice", "bob", "carol", "admin", "anonymous", "")


@dataclass(frozen=True)
class Rpc:
    """One method of a service, callable without its generated stub."""

    method: MethodDescriptor
    endless: bool  # a watch: it runs until the caller cancels it

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def response(self) -> type[Message]:
        return GetMessageClass(self.method.output_type)


def rpcs(
    service: ServiceDescriptor, endless: Sequence[str] = (), last: Sequence[str] = ()
) -> list[Rpc]:
    """Every method of ``service``; those that remove state (by name, and ``last``) come
    last, so that the others meet the resources the module set up."""
    removing = ("Delete", "Archive", "Reject", "Rollback", "Abort", *last)
    methods = sorted(service.methods, key=lambda m: m.name.startswith(removing))
    return [Rpc(m, m.name in endless) for m in methods]


def examples_per_rpc(service_rpcs: Sequence[Rpc]) -> int:
    return max(1, math.ceil(EXAMPLES / len(service_rpcs)))


def _short(message: Message, limit: int = 1500) -> str:
    text = text_format.MessageToString(message, as_one_line=True, print_unknown_fields=True)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


@dataclass(frozen=True)
class Call:
    """What one example sends: the request (or stream of requests) and the metadata;
    ``hold_open`` keeps a client stream open until the test cancels it."""

    requests: tuple[Message, ...]
    metadata: tuple[tuple[str, str], ...]
    hold_open: bool = False

    def __repr__(self) -> str:
        shown = ", ".join(f"<{_short(r)}>" for r in self.requests)
        return f"Call([{shown}], metadata={self.metadata!r}, hold_open={self.hold_open})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How hypothesis shows a falsifying example (else field by field, in full)."""
        printer.text(repr(self))


_METADATA = st.one_of(
    st.just(()),
    st.sampled_from(USERS).map(lambda user: ((IDENTITY_HEADER, user),)),
    # Legal header values are printable ASCII.
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(
        lambda user: ((IDENTITY_HEADER, user),)
    ),
)


def call(request: Message) -> Call:
    """One request without metadata (a regression example)."""
    return Call((request,), ())


def calls(
    rpc: Rpc,
    requests: st.SearchStrategy[Message],
    streams: st.SearchStrategy[list[Message]] | None = None,
) -> st.SearchStrategy[Call]:
    """Calls of ``rpc``: one request, or for a client stream a few (``streams``: almost
    valid sequences), possibly held open."""
    if not rpc.method.client_streaming:
        return st.builds(Call, requests.map(lambda r: (r,)), _METADATA)
    sequences = st.lists(requests, max_size=4)
    if streams is not None:
        sequences = st.one_of(sequences, streams, streams)
    return st.builds(Call, sequences.map(tuple), _METADATA, st.booleans())


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: int
    cancelled: bool  # by the test, on purpose


def _multicallable(channel: grpc.Channel, rpc: Rpc) -> Any:
    kind = ("stream" if rpc.method.client_streaming else "unary") + (
        "_stream" if rpc.method.server_streaming else "_unary"
    )
    return getattr(channel, kind)(
        rpc.path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=rpc.response.FromString,
    )


def invoke(channel: grpc.Channel, rpc: Rpc, call: Call) -> Outcome:
    """Make the call, every one with a deadline; watches and held-open streams are
    cancelled after ``CANCEL_AFTER_S``."""
    release = threading.Event()

    def stream() -> Iterator[Message]:
        yield from call.requests
        if call.hold_open:
            release.wait(DEADLINE_S)

    argument: Any = stream() if rpc.method.client_streaming else call.requests[0]
    cancel_after = CANCEL_AFTER_S if rpc.endless or call.hold_open else None
    options = {"timeout": DEADLINE_S, "metadata": call.metadata}
    try:
        if rpc.method.server_streaming:
            return _read(_multicallable(channel, rpc)(argument, **options), cancel_after)
        return _wait(_multicallable(channel, rpc).future(argument, **options), cancel_after)
    finally:
        release.set()


def _read(call: Any, cancel_after: float | None) -> Outcome:
    cancelled = threading.Event()

    def cancel() -> None:
        if call.cancel():
            cancelled.set()

    timer = threading.Timer(cancel_after, cancel) if cancel_after else None
    if timer:
        timer.start()
    count = 0
    try:
        for _ in call:
            count += 1
            if count >= MAX_RESPONSES:
                cancel()
                break
    except grpc.RpcError:
        pass
    finally:
        if timer:
            timer.cancel()
    return Outcome(call.code(), call.details() or "", count, cancelled.is_set())


def _wait(future: Any, cancel_after: float | None) -> Outcome:
    cancelled = False
    try:
        future.result(timeout=cancel_after)
    except grpc.FutureTimeoutError:
        cancelled = future.cancel()
    except grpc.RpcError:
        pass
    return Outcome(future.code(), future.details() or "", int(future.done()), cancelled)


def problems(outcome: Outcome) -> list[str]:
    """What is wrong with an answer, whatever the request was."""
    found = []
    if outcome.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        found.append(f"answered {outcome.code.name}")
    if outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        found.append(f"no answer within the {DEADLINE_S:g} s deadline (a hang)")
    if outcome.code == grpc.StatusCode.UNAVAILABLE:  # every dependency is up here
        found.append("answered UNAVAILABLE (retry later) with every dependency up")
    if outcome.code == grpc.StatusCode.CANCELLED and not outcome.cancelled:
        found.append("the server cancelled the call")
    if "metadata size exceeds" in outcome.details:
        found.append("a status too large for the client's trailer limit")
    if STACK_TRACE.search(outcome.details):
        found.append("a stack trace in the status message")
    return found


@dataclass
class Tally:
    """Figures of one service's run, printed at the end of the session."""

    service: str
    codes: Counter[str] = field(default_factory=Counter)
    by_rpc: dict[str, Counter[str]] = field(default_factory=dict)
    failures: int = 0
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.codes.values())

    def line(self) -> str:
        codes = ", ".join(f"{code} {n}" for code, n in self.codes.most_common())
        return (
            f"fuzz {self.service}: {self.requests} requests in {self.seconds:.1f} s, "
            f"failures {self.failures} ({codes})"
        )

    def record(self, rpc: Rpc, outcome: Outcome, failed: bool) -> None:
        self.codes[outcome.code.name] += 1
        self.by_rpc.setdefault(rpc.name, Counter())[outcome.code.name] += 1
        self.failures += failed

    def rpc_lines(self) -> list[str]:
        return [
            f"  {name}: " + ", ".join(f"{code} {n}" for code, n in codes.most_common())
            for name, codes in self.by_rpc.items()
        ]


def fuzz(
    channel: grpc.Channel,
    rpc: Rpc,
    strategy: st.SearchStrategy[Call],
    examples: int,
    tally: Tally,
    nodeid: str,
    regressions: Sequence[Call] = (),
) -> None:
    """Send ``regressions`` (calls that once failed), then ``examples`` examples of
    ``strategy``, to ``rpc`` and check every answer."""

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        print_blob=True,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )
    @given(strategy)
    def one(call: Call) -> None:
        outcome = invoke(channel, rpc, call)
        found = problems(outcome)
        tally.record(rpc, outcome, bool(found))
        assert not found, (
            f"{rpc.name}: {'; '.join(found)}; status {outcome.code.name} "
            f"{outcome.details!r} after {outcome.responses} responses"
        )

    for call in regressions:
        one = example(call)(one)
    started = time.perf_counter()
    try:
        one()
    except BaseException as error:
        error.add_note(
            f"reproduce: KEEL_FUZZ_SEED={SEED} KEEL_FUZZ_EXAMPLES={EXAMPLES} "
            f".venv/bin/pytest '{nodeid}'"
        )
        raise
    finally:
        tally.seconds += time.perf_counter() - started
