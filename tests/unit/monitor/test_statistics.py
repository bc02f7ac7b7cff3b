"""Drift statistics from aggregates, checked against scipy on the raw samples they summarise."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats  # type: ignore[import-untyped]
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped]

from services.monitor.statistics import (
    Cdf,
    adjust_p_values,
    chi_squared,
    histogram_quantiles,
    jensen_shannon,
    ks,
    psi,
    quantile,
    quantiles,
    wasserstein,
)

FloatArray = npt.NDArray[np.float64]
LEVELS = np.linspace(0.0, 1.0, 101)
GRID_CELLS = 256

counts = st.lists(st.integers(0, 1000), min_size=1, max_size=12).filter(lambda c: sum(c) > 0)


def reference_cdf(samples: FloatArray) -> Cdf:
    """The reference profile's summary: 101 quantiles at levels 0, 0.01, ..., 1."""
    return Cdf.from_quantiles(LEVELS, np.quantile(samples, LEVELS))


def grid_cdf(samples: FloatArray, lo: float, hi: float) -> Cdf:
    """The monitor's sketch: underflow, GRID_CELLS cells over [lo, hi), overflow; min and max."""
    cell = np.floor((samples - lo) / (hi - lo) * GRID_CELLS).astype(np.int64) + 1
    histogram = np.bincount(np.clip(cell, 0, GRID_CELLS + 1), minlength=GRID_CELLS + 2)
    return Cdf.from_histogram(lo, hi, histogram, float(samples.min()), float(samples.max()))


def reference_grid(reference: FloatArray) -> tuple[float, float]:
    spread = float(reference.max() - reference.min())
    return float(reference.min()) - 0.5 * spread, float(reference.max()) + 0.5 * spread


def empirical_cdf(samples: FloatArray) -> Cdf:
    """The exact step CDF of a sample: a jump at every distinct value."""
    values, repeats = np.unique(samples, return_counts=True)
    after = np.cumsum(repeats) / samples.size
    before = np.concatenate([[0.0], after[:-1]])
    return Cdf.from_knots(np.repeat(values, 2), np.column_stack([before, after]).ravel())


def test_psi_matches_hand_computation_with_an_empty_bin() -> None:
    assert psi([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(3.0), rel=1e-12)
    expected = 0.5 * math.log(2.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi([100, 0], [50, 50]) == pytest.approx(expected, rel=1e-12)


@given(counts, st.integers(1, 5))
def test_psi_and_js_of_one_distribution_are_zero(reference: list[int], factor: int) -> None:
    scaled = [c * factor for c in reference]
    assert psi(reference, scaled) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon(reference, scaled) == pytest.approx(0.0, abs=1e-6)


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=1, max_size=12))
def test_js_is_symmetric_bounded_and_scipy_s(pairs: list[tuple[int, int]]) -> None:
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    if a.sum() == 0 or b.sum() == 0:
        return
    distance = jensen_shannon(a, b)
    assert 0.0 <= distance <= 1.0
    assert distance == pytest.approx(jensen_shannon(b, a), abs=1e-12)
    assert distance == pytest.approx(jensenshannon(a, b, base=2), abs=1e-9)
    assert psi(a, b) >= 0.0


