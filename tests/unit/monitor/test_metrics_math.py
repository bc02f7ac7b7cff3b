"""Performance, fairness and comparison statistics from aggregates, against sklearn and scipy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats  # type: ignore[import-untyped]
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)

from services.monitor.metrics_math import (
    auc_from_histograms,
    classification_metrics,
    confusion_at_threshold,
    delta_method,
    f1_standard_error,
    fairness,
    hanley_mcneil_se,
    r2_standard_error,
    regression_metrics,
    score_bins,
    two_proportion_z,
    welch_t,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
SCORE_BINS = 1000


def confusion_of(actual: IntArray, predicted: IntArray, k: int) -> IntArray:
    return np.bincount(actual * k + predicted, minlength=k * k).reshape(k, k)


def labels(seed: int, k: int, n: int) -> tuple[IntArray, IntArray]:
    rng = np.random.default_rng(seed)
    actual = rng.choice(k, n, p=rng.dirichlet(np.ones(k)))
    noisy = rng.random(n) < 0.35
    predicted = np.where(noisy, rng.integers(0, k, n), actual)
    return actual, predicted


@pytest.mark.parametrize("seed", [1, 2])
def test_binary_metrics_equal_sklearn(seed: int) -> None:
    actual, predicted = labels(seed, 2, 3000)
    metrics = classification_metrics(confusion_of(actual, predicted, 2))
    p, r, f, _ = precision_recall_fscore_support(actual, predicted, zero_division=0.0)
    assert metrics.accuracy == accuracy_score(actual, predicted)
    binary = precision_recall_fscore_support(actual, predicted, average="binary", zero_division=0)
    assert (metrics.precision, metrics.recall, metrics.f1) == binary[:3]
    assert [c.precision for c in metrics.per_class] == list(p)
    assert [c.f1 for c in metrics.per_class] == list(f)


@pytest.mark.parametrize("absent_class", [None, 2])
def test_multiclass_metrics_equal_sklearn_macro_averages(absent_class: int | None) -> None:
    actual, predicted = labels(3, 4, 5000)
    if absent_class is not None:  # a class neither seen nor predicted is not averaged, as sklearn
        actual = np.where(actual == absent_class, 0, actual)
        predicted = np.where(predicted == absent_class, 1, predicted)
    predicted[:40] = 3  # class 3 over-predicted: a precision/recall gap
    metrics = classification_metrics(confusion_of(actual, predicted, 4))
    macro = precision_recall_fscore_support(actual, predicted, average="macro", zero_division=0)
    assert metrics.accuracy == accuracy_score(actual, predicted)
    assert (metrics.precision, metrics.recall, metrics.f1) == pytest.approx(macro[:3], rel=1e-15)
    per_class = precision_recall_fscore_support(actual, predicted, labels=range(4), zero_division=0)
    for i, c in enumerate(metrics.per_class):
        assert (c.precision, c.recall, c.f1, c.support) == tuple(arr[i] for arr in per_class)


def test_classification_metrics_reject_an_empty_or_ragged_matrix() -> None:
    with pytest.raises(ValueError, match="no labelled rows"):
        classification_metrics(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="square"):
        classification_metrics(np.ones((2, 3)))


def score_histograms(scores: FloatArray, actual: IntArray) -> tuple[IntArray, IntArray]:
    bins = score_bins(scores, SCORE_BINS)
    negative = np.bincount(bins[actual == 0], minlength=SCORE_BINS)
    positive = np.bincount(bins[actual == 1], minlength=SCORE_BINS)
    return negative, positive


def binary_scores(seed: int, n: int) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    actual = (rng.random(n) < 0.3).astype(np.int64)
    scores = np.where(actual == 1, rng.beta(3, 2, n), rng.beta(2, 3, n))
    return scores, actual


@pytest.mark.parametrize("seed", [4, 5])
def test_auc_from_histograms_is_within_2e3_of_sklearn(seed: int) -> None:
    scores, actual = binary_scores(seed, 20_000)
    auc = auc_from_histograms(*score_histograms(scores, actual))
    assert auc == pytest.approx(roc_auc_score(actual, scores), abs=2e-3)


def test_auc_counts_ties_half_like_sklearn() -> None:
    scores, actual = binary_scores(6, 5000)
    coarse = np.round(scores, 1)
    auc = auc_from_histograms(*score_histograms(coarse, actual))
    assert auc == pytest.approx(roc_auc_score(actual, coarse), abs=1e-12)


def test_auc_needs_both_classes() -> None:
    assert auc_from_histograms([0, 3, 1], [0, 0, 0]) is None
    assert auc_from_histograms([0, 0, 0], [1, 0, 0]) is None
    assert auc_from_histograms([1, 0], [0, 1]) == 1.0


@pytest.mark.parametrize(("threshold", "raw_threshold"), [(0.5, 0.5), (0.37, 0.37), (0.3696, 0.37)])
def test_confusion_at_threshold_equals_counting_raw_scores(
    threshold: float, raw_threshold: float
) -> None:
    scores, actual = binary_scores(7, 10_000)
    positive = scores >= raw_threshold
    expected = (
        int(np.sum(positive & (actual == 1))),
        int(np.sum(positive & (actual == 0))),
        int(np.sum(~positive & (actual == 0))),
        int(np.sum(~positive & (actual == 1))),
    )
    assert confusion_at_threshold(*score_histograms(scores, actual), threshold) == expected


def test_score_bins_put_one_in_the_last_bin_and_thresholds_cover_the_ends() -> None:
    np.testing.assert_array_equal(
        score_bins([0.0, 0.0009, 0.001, 0.5, 1.0], 1000), [0, 0, 1, 500, 999]
    )
    assert confusion_at_threshold([2, 3], [4, 5], 0.0) == (9, 5, 0, 0)
    assert confusion_at_threshold([2, 3], [4, 5], 1.0) == (0, 0, 5, 9)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score_bins([1.2], 10)


def regression_sums(actual: FloatArray, predicted: FloatArray) -> dict[str, float]:
    error = predicted - actual
    return {
        "sum_error": float(error.sum()),
        "sum_squared_error": float(np.sum(error**2)),
        "sum_abs_error": float(np.abs(error).sum()),
        "sum_y": float(actual.sum()),
        "sum_squared_y": float(np.sum(actual**2)),
    }


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(8)
    actual = rng.normal(10.0, 3.0, 5000)
    predicted = actual + rng.normal(0.4, 1.5, 5000)
    metrics = regression_metrics(5000, **regression_sums(actual, predicted))
    assert metrics.rmse == pytest.approx(np.sqrt(mean_squared_error(actual, predicted)), rel=1e-9)
    assert metrics.mae == pytest.approx(mean_absolute_error(actual, predicted), rel=1e-9)
    assert metrics.r2 == pytest.approx(r2_score(actual, predicted), rel=1e-9)
    assert metrics.mean_error == pytest.approx(np.mean(predicted - actual), rel=1e-9)


def test_r2_of_a_constant_target_follows_sklearn() -> None:
    actual = np.full(50, 3.5)
    for predicted in (actual.copy(), actual + 0.1):
        metrics = regression_metrics(50, **regression_sums(actual, predicted))
        assert metrics.r2 == r2_score(actual, predicted)
    # sklearn's sum of squares around a mean of 3.7s is rounding noise (R² near -1e28); ours is 0.
    noisy = regression_metrics(50, **regression_sums(np.full(50, 3.7), np.full(50, 3.8)))
    assert noisy.r2 == 0.0
    assert regression_metrics(1, 0.5, 0.25, 0.5, 2.0, 4.0).r2 is None


def group_data(seed: int) -> tuple[IntArray, IntArray, IntArray, npt.NDArray[np.bool_]]:
    rng = np.random.default_rng(seed)
    group = rng.choice(4, 1500, p=[0.45, 0.3, 0.235, 0.015])  # group 3 is below 30 rows
    actual = (rng.random(1500) < np.array([0.4, 0.3, 0.5, 0.5])[group]).astype(np.int64)
    predicted = (rng.random(1500) < np.array([0.5, 0.35, 0.2, 0.05])[group]).astype(np.int64)
    labeled = rng.random(1500) < 0.7
    actual[group == 2] = 0  # group 2 has no positive labels: no TPR
    return group, actual, predicted, labeled


def test_fairness_equals_a_direct_computation_from_rows() -> None:
    group, actual, predicted, labeled = group_data(9)
    names = ["a", "b", "c", "d"]

    def cell(prediction: int, label: int) -> IntArray:
        mask = labeled & (predicted == prediction) & (actual == label)
        return np.bincount(group[mask], minlength=4)

    rows = np.bincount(group, minlength=4)
    selected = np.bincount(group[predicted == 1], minlength=4)
    result = fairness(names, rows, selected, cell(1, 1), cell(1, 0), cell(0, 0), cell(0, 1))
    rate = {g: predicted[group == g].mean() for g in range(4)}
    tpr = {g: predicted[(group == g) & labeled & (actual == 1)].mean() for g in (0, 1)}
    fpr = {g: predicted[(group == g) & labeled & (actual == 0)].mean() for g in (0, 1, 2)}
    included = [rate[g] for g in (0, 1, 2)]
    assert [g.group for g in result.groups] == ["a", "b", "c", "d"]
    assert [g.excluded for g in result.groups] == [False, False, False, True]
    by_name = {g.group: g for g in result.groups}
    for g, name in enumerate(names):
        assert by_name[name].selection_rate == pytest.approx(rate[g], rel=1e-12)
        assert by_name[name].selection_rate_ratio == pytest.approx(rate[g] / max(included))
        assert by_name[name].labeled == int(np.sum(labeled & (group == g)))
    assert by_name["a"].true_positive_rate == pytest.approx(tpr[0])
    assert by_name["c"].true_positive_rate is None
    assert by_name["c"].false_positive_rate == pytest.approx(fpr[2])
    assert [by_name[n].adverse_impact for n in names] == [False, True, True, False]
    assert result.demographic_parity_difference == pytest.approx(max(included) - min(included))
    assert result.demographic_parity_ratio == pytest.approx(min(included) / max(included))
    odds = max(abs(tpr[0] - tpr[1]), max(fpr.values()) - min(fpr.values()))
    assert result.equalized_odds_difference == pytest.approx(odds)
    assert result.four_fifths_passed is False


def test_fairness_without_labels_or_selections() -> None:
    zeros = [0, 0]
    result = fairness(["x", "y"], [40, 60], zeros, zeros, zeros, zeros, zeros)
    assert [g.group for g in result.groups] == ["y", "x"]
    assert result.equalized_odds_difference is None
    assert result.groups[0].true_positive_rate is None
    assert (result.demographic_parity_difference, result.demographic_parity_ratio) == (0.0, 1.0)
    assert result.four_fifths_passed is True
    with pytest.raises(ValueError, match="2 non-negative counts"):
        fairness(["x", "y"], [40], zeros, zeros, zeros, zeros, zeros)


def test_two_proportion_z_p_value_is_the_chi_squared_test_and_ci_is_wald() -> None:
    result = two_proportion_z(45, 100, 60, 100, 0.95)
    table = [[45, 55], [60, 40]]
    assert result.p_value == pytest.approx(
        stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9
    )
    assert result.difference == pytest.approx(0.15)
    assert (result.lower, result.upper) == pytest.approx((0.0131530, 0.2868470), abs=1e-6)
    assert two_proportion_z(0, 50, 0, 80, 0.9).p_value == 1.0


@pytest.mark.parametrize("level", [0.9, 0.95])
def test_welch_t_from_sums_matches_scipy_ttest_ind(level: float) -> None:
    rng = np.random.default_rng(10)
    base = rng.normal(1.0, 2.0, 400)
    cand = rng.normal(1.3, 3.0, 250)
    result = welch_t(
        base.size, base.sum(), np.sum(base**2), cand.size, cand.sum(), np.sum(cand**2), level
    )
    expected = stats.ttest_ind(cand, base, equal_var=False)
    interval = expected.confidence_interval(level)
    assert result.difference == pytest.approx(cand.mean() - base.mean(), rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-8)
    assert (result.lower, result.upper) == pytest.approx((interval.low, interval.high), rel=1e-8)


def test_delta_method_on_known_values() -> None:
    result = delta_method(0.80, 0.03, 0.85, 0.04, 0.95)
    assert result.standard_error == pytest.approx(0.05)
    assert result.p_value == pytest.approx(0.31731050786291415, rel=1e-9)
    assert (result.lower, result.upper) == pytest.approx((-0.0479982, 0.1479982), abs=1e-6)
    with pytest.raises(ValueError, match="level"):
        delta_method(0.8, 0.03, 0.85, 0.04, 1.0)


def test_f1_standard_error_matches_the_spread_of_simulated_f1() -> None:
    cells = np.random.default_rng(11).multinomial(2000, [0.3, 0.1, 0.15, 0.45], size=20_000)
    tp, fp, fn = cells[:, 0], cells[:, 1], cells[:, 2]
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert f1_standard_error(600, 200, 300) == pytest.approx(f1.std(), rel=0.05)


@pytest.mark.parametrize(("slope", "noise"), [(0.8, 0.7), (0.2, 2.5)])
def test_r2_standard_error_matches_the_spread_of_simulated_r2(slope: float, noise: float) -> None:
    rng = np.random.default_rng(12)
    y = rng.normal(2.0, 1.5, (3000, 400))
    error = slope * y + rng.normal(0.3, noise, y.shape) - y
    sse, sst = np.sum(error**2, axis=1), np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    r2 = 1 - sse / sst
    # The formula at the population's moments (pooled over replicates), per 400 rows.
    se = r2_standard_error(
        400,
        400 * error.mean(),
        400 * float(np.mean(error**2)),
        400 * y.mean(),
        400 * float(np.mean(y**2)),
        400 * float(np.mean(error * y)),
    )
    assert se == pytest.approx(r2.std(), rel=0.05)


def test_hanley_mcneil_matches_the_spread_of_simulated_auc() -> None:
    # Exponential scores are the case Hanley and McNeil's Q1, Q2 are exact for: AUC = 4 / 5.
    rng = np.random.default_rng(13)
    negatives = rng.exponential(1.0, (4000, 1, 90))
    positives = rng.exponential(4.0, (4000, 60, 1))
    auc = np.mean(positives > negatives, axis=(1, 2))
    assert hanley_mcneil_se(0.8, 60, 90) == pytest.approx(auc.std(), rel=0.07)
    assert auc.mean() == pytest.approx(0.8, abs=0.005)
