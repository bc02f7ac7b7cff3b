"""Counting every numeric feature of a batch in one pass: the columns side by side in one
matrix, one ``bincount`` for all the grids and one for all the reference bins. Per-column
counting cost about 0.1 ms a column for a 1,000-row batch, mostly numpy call overhead."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.monitor.aggregates import State
from services.monitor.reference import GRID_CELLS, ModelReference, NumericReference

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
CELLS = GRID_CELLS + 3  # under, G cells, over, and a slot for missing values


@dataclass(frozen=True)
class Block:
    """The constants of the numeric features that have a reference, in order."""

    names: tuple[str, ...]
    lo: Floats
    scale: Floats
    edges: Floats  # [features, most edges], padded with +inf
    bins: tuple[int, ...]  # bins per feature
    ref_min: Floats
    ref_max: Floats
    range_min: Floats
    range_max: Floats

    @staticmethod
    def of(reference: ModelReference) -> Block:
        chosen = [
            (f, r)
            for f in reference.features
            if f.numeric and isinstance(r := reference.columns.get(f.name), NumericReference)
        ]
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
    """Count the block's features present in ``columns``; returns the names counted."""
    present = [i for i, name in enumerate(block.names) if name in columns]
    if not present:
        return set()
    names = [block.names[i] for i in present]
    x = np.column_stack([columns[name][0] for name in names]).astype(np.float64, copy=False)
    missing = np.column_stack([columns[name][1] for name in names]) | ~np.isfinite(x)
    n, f = x.shape
    pick = np.asarray(present)
    offsets = np.arange(f) * CELLS
    cells = np.floor((x - block.lo[pick]) * block.scale[pick])
    np.clip(cells, -1, GRID_CELLS, out=cells, where=~missing)
    cells = np.where(missing, GRID_CELLS + 2, cells + 1).astype(np.int64) + offsets
    grids = np.bincount(cells.ravel(), minlength=f * CELLS).reshape(f, CELLS)
    edges = block.edges[pick]
    widest = edges.shape[1] + 2
    bin_index = (x[:, :, None] >= edges[None, :, :]).sum(axis=2)
    bin_index = np.where(missing, widest - 1, bin_index) + np.arange(f) * widest
    bins = np.bincount(bin_index.ravel(), minlength=f * widest).reshape(f, widest)
    values = np.where(missing, 0.0, x)
    out = ((x < block.range_min[pick]) | (x > block.range_max[pick])) & ~missing
    outside = ((x < block.ref_min[pick]) | (x > block.ref_max[pick])) & ~missing & ~out
    sums, squares = values.sum(axis=0), np.einsum("ij,ij->j", values, values)
    lows = np.where(missing, np.inf, x).min(axis=0)
    highs = np.where(missing, -np.inf, x).max(axis=0)
    missed, outs, outsides = missing.sum(axis=0), out.sum(axis=0), outside.sum(axis=0)
    for j, name in enumerate(names):
        prefix = f"n:{name}"
        state.i8(f"{prefix}:count")[:] += (n, missed[j], outs[j], outsides[j])
        state.i8(f"{prefix}:grid")[:] += grids[j, : GRID_CELLS + 2]
        state.i8(f"{prefix}:bins")[:] += bins[j, : block.bins[present[j]]]
        state.f8(f"{prefix}:sum")[:] += (sums[j], squares[j])
        minimum, maximum = state.f8(f"{prefix}:min"), state.f8(f"{prefix}:max")
        minimum[0] = min(minimum[0], lows[j])
        maximum[0] = max(maximum[0], highs[j])
    return set(names)