def test_js_of_disjoint_distributions_is_one() -> None:
    assert jensen_shannon([10, 0, 0], [0, 5, 7]) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chi_squared_matches_scipy_contingency(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.multinomial(5000, rng.dirichlet(np.ones(8)))
    current = rng.multinomial(800, rng.dirichlet(np.ones(8)))
    reference[3] = current[3] = 0  # a bin empty in both is dropped, not a zero expectation
    v, p = chi_squared(reference, current)
    table = np.stack([reference, current])[:, reference + current > 0]
    expected = stats.chi2_contingency(table, correction=False)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert v == pytest.approx(stats.contingency.association(table, method="cramer"), rel=1e-9)
    assert 0.0 < v <= 1.0


def test_chi_squared_of_proportional_counts_finds_nothing() -> None:
    assert chi_squared([10, 20, 30], [20, 40, 60]) == pytest.approx((0.0, 1.0))
    assert chi_squared([10, 0], [3, 0]) == (0.0, 1.0)


def test_count_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="one length"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least one count"):
        jensen_shannon([0, 0], [1, 2])
    with pytest.raises(ValueError, match="negative"):
        chi_squared([1, -1], [1, 2])


def test_from_quantiles_round_trips_ties_and_makes_jumps() -> None:
    values = np.repeat([0.0, 1.0, 2.0], [30, 50, 21])
    cdf = Cdf.from_quantiles(LEVELS, values)
    np.testing.assert_allclose(quantiles(cdf, LEVELS), values)
    assert cdf.at([1.0]) == pytest.approx([0.79])
    assert cdf.left_limit([1.0]) == pytest.approx([0.30])
    assert cdf.at([-0.1, 2.0]) == pytest.approx([0.0, 1.0])
    assert quantile(Cdf.from_quantiles([0.0, 1.0], [4.0, 4.0]), 0.3) == 4.0


def test_from_quantiles_absorbs_rounding_that_breaks_monotonicity() -> None:
    dip = float(np.nextafter(1.0, 0.0))
    cdf = Cdf.from_quantiles([0.0, 1 / 3, 2 / 3, 1.0], [0.0, 1.0, dip, 2.0])
    assert quantile(cdf, 2 / 3) == 1.0


def test_from_histogram_spreads_cells_uniformly_and_clips_to_the_observed_range() -> None:
    cdf = Cdf.from_histogram(0.0, 10.0, [1, 2, 3, 4], observed_min=-2.0, observed_max=12.0)
    np.testing.assert_allclose(
        cdf.at([-3.0, -1.0, 0.0, 2.5, 5.0, 11.0, 12.0]), [0.0, 0.05, 0.1, 0.2, 0.3, 0.8, 1.0]
    )
    clipped = Cdf.from_histogram(0.0, 10.0, [0, 4, 4, 0], observed_min=1.0, observed_max=6.0)
    assert clipped.at([3.0, 5.5]) == pytest.approx([0.25, 0.75])
    assert quantile(clipped, 0.5) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="lo < hi"):
        Cdf.from_histogram(1.0, 1.0, [1, 1, 1], 0.0, 2.0)


@given(
    st.lists(st.integers(0, 1000), min_size=3, max_size=40).filter(lambda c: sum(c) > 0),
    st.floats(-1e6, 1e6),
    st.floats(1e-3, 1e6),
    st.floats(-2.0, 2.0),
    st.floats(0.0, 3.0),
)
def test_from_histogram_builds_a_valid_cdf_without_checking_it_again(
    counts: list[int], lo: float, width: float, below: float, span: float
) -> None:
    # Built unchecked: the same knots pass every check of the public constructor.
    hi = lo + width
    observed_min = lo + below * width
    cdf = Cdf.from_histogram(lo, hi, counts, observed_min, observed_min + span * width)
    again = Cdf(cdf.x.copy(), cdf.p.copy(), binned=True)
    assert again.binned and cdf.binned
    assert cdf.p[0] == 0.0 and cdf.p[-1] == 1.0


def test_cdf_rejects_knots_that_are_not_a_distribution() -> None:
    with pytest.raises(ValueError, match="from 0 to 1"):
        Cdf.from_knots([0.0, 1.0], [0.0, 0.9])
    with pytest.raises(ValueError, match="nondecreasing"):
        Cdf.from_knots([1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="from 0 to 1"):
        Cdf.from_quantiles([0.1, 1.0], [0.0, 1.0])


@pytest.mark.parametrize("integers", [False, True])
def test_ks_and_wasserstein_on_step_cdfs_equal_scipy_exactly(integers: bool) -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(0.0, 1.0, 700)
    b = rng.normal(0.3, 1.2, 450)
    if integers:
        a, b = np.round(a * 2), np.round(b * 2)
    d, p = ks(empirical_cdf(a), empirical_cdf(b), a.size, b.size)
    expected = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)
    w = wasserstein(empirical_cdf(a), empirical_cdf(b), scale=1.0)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


def test_ks_sees_a_gap_that_only_a_left_limit_reaches() -> None:
    uniform = Cdf.from_knots([0.0, 1.0], [0.0, 1.0])
    atom_at_one = Cdf.from_knots([1.0, 1.0], [0.0, 1.0])
    assert ks(uniform, atom_at_one, 50, 50)[0] == pytest.approx(1.0)
    assert wasserstein(uniform, atom_at_one, scale=1.0) == pytest.approx(0.5)


