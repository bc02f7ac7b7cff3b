"""Triton's statistics and repository extensions: batcher counters and the serving
table as Triton's messages."""

from __future__ import annotations

from keel.oip.v2 import open_inference_pb2 as oip
from services.inference.batching import Duration
from services.inference.serving import LoadedVersion, Server


def _duration(d: Duration) -> oip.StatisticDuration:
    return oip.StatisticDuration(count=d.count, ns=d.ns)


def model_statistics(version: LoadedVersion) -> oip.ModelStatistics:
    s = version.batcher.statistics()
    return oip.ModelStatistics(
        name=version.info.model,
        version=str(version.info.version),
        last_inference=s.last_inference_ms,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
        inference_stats=oip.InferStatistics(
            success=_duration(s.success),
            fail=_duration(s.fail),
            queue=_duration(s.queue),
            compute_input=_duration(s.compute_input),
            compute_infer=_duration(s.compute_infer),
            compute_output=_duration(s.compute_output),
        ),
        batch_stats=[
            oip.InferBatchStatistics(
                batch_size=b.batch_size,
                compute_input=_duration(b.compute_input),
                compute_infer=_duration(b.compute_infer),
                compute_output=_duration(b.compute_output),
            )
            for b in s.batch_stats
        ],
    )


def repository_index(server: Server, ready_only: bool) -> oip.RepositoryIndexResponse:
    """Every version this replica knows: READY when loaded, UNAVAILABLE with the reason
    when its load failed."""
    index = oip.RepositoryIndexResponse()
    for model, number in sorted(server.loaded):
        index.models.add(name=model, version=str(number), state="READY")
    if not ready_only:
        for (model, number), reason in sorted(server.failures.items()):
            if (model, number) not in server.loaded:
                index.models.add(
                    name=model, version=str(number), state="UNAVAILABLE", reason=reason
                )
    return index
