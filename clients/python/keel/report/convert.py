"""Protobuf messages of the registry and the monitor to the report's plain data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from keel.common.v1 import metric_pb2, profile_pb2, schema_pb2
from keel.monitor.v1 import reports_pb2 as rp
from keel.registry.v1 import model_pb2
from keel.report import data

UNSEEN = "(unseen)"

METHODS = {
    rp.DRIFT_METHOD_PSI: "PSI",
    rp.DRIFT_METHOD_JENSEN_SHANNON: "Jensen-Shannon distance",
    rp.DRIFT_METHOD_WASSERSTEIN: "Wasserstein (normalised)",
    rp.DRIFT_METHOD_KS: "Kolmogorov-Smirnov",
    rp.DRIFT_METHOD_CHI_SQUARED: "chi-squared (Cramér's V)",
}
TARGETS = {
    rp.DRIFT_TARGET_FEATURE: "feature",
    rp.DRIFT_TARGET_PREDICTION: "prediction",
    rp.DRIFT_TARGET_LABEL: "label",
}
COMPARATORS = {
    metric_pb2.COMPARATOR_GREATER_OR_EQUAL: ">=",
    metric_pb2.COMPARATOR_GREATER: ">",
    metric_pb2.COMPARATOR_LESS_OR_EQUAL: "<=",
    metric_pb2.COMPARATOR_LESS: "<",
}


def enum_text(name: str, prefix: str) -> str:
    """``TASK_BINARY_CLASSIFICATION`` to ``binary classification``."""
    return name.removeprefix(prefix).replace("_", " ").lower()


def task_text(task: schema_pb2.Task.ValueType) -> str:
    return enum_text(schema_pb2.Task.Name(task), "TASK_")


def time_of(stamp: timestamp_pb2.Timestamp) -> datetime:
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=UTC)


def objective_text(objective: metric_pb2.Objective) -> str:
    comparator = COMPARATORS.get(objective.comparator, "?")
    return f"{objective.metric} {comparator} {objective.threshold:g}"


def objectives(results: Iterable[metric_pb2.ObjectiveResult]) -> tuple[data.Objective, ...]:
    return tuple(
        data.Objective(
            objective_text(r.objective),
            r.actual if r.HasField("actual") else None,
            r.passed,
            r.message,
        )
        for r in results
    )


# Registry ------------------------------------------------------------------------------
def header(
    model_id: str,
    model: model_pb2.Model,
    version: model_pb2.ModelVersion | None,
    aliases: Mapping[str, int],
    chosen_by: str,
) -> data.Header:
    found = version or model_pb2.ModelVersion()
    return data.Header(
        model=model_id,
        description=found.description or model.description,
        task=task_text(model.task),
        owner_team=model.owner_team,
        version=found.version,
        status=enum_text(model_pb2.ModelVersionStatus.Name(found.status), "MODEL_VERSION_STATUS_")
        if version
        else "",
        flavor=enum_text(model_pb2.Flavor.Name(found.flavor), "FLAVOR_") if version else "",
        author=found.author,
        created=time_of(found.create_time) if found.HasField("create_time") else None,
        aliases=dict(aliases),
        objectives=tuple(objective_text(o) for o in model.objectives),
        evaluation={m.name: m.value for m in found.evaluation_metrics if not m.group},
        chosen_by=chosen_by,
    )


def reference_histogram(profile: profile_pb2.FeatureProfile) -> data.Histogram:
    if profile.WhichOneof("distribution") == "categorical":
        categories = profile.categorical.categories
        return data.Histogram(
            reference=tuple(c.count for c in categories),
            categories=tuple(c.value for c in categories),
        )
    return data.Histogram(
        reference=tuple(profile.numeric.bin_counts), edges=tuple(profile.numeric.bin_edges)
    )


def reference_columns(profile: profile_pb2.ReferenceProfile) -> tuple[data.ColumnDrift, ...]:
    """The reference distributions alone (no traffic to compare them with)."""
    columns = [(f, "feature") for f in profile.features]
    if profile.HasField("prediction"):
        columns.append((profile.prediction, "prediction"))
    if profile.HasField("label"):
        columns.append((profile.label, "label"))
    return tuple(
        data.ColumnDrift(
            name=column.name,
            target=target,
            histogram=reference_histogram(column),
            verdict="no traffic",
            reference_count=sum(reference_histogram(column).reference),
        )
        for column, target in columns
    )


# Monitor -------------------------------------------------------------------------------
def _histogram(bins: rp.DriftBins) -> data.Histogram:
    categories = tuple(bins.categories)
    return data.Histogram(
        reference=tuple(bins.reference_counts),
        current=tuple(bins.current_counts),
        edges=tuple(bins.edges),
        categories=(*categories, UNSEEN) if categories else (),
    )


def _verdict(column: rp.FeatureDrift) -> str:
    if column.insufficient_data:
        return "insufficient data"
    return "drift" if column.drifted else "no drift"


def column_drift(column: rp.FeatureDrift) -> data.ColumnDrift:
    p_mode = column.mode == rp.DRIFT_TEST_MODE_P_VALUE
    p_value = column.adjusted_p_value if p_mode else column.p_value
    return data.ColumnDrift(
        name=column.feature,
        target=TARGETS.get(column.target, "feature"),
        histogram=_histogram(column.bins),
        verdict=_verdict(column),
        method=METHODS.get(column.method, "unknown"),
        statistic=column.statistic,
        threshold=column.threshold,
        p_value=p_value if column.HasField("p_value") else None,
        mode="p-value" if p_mode else "effect size",
        reference_count=column.reference_count,
        current_count=column.current_count,
        current_missing_count=column.current_missing_count,
    )


def drift_section(report: rp.DriftReport) -> data.DriftSection:
    columns = [column_drift(c) for c in report.features]
    if report.HasField("prediction"):
        columns.append(column_drift(report.prediction))
    if report.HasField("label"):
        columns.append(column_drift(report.label))
    return data.DriftSection(
        columns=tuple(columns),
        row_count=report.row_count,
        drifted_feature_count=report.drifted_feature_count,
        evaluated_feature_count=report.evaluated_feature_count,
        drifted_share=report.drifted_share,
        drift_share_threshold=report.drift_share_threshold,
        dataset_drifted=report.dataset_drifted,
    )


def performance_window(report: rp.PerformanceReport) -> data.PerformanceWindow:
    return data.PerformanceWindow(
        start=time_of(report.window.start_time),
        end=time_of(report.window.end_time),
        prediction_count=report.prediction_count,
        labeled_count=report.labeled_count,
        metrics={m.name: m.value for m in report.metrics if not m.group},
    )


def performance_section(
    whole: rp.PerformanceReport, series: Iterable[rp.PerformanceReport], window_seconds: int
) -> data.PerformanceSection:
    return data.PerformanceSection(
        task=task_text(whole.task),
        whole=performance_window(whole),
        series=tuple(performance_window(r) for r in series),
        window_seconds=window_seconds,
        objectives=objectives(whole.objectives),
    )


def _group(group: rp.GroupRates) -> data.Group:
    return data.Group(
        name=group.group,
        row_count=group.row_count,
        labeled_count=group.labeled_count,
        selection_rate=group.selection_rate,
        selection_rate_ratio=group.selection_rate_ratio,
        true_positive_rate=group.true_positive_rate
        if group.HasField("true_positive_rate")
        else None,
        false_positive_rate=group.false_positive_rate
        if group.HasField("false_positive_rate")
        else None,
        adverse_impact=group.adverse_impact,
        excluded=group.excluded,
    )


def fairness_section(report: rp.FairnessReport, threshold: float) -> data.FairnessSection:
    features = tuple(
        data.FeatureFairness(
            feature=f.feature,
            groups=tuple(_group(g) for g in f.groups),
            demographic_parity_difference=f.demographic_parity_difference,
            demographic_parity_ratio=f.demographic_parity_ratio,
            equalized_odds_difference=f.equalized_odds_difference
            if f.HasField("equalized_odds_difference")
            else None,
            four_fifths_passed=f.four_fifths_passed,
        )
        for f in report.features
    )
    return data.FairnessSection(
        features=features,
        positive_class=report.positive_class,
        row_count=report.row_count,
        labeled_count=report.labeled_count,
        four_fifths_threshold=threshold,
        objectives=objectives(report.objectives),
    )


def _interval(interval: rp.ConfidenceInterval) -> data.Interval:
    return data.Interval(interval.lower, interval.upper, interval.level)


def comparisons(report: rp.VariantComparisonReport) -> tuple[data.Comparison, ...]:
    return tuple(
        data.Comparison(
            metric=c.metric,
            baseline=c.baseline.metric.value,
            baseline_interval=_interval(c.baseline.interval),
            baseline_rows=c.baseline.metric.sample_count,
            candidate=c.candidate.metric.value,
            candidate_interval=_interval(c.candidate.interval),
            candidate_rows=c.candidate.metric.sample_count,
            difference=c.difference,
            difference_interval=_interval(c.difference_interval),
            p_value=c.p_value,
            test=enum_text(rp.ComparisonTest.Name(c.test), "COMPARISON_TEST_"),
            verdict=enum_text(rp.ComparisonVerdict.Name(c.verdict), "COMPARISON_VERDICT_"),
        )
        for c in report.comparisons
    )
