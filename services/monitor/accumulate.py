"""Counting rows into a bucket's state, vectorised: one numpy pass per column, never a
Python loop per row. ``count_predictions`` adds logged predictions; ``count_labels`` adds
predictions joined with their ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.monitor.aggregates import State
from services.monitor.numeric_block import PREDICTION, bin_indices, count_block
from services.monitor.reference import (
    BINARY,
    GRID_CELLS,
    MULTICLASS,
    OVR_BINS,
    SCORE_BINS,
    ModelReference,
    NumericReference,
)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
EPSILON = 1e-15


@dataclass
class Outputs:
    """What the model answered for some rows (all arrays the same length)."""

    predicted: Ints | None = None  # class index (classifiers)
    score: Floats | None = None  # positive-class probability (binary)
    probabilities: Floats | None = None  # [rows, classes] (classifiers, when logged)
    prediction: Floats | None = None  # value (regressors)

    def take(self, rows: Ints) -> Outputs:
        return Outputs(
            None if self.predicted is None else self.predicted[rows],
            None if self.score is None else self.score[rows],
            None if self.probabilities is None else self.probabilities[rows],
            None if self.prediction is None else self.prediction[rows],
        )


@dataclass
class Rows:
    """Decoded rows of a batch: features by name, outputs, protected groups."""

    numeric: dict[str, tuple[Floats, Mask]] = field(default_factory=dict)
    categorical: dict[str, tuple[Ints, Mask]] = field(default_factory=dict)
    outputs: Outputs = field(default_factory=Outputs)
    groups: dict[str, Ints] = field(default_factory=dict)  # -1: no group (missing)

    def take(self, rows: Ints) -> Rows:
        return Rows(
            {k: (v[rows], m[rows]) for k, (v, m) in self.numeric.items()},
            {k: (c[rows], m[rows]) for k, (c, m) in self.categorical.items()},
            self.outputs.take(rows),
            {k: g[rows] for k, g in self.groups.items()},
        )


def count_numeric(
    state: State,
    prefix: str,
    ref: object,
    values: Floats,
    missing: Mask,
    allowed: tuple[float, float],
) -> None:
    count = state.i8(f"{prefix}:count")
    present = values[~missing & np.isfinite(values)]
    count[0] += len(values)
    count[1] += len(values) - len(present)
    if not len(present):
        return
    low, high = allowed
    out = (present < low) | (present > high)
    count[2] += int(out.sum())
    bins = state.i8(f"{prefix}:bins")
    if isinstance(ref, NumericReference):
        outside = ((present < ref.minimum) | (present > ref.maximum)) & ~out
        count[3] += int(outside.sum())
        if len(ref.edges):
            index = bin_indices(ref.edges[None, :], present[None, :])[0]
            bins += np.bincount(index, minlength=len(bins))
        else:
            bins[0] += len(present)
        lo, hi = ref.grid()
        # Clipped before the cast: a value far outside the grid (1e300) does not fit int64.
        cells = np.floor((present - lo) * (GRID_CELLS / (hi - lo)))
        cells = np.clip(cells, -1, GRID_CELLS).astype(np.int64) + 1
        state.i8(f"{prefix}:grid")[:] += np.bincount(cells, minlength=GRID_CELLS + 2)
    else:
        bins[0] += len(present)
    sums = state.f8(f"{prefix}:sum")
    sums[0] += float(present.sum())
    sums[1] += float(np.dot(present, present))
    mins, maxs = state.f8(f"{prefix}:min"), state.f8(f"{prefix}:max")
    mins[0] = min(mins[0], float(present.min()))
    maxs[0] = max(maxs[0], float(present.max()))


def count_categorical(state: State, prefix: str, codes: Ints, missing: Mask) -> None:
    counts = state.i8(f"{prefix}:counts")
    present = codes[~missing]
    counts += np.bincount(present, minlength=len(counts))[: len(counts)]
    count = state.i8(f"{prefix}:count")
    count[0] += len(codes)
    count[1] += len(codes) - len(present)


def count_predictions(state: State, reference: ModelReference, rows: Rows) -> None:
    """Add logged predictions (inputs and outputs) to ``state``."""
    out = rows.outputs
    output = _numeric_output(reference, out)
    numeric = rows.numeric if output is None else {**rows.numeric, PREDICTION: output}
    counted = count_block(state, reference.block, numeric)
    for feature in reference.features:
        if feature.name in counted:
            continue
        if feature.name in rows.numeric:
            values, missing = rows.numeric[feature.name]
            bounds = (feature.range_min, feature.range_max)
            ref = reference.columns.get(feature.name)
            count_numeric(state, f"n:{feature.name}", ref, values, missing, bounds)
        elif feature.name in rows.categorical:
            codes, missing = rows.categorical[feature.name]
            count_categorical(state, f"c:{feature.name}", codes, missing)
    if reference.task == MULTICLASS and out.predicted is not None:
        count_categorical(state, "c:prediction", out.predicted, out.predicted < 0)
    elif output is not None and PREDICTION not in counted:  # no reference: not in the block
        ref = reference.columns.get(PREDICTION)
        count_numeric(state, "n:prediction", ref, *output, (-np.inf, np.inf))
    if reference.classifier and out.predicted is not None:
        labels = state.i8("pred:labels")
        labels += np.bincount(out.predicted, minlength=len(labels))
        k = len(labels)
        for name, group in rows.groups.items():
            table = state.i8(f"f:{name}:pred")
            keep = group >= 0
            flat = group[keep] * k + out.predicted[keep]
            table += np.bincount(flat, minlength=table.size).reshape(table.shape)


def _numeric_output(reference: ModelReference, out: Outputs) -> tuple[Floats, Mask] | None:
    """A binary classifier's score or a regressor's value, with its missing rows."""
    if reference.task == MULTICLASS:
        return None
    value = out.score if reference.task == BINARY else out.prediction
    return None if value is None else (value, np.isnan(value))


def count_labels(state: State, reference: ModelReference, rows: Rows, actual: Floats) -> None:
    """Add predictions joined with their true labels (class indices for a classifier,
    values for a regressor)."""
    out = rows.outputs
    if not reference.classifier:
        if out.prediction is None:
            return
        _count_regression(state, reference, out.prediction, actual)
        return
    truth = actual.astype(np.int64)
    k = len(reference.class_labels)
    count_categorical(state, "c:label", truth, np.zeros(len(truth), dtype=bool))
    if out.predicted is not None:
        confusion = state.i8("j:confusion")
        confusion += np.bincount(truth * k + out.predicted, minlength=k * k).reshape(k, k)
        for name, group in rows.groups.items():
            table = state.i8(f"f:{name}:joint")
            keep = group >= 0
            flat = (group[keep] * k + truth[keep]) * k + out.predicted[keep]
            table += np.bincount(flat, minlength=table.size).reshape(table.shape)
    probabilities = _probabilities(reference, out)
    if probabilities is None:
        return
    p_true = np.clip(probabilities[np.arange(len(truth)), truth], EPSILON, 1 - EPSILON)
    losses = -np.log(p_true)
    state.f8("j:logloss")[:] += (len(losses), float(losses.sum()), float(np.dot(losses, losses)))
    if reference.task == BINARY:
        bins = _bins(probabilities[:, 1], SCORE_BINS)
        hist = state.i8("j:score")
        hist += np.bincount(truth * SCORE_BINS + bins, minlength=hist.size).reshape(hist.shape)
    else:
        ovr = state.i8("j:ovr")
        for c in range(k):
            flat = (truth == c).astype(np.int64) * OVR_BINS + _bins(probabilities[:, c], OVR_BINS)
            ovr[c] += np.bincount(flat, minlength=2 * OVR_BINS).reshape(2, OVR_BINS)


def _probabilities(reference: ModelReference, out: Outputs) -> Floats | None:
    if out.probabilities is not None:
        return out.probabilities
    if reference.task == BINARY and out.score is not None:
        return np.column_stack([1 - out.score, out.score])
    return None


def _bins(scores: Floats, bins: int) -> Ints:
    index = np.floor(np.nan_to_num(scores) * bins).astype(np.int64)
    return np.clip(index, 0, bins - 1)


def _count_regression(
    state: State, reference: ModelReference, prediction: Floats, actual: Floats
) -> None:
    errors = prediction - actual
    squared = errors * errors
    state.f8("j:reg")[:] += (
        len(errors),
        float(errors.sum()),
        float(squared.sum()),
        float(np.abs(errors).sum()),
        float(actual.sum()),
        float(np.dot(actual, actual)),
        float(np.dot(squared, squared)),
        float(np.dot(errors, actual)),
    )
    ref = reference.columns.get("label")
    unbounded = (-np.inf, np.inf)
    count_numeric(state, "n:label", ref, actual, np.isnan(actual), unbounded)


def group_index(reference: ModelReference, name: str, rows: Rows) -> Ints | None:
    """Protected group of each row (-1 when the value is missing)."""
    if name in rows.categorical:
        codes, missing = rows.categorical[name]
        return np.where(missing, -1, codes)
    if name in rows.numeric:
        values, missing = rows.numeric[name]
        ref = reference.columns.get(name)
        if isinstance(ref, NumericReference) and len(ref.edges):
            index = np.searchsorted(ref.edges, values, side="right").astype(np.int64)
        else:
            index = np.zeros(len(values), dtype=np.int64)
        return np.where(missing | ~np.isfinite(values), -1, index)
    return None