def test_wasserstein_integrates_a_sign_crossing_exactly_and_normalises() -> None:
    uniform = Cdf.from_knots([0.0, 1.0], [0.0, 1.0])
    narrow = Cdf.from_knots([0.25, 0.75], [0.0, 1.0])
    assert wasserstein(uniform, narrow, scale=1.0) == pytest.approx(0.125, rel=1e-12)
    assert wasserstein(uniform, narrow, scale=0.5) == pytest.approx(0.25, rel=1e-12)
    assert wasserstein(uniform, narrow, scale=0.0) == pytest.approx(125.0, rel=1e-12)


@pytest.fixture(scope="module")
def normal_reference() -> FloatArray:
    return np.random.default_rng(11).normal(0.0, 1.0, 100_000)


@pytest.mark.parametrize(("shift", "scale"), [(0.0, 1.0), (0.1, 1.0), (0.5, 1.0), (0.0, 2.0)])
def test_ks_from_summaries_is_close_to_scipy_on_raw_samples(
    normal_reference: FloatArray, shift: float, scale: float
) -> None:
    current = np.random.default_rng(12).normal(shift, scale, 100_000)
    lo, hi = reference_grid(normal_reference)
    d, p = ks(reference_cdf(normal_reference), grid_cdf(current, lo, hi), 100_000, 100_000)
    expected = stats.ks_2samp(normal_reference, current, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=0.015)
    if shift == 0.0 and scale == 1.0:
        assert d < 0.01
        assert p > 1e-4
    else:
        assert p < 1e-6


@pytest.mark.parametrize(
    ("shift", "scale"), [(0.5, 1.0), (-1.0, 1.0), (0.0, 2.0), (1.0, 0.5), (0.5, 2.0)]
)
def test_wasserstein_from_summaries_is_close_to_scipy_on_raw_samples(
    normal_reference: FloatArray, shift: float, scale: float
) -> None:
    current = np.random.default_rng(13).normal(shift, scale, 100_000)
    lo, hi = reference_grid(normal_reference)
    w = wasserstein(reference_cdf(normal_reference), grid_cdf(current, lo, hi), scale=1.0)
    assert w == pytest.approx(stats.wasserstein_distance(normal_reference, current), rel=0.03)


def test_wasserstein_of_one_distribution_stays_under_the_quantile_summary_floor(
    normal_reference: FloatArray,
) -> None:
    # The reference's 1% tails are spread linearly out to its min and max: about 0.016 sd of
    # W1 on a normal column, a floor well under the default threshold of 0.1.
    current = np.random.default_rng(13).normal(0.0, 1.0, 100_000)
    lo, hi = reference_grid(normal_reference)
    w = wasserstein(reference_cdf(normal_reference), grid_cdf(current, lo, hi), scale=1.0)
    assert w < 0.03


@pytest.mark.parametrize("current_shares", [[0.3, 0.5, 0.2], [0.2, 0.5, 0.3]])
def test_ks_on_a_discrete_column_is_not_fooled_by_the_grid(current_shares: list[float]) -> None:
    rng = np.random.default_rng(5)
    reference = rng.choice(3, 50_000, p=[0.3, 0.5, 0.2]).astype(np.float64)
    current = rng.choice(3, 50_000, p=current_shares).astype(np.float64)
    lo, hi = reference_grid(reference)
    d, _ = ks(reference_cdf(reference), grid_cdf(current, lo, hi), 50_000, 50_000)
    expected = stats.ks_2samp(reference, current, method="asymp").statistic
    assert d == pytest.approx(expected, abs=0.015)


def test_ks_when_the_current_maximum_is_an_atom_inside_a_grid_cell() -> None:
    rng = np.random.default_rng(6)
    reference = rng.choice([0.0, 1.0, 2.0, 10.0], 20_000, p=[0.3, 0.5, 0.15, 0.05])
    current = rng.choice([0.0, 1.0], 20_000, p=[0.375, 0.625])
    lo, hi = reference_grid(reference)  # 1.0 falls inside a cell: the grid is 5/64 wide
    d, _ = ks(reference_cdf(reference), grid_cdf(current, lo, hi), 20_000, 20_000)
    expected = stats.ks_2samp(reference, current, method="asymp").statistic
    assert d == pytest.approx(expected, abs=0.015)


