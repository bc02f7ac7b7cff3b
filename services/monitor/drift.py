"""Drift of each feature, the prediction and the labels against the reference profile,
computed from the merged bucket state (see ``docs/monitor.md`` for the defaults).

Numeric columns: normalised Wasserstein by default (threshold 0.1: a tenth of a reference
standard deviation), KS from the quantile CDFs, PSI / Jensen–Shannon / chi-squared on the
profile's bins. Categorical columns: Jensen–Shannon by default (0.1), PSI, chi-squared on
the categories plus an "unseen" bin. Verdicts compare an effect size with a threshold, so
a tiny shift never alarms however many rows there are; the p-value mode (KS and
chi-squared only) adjusts for multiple testing across the report's columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt

from keel.common.v1 import profile_pb2, schema_pb2
from keel.monitor.v1 import reports_pb2 as rp
from services.common.errors import FailedPrecondition, InvalidArgument
from services.monitor import statistics
from services.monitor.aggregates import State
from services.monitor.reference import CategoricalReference, ModelReference, NumericReference
from services.monitor.scope import VersionRows
from services.monitor.statistics import FloatArray

T = TypeVar("T")
NUMERIC = schema_pb2.FEATURE_KIND_NUMERIC
CATEGORICAL = schema_pb2.FEATURE_KIND_CATEGORICAL
THRESHOLDS = {
    rp.DRIFT_METHOD_PSI: 0.2,
    rp.DRIFT_METHOD_JENSEN_SHANNON: 0.1,
    rp.DRIFT_METHOD_WASSERSTEIN: 0.1,
    rp.DRIFT_METHOD_KS: 0.1,
    rp.DRIFT_METHOD_CHI_SQUARED: 0.1,
}
TESTS = (rp.DRIFT_METHOD_KS, rp.DRIFT_METHOD_CHI_SQUARED)
TRIM = 0.01  # quantile levels left out at each end by the Wasserstein distance
NUMERIC_ONLY = (rp.DRIFT_METHOD_WASSERSTEIN, rp.DRIFT_METHOD_KS)
CORRECTIONS = {
    rp.MULTIPLE_TESTING_CORRECTION_UNSPECIFIED: "benjamini_hochberg",
    rp.MULTIPLE_TESTING_CORRECTION_NONE: "none",
    rp.MULTIPLE_TESTING_CORRECTION_BONFERRONI: "bonferroni",
    rp.MULTIPLE_TESTING_CORRECTION_HOLM: "holm",
    rp.MULTIPLE_TESTING_CORRECTION_BENJAMINI_HOCHBERG: "benjamini_hochberg",
}


@dataclass(frozen=True)
class Column:
    """One column to compare: its name, target, and where its counts live."""

    name: str
    target: rp.DriftTarget.ValueType
    numeric: bool
    prefix: str  # state prefix: `n:age`, `c:city`, `n:prediction`, `c:label`


def columns(reference: ModelReference, features: list[str]) -> list[Column]:
    chosen = [f for f in reference.features if not features or f.name in features]
    found = [
        Column(f.name, rp.DRIFT_TARGET_FEATURE, f.numeric, f"{'n' if f.numeric else 'c'}:{f.name}")
        for f in chosen
    ]
    prediction_numeric = reference.task != "multiclass"
    found.append(
        Column(
            "prediction",
            rp.DRIFT_TARGET_PREDICTION,
            prediction_numeric,
            f"{'n' if prediction_numeric else 'c'}:prediction",
        )
    )
    if "label" in reference.columns:
        numeric = not reference.classifier
        found.append(
            Column("label", rp.DRIFT_TARGET_LABEL, numeric, f"{'n' if numeric else 'c'}:label")
        )
    return found


def check_options(reference: ModelReference, options: rp.DriftOptions) -> None:
    """INVALID_ARGUMENT for options that do not fit the model."""
    methods = [
        ("options.numeric_method", options.numeric_method),
        ("options.categorical_method", options.categorical_method),
        *(
            (f"options.column_settings['{n}'].method", s.method)
            for n, s in options.column_settings.items()
        ),
    ]
    for field, method in methods:  # open enums: any number may come
        if method and method not in THRESHOLDS:
            raise InvalidArgument(f"{field}: unknown drift method {method}")
    if options.correction not in CORRECTIONS:
        raise InvalidArgument(f"options.correction: unknown correction {options.correction}")
    if options.categorical_method in NUMERIC_ONLY:
        name = rp.DriftMethod.Name(options.categorical_method)
        raise InvalidArgument(f"options.categorical_method: {name} works on numeric columns only")
    names = {f.name for f in reference.features} | {"prediction", "label"}
    for name, setting in options.column_settings.items():
        if name not in names:
            raise InvalidArgument(
                f"options.column_settings: '{name}' is not a feature of the model"
            )
        feature = reference.feature(name)
        if feature is not None and not feature.numeric and setting.method in NUMERIC_ONLY:
            method_name = rp.DriftMethod.Name(setting.method)
            raise InvalidArgument(
                f"options.column_settings['{name}']: {method_name} works on numeric columns only"
            )
    for name in options.features:
        if reference.feature(name) is None:
            raise InvalidArgument(f"options.features: '{name}' is not a feature of the model")
    if options.mode == rp.DRIFT_TEST_MODE_P_VALUE:
        # Unspecified methods become the test for the column's kind (KS, chi-squared);
        # a distance named explicitly cannot give a p-value.
        for method in (
            options.numeric_method,
            options.categorical_method,
            *(s.method for s in options.column_settings.values()),
        ):
            if method and method not in TESTS:
                raise InvalidArgument(
                    "options.mode: P_VALUE needs KS or CHI_SQUARED, "
                    f"got {rp.DriftMethod.Name(method)}"
                )
    if options.HasField("alpha") and not 0 < options.alpha < 1:
        raise InvalidArgument(f"options.alpha: expected a value in (0, 1), got {options.alpha}")
    if options.HasField("drift_share") and not 0 < options.drift_share <= 1:
        raise InvalidArgument(
            f"options.drift_share: expected a value in (0, 1], got {options.drift_share}"
        )


def drift_report(held: VersionRows, options: rp.DriftOptions) -> rp.DriftReport:
    reference = held.reference
    if not reference.has_profile:
        raise FailedPrecondition(
            f"version {reference.model}/{reference.version} has no reference profile"
        )
    p_mode = options.mode == rp.DRIFT_TEST_MODE_P_VALUE
    alpha = options.alpha if options.HasField("alpha") else 0.05
    min_samples = options.min_samples if options.HasField("min_samples") else 100
    chosen = [
        (column, *_method(column, options, alpha if p_mode else None))
        for column in columns(reference, list(options.features))
        if column.name in reference.columns
    ]
    wasserstein = [c for c, method, _ in chosen if method == rp.DRIFT_METHOD_WASSERSTEIN]
    central = central_quantiles(reference, held.state, wasserstein)
    results = []
    for column, method, threshold in chosen:
        result = compare(
            reference, held.state, column, method, options.include_bins, central.get(column.name)
        )
        result.threshold = threshold
        result.mode = rp.DRIFT_TEST_MODE_P_VALUE if p_mode else rp.DRIFT_TEST_MODE_EFFECT_SIZE
        result.insufficient_data = result.current_count < min_samples
        results.append(result)
    if p_mode:
        _adjust([r for r in results if not r.insufficient_data], CORRECTIONS[options.correction])
    for result in results:
        if not result.insufficient_data:
            value = result.adjusted_p_value if p_mode else result.statistic
            result.drifted = value < result.threshold if p_mode else value >= result.threshold
    report = rp.DriftReport(version=reference.version, row_count=held.rows)
    features = [r for r in results if r.target == rp.DRIFT_TARGET_FEATURE]
    report.features.extend(features)
    for r in results:
        if r.target == rp.DRIFT_TARGET_PREDICTION:
            report.prediction.CopyFrom(r)
        elif r.target == rp.DRIFT_TARGET_LABEL and r.current_count:
            report.label.CopyFrom(r)
    evaluated = [r for r in features if not r.insufficient_data]
    report.evaluated_feature_count = len(evaluated)
    report.drifted_feature_count = sum(r.drifted for r in evaluated)
    report.drifted_share = report.drifted_feature_count / len(evaluated) if evaluated else 0.0
    report.drift_share_threshold = options.drift_share if options.HasField("drift_share") else 0.5
    report.dataset_drifted = (
        bool(evaluated) and report.drifted_share >= report.drift_share_threshold
    )
    return report


def _method(
    column: Column, options: rp.DriftOptions, alpha: float | None
) -> tuple[rp.DriftMethod.ValueType, float]:
    default = rp.DRIFT_METHOD_WASSERSTEIN if column.numeric else rp.DRIFT_METHOD_JENSEN_SHANNON
    if alpha is not None:  # p-value mode: the test for the column's kind
        default = rp.DRIFT_METHOD_KS if column.numeric else rp.DRIFT_METHOD_CHI_SQUARED
    method = (options.numeric_method if column.numeric else options.categorical_method) or default
    setting = options.column_settings.get(column.name)
    if setting is not None and setting.method:
        method = setting.method
    if not column.numeric and method in NUMERIC_ONLY:
        method = rp.DRIFT_METHOD_JENSEN_SHANNON
    threshold = alpha if alpha is not None else THRESHOLDS[method]
    if setting is not None and setting.HasField("threshold"):
        threshold = setting.threshold
    return method, threshold


def compare(
    reference: ModelReference,
    state: State,
    column: Column,
    method: rp.DriftMethod.ValueType,
    include_bins: bool,
    central: FloatArray | None = None,
) -> rp.FeatureDrift:
    """The statistic of ``method`` between the reference and the current counts
    (``central``: the column's current quantiles at its reference's central levels, when
    the caller worked them out with other columns')."""
    ref = reference.columns[column.name]
    result = rp.FeatureDrift(
        feature=column.name,
        target=column.target,
        method=method,
        kind=NUMERIC if column.numeric else CATEGORICAL,
    )
    if isinstance(ref, NumericReference):
        current = state.i8(f"{column.prefix}:bins")
        expected = ref.counts
        count = state.i8(f"{column.prefix}:count")
        result.current_count = int(count[0] - count[1])
        result.current_missing_count = int(count[1])
    else:
        assert isinstance(ref, CategoricalReference) or ref is not None
        categories = reference.layout.categories[column.name]
        current = state.i8(f"{column.prefix}:counts")
        expected = np.append(categories.reference_counts, 0)
        count = state.i8(f"{column.prefix}:count")
        result.current_count = int(count[0] - count[1])
        result.current_missing_count = int(count[1])
    result.reference_count = int(expected.sum())
    if result.current_count == 0 or result.reference_count == 0:
        return result
    if method == rp.DRIFT_METHOD_PSI:
        result.statistic = statistics.psi(expected, current)
    elif method == rp.DRIFT_METHOD_JENSEN_SHANNON:
        result.statistic = statistics.jensen_shannon(expected, current)
    elif method == rp.DRIFT_METHOD_CHI_SQUARED:
        result.statistic, result.p_value = statistics.chi_squared(expected, current)
    elif method == rp.DRIFT_METHOD_KS:
        assert isinstance(ref, NumericReference)
        ref_cdf, cur_cdf = _cdfs(ref, state, column.prefix)
        result.statistic, result.p_value = statistics.ks(
            ref_cdf, cur_cdf, result.reference_count, result.current_count
        )
    else:
        assert isinstance(ref, NumericReference)
        if central is None:
            central = central_quantiles(reference, state, [column])[column.name]
        result.statistic = trimmed_wasserstein(ref, central)
    if include_bins:
        _bins(result, reference, ref, state, column, expected, current)
    return result


def trimmed_wasserstein(ref: NumericReference, current: FloatArray) -> float:
    """Wasserstein-1 between the quantile functions over the central levels
    [TRIM, 1 - TRIM], divided by the reference standard deviation (floored at 0.001);
    ``current``: the current quantiles at those levels (``central_quantiles``).

    The profile keeps 101 quantiles, so between its 99th percentile and its maximum it
    knows nothing of the tail's shape, and a sample's extremes grow with its size: the
    outer levels would make identical heavy-tailed data look drifted at large volumes.
    """
    _, values, steps = _central(ref)
    gap = np.abs(values - current)
    area = float(np.dot(gap[1:] + gap[:-1], steps))
    return area / max(ref.stddev, 0.001)


def central_quantiles(
    reference: ModelReference, state: State, chosen: list[Column]
) -> dict[str, FloatArray]:
    """The current quantiles of each numeric ``chosen`` column that has rows, at its
    reference's central levels: worked out together for the columns whose levels are
    the same (all of them, for profiles made by Keel's client)."""
    groups: dict[bytes, list[tuple[Column, NumericReference]]] = {}
    for column in chosen:
        ref = reference.columns.get(column.name)
        count = state.i8(f"{column.prefix}:count")
        if isinstance(ref, NumericReference) and count[0] > count[1]:
            groups.setdefault(_central(ref)[0].tobytes(), []).append((column, ref))
    found: dict[str, FloatArray] = {}
    for members in groups.values():
        grids = np.array([ref.grid() for _, ref in members], dtype=np.float64)
        values = statistics.histogram_quantiles(
            grids[:, 0],
            grids[:, 1],
            np.stack([state.i8(f"{column.prefix}:grid") for column, _ in members]),
            np.array([state.f8(f"{column.prefix}:min")[0] for column, _ in members]),
            np.array([state.f8(f"{column.prefix}:max")[0] for column, _ in members]),
            _central(members[0][1])[0],
        )
        found |= {column.name: row for (column, _), row in zip(members, values, strict=True)}
    return found


def _central(ref: NumericReference) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The reference's central levels, their values and half the steps between levels."""

    def work_out() -> tuple[FloatArray, FloatArray, FloatArray]:
        inside = (ref.levels >= TRIM - 1e-12) & (ref.levels <= 1 - TRIM + 1e-12)
        levels = ref.levels[inside]
        return levels, ref.values[inside], np.diff(levels) / 2

    return _once(ref, "_central", work_out)


def reference_cdf(ref: NumericReference) -> statistics.Cdf:
    """The reference's CDF from its quantiles."""
    return _once(ref, "_cdf", lambda: statistics.Cdf.from_quantiles(ref.levels, ref.values))


def _once(ref: NumericReference, key: str, make: Callable[[], T]) -> T:
    """``make()``, worked out once per reference (a reference never changes) and kept
    on it under ``key``."""
    if key not in ref.__dict__:
        ref.__dict__[key] = make()
    return cast(T, ref.__dict__[key])


def _cdfs(
    ref: NumericReference, state: State, prefix: str
) -> tuple[statistics.Cdf, statistics.Cdf]:
    lo, hi = ref.grid()
    current_cdf = statistics.Cdf.from_histogram(
        lo,
        hi,
        state.i8(f"{prefix}:grid"),
        float(state.f8(f"{prefix}:min")[0]),
        float(state.f8(f"{prefix}:max")[0]),
    )
    return reference_cdf(ref), current_cdf


def _bins(
    result: rp.FeatureDrift,
    reference: ModelReference,
    ref: object,
    state: State,
    column: Column,
    expected: npt.NDArray[np.int64],
    current: npt.NDArray[np.int64],
) -> None:
    bins = result.bins
    bins.reference_counts.extend(int(c) for c in expected)
    bins.current_counts.extend(int(c) for c in current)
    if isinstance(ref, NumericReference):
        bins.edges.extend(float(e) for e in ref.edges)
        bins.reference_quantiles.extend(
            profile_pb2.Quantile(level=float(lv), value=float(v))
            for lv, v in zip(ref.levels, ref.values, strict=True)
        )
        _, cur_cdf = _cdfs(ref, state, column.prefix)
        values = statistics.quantiles(cur_cdf, ref.levels)
        bins.current_quantiles.extend(
            profile_pb2.Quantile(level=float(lv), value=float(v))
            for lv, v in zip(ref.levels, values, strict=True)
        )
    else:
        bins.categories.extend(reference.layout.categories[column.name].values)


def _adjust(results: list[rp.FeatureDrift], correction: str) -> None:
    if not results:
        return
    adjusted = statistics.adjust_p_values([r.p_value for r in results], correction)
    for result, value in zip(results, adjusted, strict=True):
        result.adjusted_p_value = float(value)
