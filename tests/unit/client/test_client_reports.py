"""The monitor's reports as plain results: readable enum words, UTC times, strict JSON
from ``to_dict`` with the per-feature keys scripts rely on, pandas views; and the report
scope built from datetimes, ISO strings and durations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2

from keel.client.alerts import Alert, AlertList, state_value
from keel.client.fairness import FairnessResult
from keel.client.monitoring import scope, time_range
from keel.client.reports import DriftResult, PerformanceResult, enum_text
from keel.client.variants import ComparisonResult
from keel.common.v1 import metric_pb2, schema_pb2
from keel.monitor.v1 import alerts_pb2 as al
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp

START = datetime(2025, 6, 1, 12, tzinfo=UTC)


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    found = timestamp_pb2.Timestamp()
    found.FromDatetime(moment)
    return found


def window() -> rp.TimeWindow:
    return rp.TimeWindow(start_time=stamp(START), end_time=stamp(START + timedelta(hours=1)))


def drift_response() -> pb.ComputeDriftResponse:
    age = rp.FeatureDrift(
        feature="age",
        target=rp.DRIFT_TARGET_FEATURE,
        kind=schema_pb2.FEATURE_KIND_NUMERIC,
        method=rp.DRIFT_METHOD_WASSERSTEIN,
        statistic=0.42,
        threshold=0.1,
        drifted=True,
        current_count=900,
        bins=rp.DriftBins(edges=[1.0], reference_counts=[5, 5], current_counts=[1, 9]),
    )
    segment = rp.FeatureDrift(
        feature="segment",
        kind=schema_pb2.FEATURE_KIND_CATEGORICAL,
        method=rp.DRIFT_METHOD_CHI_SQUARED,
        statistic=float("nan"),
        p_value=0.5,
        threshold=0.1,
        insufficient_data=True,
    )
    report = rp.DriftReport(
        window=window(),
        version=3,
        row_count=900,
        features=[age, segment],
        prediction=rp.FeatureDrift(feature="prediction", target=rp.DRIFT_TARGET_PREDICTION),
        drifted_feature_count=1,
        evaluated_feature_count=1,
        drifted_share=1.0,
        drift_share_threshold=0.5,
        dataset_drifted=True,
    )
    return pb.ComputeDriftResponse(report=report, series=[report])


def test_drift_maps_to_words_and_strict_json() -> None:
    result = DriftResult.from_response("churn", drift_response())
    assert (result.model, result.version, result.row_count, result.dataset_drift) == (
        "churn",
        3,
        900,
        True,
    )
    assert result.start == START and result.drifted_features == ["age"]
    age, segment = result.features
    assert (age.method, age.kind, age.target, age.p_value) == (
        "wasserstein",
        "numeric",
        "feature",
        None,
    )
    assert (segment.method, segment.kind, segment.p_value) == ("chi_squared", "categorical", 0.5)
    assert age.bins is not None and age.bins.current_counts == [1, 9]
    assert result.prediction is not None and result.prediction.target == "prediction"
    assert len(result.series) == 1 and result.series[0].series == []
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    first = document["features"][0]
    assert list(first)[:5] == ["feature", "drift", "method", "statistic", "threshold"]
    assert (first["feature"], first["drift"], first["statistic"]) == ("age", True, 0.42)
    assert document["features"][1]["statistic"] is None  # NaN
    assert document["start"] == "2025-06-01T12:00:00+00:00"
    table = result.to_pandas()
    assert table["feature"].tolist() == ["age", "segment", "prediction"]
    assert "bins" not in table.columns


def test_performance_keeps_metrics_confusion_and_objectives() -> None:
    objective = metric_pb2.Objective(
        metric="f1", comparator=metric_pb2.COMPARATOR_GREATER_OR_EQUAL, threshold=0.8
    )
    report = rp.PerformanceReport(
        window=window(),
        task=schema_pb2.TASK_BINARY_CLASSIFICATION,
        prediction_count=10,
        labeled_count=8,
        label_coverage=0.8,
        metrics=[metric_pb2.Metric(name="accuracy", value=0.75, sample_count=8)],
        confusion=rp.ConfusionMatrix(class_labels=["0", "1"], counts=[3, 1, 1, 3]),
        objectives=[metric_pb2.ObjectiveResult(objective=objective, passed=False, message="m")],
    )
    series = [report, report]
    response = pb.ComputePerformanceResponse(report=report, series=series)
    result = PerformanceResult.from_response("churn", 3, response)
    assert result.task == "binary_classification" and result.metrics == {"accuracy": 0.75}
    assert result.confusion == [[3, 1], [1, 3]] and result.sample_counts["accuracy"] == 8
    [check] = result.objectives
    assert (str(check), check.actual, check.passed) == ("f1 >= 0.8", None, False)
    table = result.to_pandas()
    assert len(table) == 2 and table["accuracy"].tolist() == [0.75, 0.75]
    json.dumps(result.to_dict(), allow_nan=False)


def test_fairness_lists_groups_per_feature() -> None:
    group = rp.GroupRates(group="f", row_count=40, selection_rate=0.25, true_positive_rate=0.5)
    feature = rp.FeatureFairness(
        feature="sex", groups=[group], demographic_parity_ratio=0.7, four_fifths_passed=False
    )
    response = pb.ComputeFairnessResponse(
        report=rp.FairnessReport(window=window(), row_count=40, features=[feature])
    )
    result = FairnessResult.from_response("churn", 0, response)
    [found] = result.features
    assert found.equalized_odds_difference is None and not found.four_fifths_passed
    assert found.groups[0].false_positive_rate is None
    table = result.to_pandas()
    assert table[["feature", "group", "selection_rate"]].values.tolist() == [["sex", "f", 0.25]]
    assert table["demographic_parity_ratio"].tolist() == [0.7]


def test_variant_comparisons_name_test_and_verdict() -> None:
    value = rp.VariantValue(
        variant="a", versions=[1], metric=metric_pb2.Metric(value=0.9, sample_count=100)
    )
    comparison = rp.VariantComparison(
        metric="accuracy",
        baseline=value,
        candidate=value,
        test=rp.COMPARISON_TEST_TWO_PROPORTION_Z,
        verdict=rp.COMPARISON_VERDICT_NO_DIFFERENCE,
    )
    response = pb.CompareVariantsResponse(
        report=rp.VariantComparisonReport(window=window(), comparisons=[comparison])
    )
    result = ComparisonResult.from_response("churn", "a", "b", response)
    [found] = result.comparisons
    assert (found.test, found.verdict) == ("two_proportion_z", "no_difference")
    assert result.to_pandas()["baseline_samples"].tolist() == [100]


def test_alerts_read_as_words() -> None:
    alert = al.Alert(
        name="alerts/7",
        rule="alertRules/age",
        model="models/churn",
        deployment="deployments/churn",
        state=al.ALERT_STATE_FIRING,
        condition=al.AlertCondition(
            drift=al.DriftCondition(feature="age", method=rp.DRIFT_METHOD_PSI),
            comparator=metric_pb2.COMPARATOR_GREATER,
            threshold=0.2,
        ),
        value=0.31,
        fire_time=stamp(START),
    )
    found = Alert.from_proto(alert)
    assert (found.model, found.deployment, found.state, found.severity) == (
        "churn",
        "churn",
        "firing",
        "warning",  # unspecified severity is a warning
    )
    assert found.condition == "drift(age, psi) > 0.2" and found.resolve_time is None
    listed = AlertList([found])
    assert listed.to_dict()[0]["fire_time"] == "2025-06-01T12:00:00+00:00"
    assert listed.to_pandas()["metric"].tolist() == ["drift(age, psi)"]
    assert AlertList().to_pandas().empty
    assert state_value(" Firing ") == al.ALERT_STATE_FIRING and state_value(None) == 0
    with pytest.raises(ValueError, match="'firing' or 'resolved'"):
        state_value("open")


def test_unspecified_enums_are_empty_words() -> None:
    assert enum_text(rp.DriftMethod, 0, "DRIFT_METHOD_") == ""
    assert enum_text(rp.DriftMethod, 99, "DRIFT_METHOD_") == ""


def test_scope_times_are_utc_from_datetimes_strings_and_durations() -> None:
    where = scope(
        "churn",
        3,
        since="2025-06-01T12:00:00Z",
        until=datetime(2025, 6, 2, 14, tzinfo=timezone(timedelta(hours=2))),
        deployment="churn",
        variant="canary",
        window=timedelta(hours=1),
    )
    assert (where.model, where.version, where.deployment) == (
        "models/churn",
        3,
        "deployments/churn",
    )
    assert where.start_time.ToDatetime(tzinfo=UTC) == START
    assert where.end_time.ToDatetime(tzinfo=UTC) == datetime(2025, 6, 2, 12, tzinfo=UTC)
    assert where.window.seconds == 3600
    naive = datetime(2025, 6, 2)
    start, end = time_range(timedelta(hours=6), naive)
    assert end == naive.replace(tzinfo=UTC) and start == end - timedelta(hours=6)
    unset = scope("churn", 0)
    assert not unset.HasField("start_time") and not unset.HasField("end_time")


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", None, "expected an ISO 8601 time"),
        ("2025-06-02", "2025-06-01", "is not before until"),
        (timedelta(0), None, "expected a positive duration"),
    ],
)
def test_bad_ranges_are_refused(since: object, until: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        time_range(since, until)  # type: ignore[arg-type]