def test_ks_p_value_falls_with_sample_size() -> None:
    a = Cdf.from_knots([0.0, 1.0], [0.0, 1.0])
    b = Cdf.from_knots([0.05, 1.05], [0.0, 1.0])
    d, p_small = ks(a, b, 100, 100)
    _, p_large = ks(a, b, 10_000, 10_000)
    assert d == pytest.approx(0.05)
    assert p_small == pytest.approx(stats.kstwo.sf(0.05, 50))
    assert p_large < 0.01 < p_small


P_VALUES = np.array([0.01, 0.04, 0.03, 0.005, 0.5])


def test_bonferroni_and_holm_on_a_known_vector() -> None:
    np.testing.assert_allclose(
        adjust_p_values(P_VALUES, "bonferroni"), [0.05, 0.2, 0.15, 0.025, 1.0]
    )
    # Holm: sorted 0.005, 0.01, 0.03, 0.04, 0.5 times 5, 4, 3, 2, 1 -> 0.025, 0.04, 0.09, 0.08
    # (raised to 0.09 by monotonicity), 0.5.
    np.testing.assert_allclose(adjust_p_values(P_VALUES, "holm"), [0.04, 0.09, 0.09, 0.025, 0.5])
    np.testing.assert_array_equal(adjust_p_values(P_VALUES, "none"), P_VALUES)
    np.testing.assert_allclose(adjust_p_values([0.9, 0.8], "holm"), [1.0, 1.0])


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_benjamini_hochberg_matches_scipy(p_values: list[float]) -> None:
    np.testing.assert_allclose(
        adjust_p_values(p_values, "benjamini_hochberg"),
        stats.false_discovery_control(p_values, method="bh"),
        rtol=1e-12,
        atol=1e-300,
    )


def test_adjust_p_values_rejects_an_unknown_method_and_bad_values() -> None:
    with pytest.raises(ValueError, match="holm"):
        adjust_p_values([0.1], "sidak")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_p_values([1.5], "none")
    assert adjust_p_values([], "holm").size == 0


def awkward_histograms(
    rng: np.random.Generator,
) -> list[tuple[float, float, npt.NDArray[np.int64], float, float]]:
    """Grids of a few cells with empty cells, all mass in one cell, mass only under or
    over the grid, a minimum and maximum inside the grid, and one value seen once."""
    made = []
    for case in range(40):
        cells = int(rng.integers(1, 9)) + 2
        lo, hi = sorted(rng.normal(0, 5, 2))
        counts = rng.integers(0, 4, cells) * (rng.random(cells) < 0.6)
        if case % 5 == 0:
            counts = np.zeros(cells, dtype=np.int64)
            counts[rng.integers(0, cells)] = 7
        if counts.sum() == 0:
            counts[-1] = 1
        low = lo - abs(rng.normal()) if counts[0] else lo + (hi - lo) * rng.random() / cells
        high = hi + abs(rng.normal()) if counts[-1] else hi - (hi - lo) * rng.random() / cells
        if case % 7 == 0:
            low = high = lo + (hi - lo) * 0.5  # a single value
            counts = np.zeros(cells, dtype=np.int64)
            counts[1 + (cells - 2) // 2] = 3
        made.append((lo, hi, counts.astype(np.int64), min(low, high), max(low, high)))
    return made


def test_histogram_quantiles_are_the_histogram_cdfs_quantiles_row_by_row() -> None:
    rng = np.random.default_rng(5)
    rows = awkward_histograms(rng)
    levels = np.concatenate([LEVELS, [0.25 + 1e-17, 1 / 3, 2 / 3]])
    for width in sorted({len(r[2]) for r in rows}):
        same = [r for r in rows if len(r[2]) == width]
        got = histogram_quantiles(
            np.array([r[0] for r in same]),
            np.array([r[1] for r in same]),
            np.stack([r[2] for r in same]),
            np.array([r[3] for r in same]),
            np.array([r[4] for r in same]),
            levels,
        )
        for row, (lo, hi, counts, low, high) in zip(got, same, strict=True):
            want = quantiles(Cdf.from_histogram(lo, hi, counts, low, high), levels)
            np.testing.assert_allclose(row, want, rtol=1e-12, atol=1e-12)
