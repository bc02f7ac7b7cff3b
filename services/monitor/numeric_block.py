"""Counting every numeric feature of a batch at once: one pass in C over each column
(``_kernels.c``) for its grid cells, reference bins, ranges, sums and extremes, then a few
fancy-indexed adds into the state. Per-column counting with numpy cost about 0.1 ms a
column for a 1,000-row batch, mostly call overhead; the numpy block that followed it
still made a dozen passes over the whole block (ADR 0013)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from services.monitor._kernels import count_numeric
from services.monitor.aggregates import State, slots
from services.monitor.reference import (
    GRID_CELLS,
    MULTICLASS,
    FeatureSpec,
    ModelReference,
    NumericReference,
)

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
PREDICTION = "prediction"  # the output's name in the block (its arrays are n:prediction)
CELLS = GRID_CELLS + 3  # under, G cells, over, and a slot for missing values
# Up to this many edges, a value's bin is found by comparing it with every edge (no
# branches, vectorised): a binary search (``searchsorted``) mispredicts its branches on
# fresh data and cost 3.5x as much for the deciles' 9 edges (250 vs 71 us a batch).
COMPARE_EDGES = 32


@dataclass(frozen=True)
class Block:
    """The constants of the numeric features that have a reference, in order, then the
    model's numeric output (``prediction``: a binary classifier's score, a regressor's
    value) when it has one, with no allowed range."""

    names: tuple[str, ...]
    lo: Floats
    scale: Floats
    edges: Floats  # [features, most edges], padded with +inf
    bins: tuple[int, ...]  # bins per feature
    ref_min: Floats
    ref_max: Floats
    range_min: Floats
    range_max: Floats

    @cached_property
    def params(self) -> Floats:
        """Per feature, what ``count_numeric`` reads: grid low and scale, allowed range,
        reference range, then the padded edges."""
        fixed = [self.lo, self.scale, self.range_min, self.range_max, self.ref_min, self.ref_max]
        table = np.column_stack([*fixed, self.edges]) if len(self.names) else self.edges
        return np.ascontiguousarray(table, dtype=np.float64)

    @staticmethod
    def of(reference: ModelReference) -> Block:
        chosen = [
            (f, r)
            for f in reference.features
            if f.numeric and isinstance(r := reference.columns.get(f.name), NumericReference)
        ]
        output = reference.columns.get(PREDICTION)
        if reference.task != MULTICLASS and isinstance(output, NumericReference):
            chosen.append((FeatureSpec(PREDICTION, "numeric"), output))
        grids = [r.grid() for _, r in chosen]
        widest = max([len(r.edges) for _, r in chosen] + [1])
        edges = np.full((len(chosen), widest), np.inf)
        for i, (_, r) in enumerate(chosen):
            edges[i, : len(r.edges)] = r.edges
        return Block(
            names=tuple(f.name for f, _ in chosen),
            lo=np.array([g[0] for g in grids]),
            scale=np.array([GRID_CELLS / (g[1] - g[0]) for g in grids]),
            edges=edges,
            bins=tuple(len(r.edges) + 1 for _, r in chosen),
            ref_min=np.array([r.minimum for _, r in chosen]),
            ref_max=np.array([r.maximum for _, r in chosen]),
            range_min=np.array([f.range_min for f, _ in chosen]),
            range_max=np.array([f.range_max for f, _ in chosen]),
        )


def count_block(state: State, block: Block, columns: dict[str, tuple[Floats, Mask]]) -> set[str]:
    """Count the block's features present in ``columns``; returns the names counted.

    One pass over each column in C (``_kernels.count_numeric``): it counts exactly what
    ``accumulate.count_numeric`` counts one column at a time with numpy (the tests hold
    it to that), without a dozen passes over the whole block."""
    present = [i for i, name in enumerate(block.names) if name in columns]
    if not present:
        return set()
    names = [block.names[i] for i in present]
    f = len(present)
    edge_count = block.edges.shape[1]
    every = f == len(block.names)
    params = block.params if every else block.params[present]
    ints = np.zeros((f, 4 + CELLS + edge_count + 2), dtype=np.int64)
    floats = np.empty((f, 4), dtype=np.float64)
    values = [np.ascontiguousarray(columns[name][0], dtype=np.float64) for name in names]
    masks = [np.ascontiguousarray(columns[name][1], dtype=np.bool_) for name in names]
    count_numeric(values, masks, params, edge_count, GRID_CELLS, ints, floats)
    pick = np.asarray(present)
    grids, bins = ints[:, 4 : 4 + CELLS], ints[:, 4 + CELLS :]
    _scatter(
        state, block, pick, ints[:, :4], grids, bins, floats[:, :2], floats[:, 2], floats[:, 3]
    )
    return set(names)


def bin_indices(edges: Floats, x: Floats) -> npt.NDArray[np.int64]:
    """``searchsorted(edges[j], x[j], side="right")`` for each row ``j`` of ``x``: the
    number of edges at or below each value (``edges``: one increasing row per row of
    ``x``, padded with +inf). NaN counts as below every edge here; callers mask it."""
    if edges.shape[1] > COMPARE_EDGES:
        index = np.empty(x.shape, dtype=np.int64)
        for j in range(len(x)):
            index[j] = np.searchsorted(edges[j], x[j], side="right")
        return index
    count = np.zeros(x.shape, dtype=np.uint8)
    for k in range(edges.shape[1]):
        count += x >= edges[:, k : k + 1]
    return count.astype(np.int64)


@dataclass(frozen=True)
class Targets:
    """Where each block feature's arrays sit in a state's flat buffers."""

    count: npt.NDArray[np.intp]  # [features, 4] in the counts buffer
    grid: npt.NDArray[np.intp]  # [features, G + 2] in the counts buffer
    bins: list[npt.NDArray[np.intp]]  # per feature, its bins in the counts buffer
    sums: npt.NDArray[np.intp]  # [features, 2] in the sums buffer
    mins: npt.NDArray[np.intp]  # [features] in the minima buffer
    maxs: npt.NDArray[np.intp]  # [features] in the maxima buffer

    @staticmethod
    def of(state: State, block: Block) -> Targets:
        where = slots(state.layout).where

        def span(name: str) -> npt.NDArray[np.intp]:
            _, begin, end, _ = where[name]
            return np.arange(begin, end)

        names = [f"n:{name}" for name in block.names]
        return Targets(
            count=np.array([span(f"{p}:count") for p in names]).reshape(len(names), 4),
            grid=np.array([span(f"{p}:grid") for p in names]).reshape(len(names), -1),
            bins=[span(f"{p}:bins") for p in names],
            sums=np.array([span(f"{p}:sum") for p in names]).reshape(len(names), 2),
            mins=np.array([where[f"{p}:min"][1] for p in names], dtype=np.intp),
            maxs=np.array([where[f"{p}:max"][1] for p in names], dtype=np.intp),
        )


def targets(state: State, block: Block) -> Targets:
    found = block.__dict__.get("_targets")
    if found is None:
        found = Targets.of(state, block)
        block.__dict__["_targets"] = found
    assert isinstance(found, Targets)
    return found


def _scatter(
    state: State,
    block: Block,
    pick: npt.NDArray[np.intp],
    counts: npt.NDArray[np.int64],
    grids: npt.NDArray[np.int64],
    bins: npt.NDArray[np.int64],
    sums: Floats,
    lows: Floats,
    highs: Floats,
) -> None:
    """Add the block's results into the state's buffers: a few fancy-indexed adds
    (each position appears once) instead of six small additions per feature."""
    at = targets(state, block)
    ints, floats, minima, maxima = state.buffers
    ints[at.count[pick]] += counts
    ints[at.grid[pick]] += grids[:, : GRID_CELLS + 2]
    places = np.concatenate([at.bins[i] for i in pick])
    values = np.concatenate([bins[j, : len(at.bins[i])] for j, i in enumerate(pick)])
    ints[places] += values
    floats[at.sums[pick]] += sums
    minima[at.mins[pick]] = np.fmin(minima[at.mins[pick]], lows)
    maxima[at.maxs[pick]] = np.fmax(maxima[at.maxs[pick]], highs)
