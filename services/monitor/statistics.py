"""Drift statistics computed from the monitor's bounded aggregates, never from raw rows.

Distributions come as counts on shared bins or as piecewise-linear CDFs (`Cdf`) built from a
reference profile's quantiles or from the monitor's fine numeric histogram. Every function is pure:
numpy arrays in, Python floats (or a small dataclass) out. Bad input raises ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

PSI_EMPTY_SHARE = 1e-4
"""Share given to an empty bin by `psi` (in either distribution), without renormalising."""
CORRECTIONS = ("none", "bonferroni", "holm", "benjamini_hochberg")


def _pair_of_counts(reference: ArrayLike, current: ArrayLike) -> tuple[FloatArray, FloatArray]:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != cur.shape or ref.size == 0:
        raise ValueError(
            f"expected two 1-D count arrays of one length, got {ref.shape}, {cur.shape}"
        )
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(cur))):
        raise ValueError("counts must be finite")
    if np.any(ref < 0) or np.any(cur < 0):
        raise ValueError("counts must not be negative")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("both distributions need at least one count")
    return ref, cur


def psi(reference_counts: ArrayLike, current_counts: ArrayLike) -> float:
    """Population stability index sum((c - r) * ln(c / r)) on shares; empty bins take 1e-4."""
    ref, cur = _pair_of_counts(reference_counts, current_counts)
    r = ref / ref.sum()
    c = cur / cur.sum()
    r = np.where(ref == 0, PSI_EMPTY_SHARE, r)
    c = np.where(cur == 0, PSI_EMPTY_SHARE, c)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference_counts: ArrayLike, current_counts: ArrayLike) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the two count distributions."""
    ref, cur = _pair_of_counts(reference_counts, current_counts)
    p = ref / ref.sum()
    q = cur / cur.sum()
    m = (p + q) / 2.0
    divergence = (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / 2.0
    return float(np.clip(np.sqrt(max(divergence / np.log(2.0), 0.0)), 0.0, 1.0))


def chi_squared(reference_counts: ArrayLike, current_counts: ArrayLike) -> tuple[float, float]:
    """Chi-squared test of homogeneity on the 2 x K table: (Cramér's V, p-value).

    Columns empty in both rows are dropped; with fewer than two columns left the two
    distributions are identical, so V = 0 and p = 1. No continuity correction.
    """
    ref, cur = _pair_of_counts(reference_counts, current_counts)
    keep = (ref + cur) > 0
    table = np.stack([ref[keep], cur[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0
    total = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / total
    statistic = float(np.sum((table - expected) ** 2 / expected))
    p_value = float(stats.chi2.sf(statistic, table.shape[1] - 1))
    return float(min(np.sqrt(statistic / total), 1.0)), p_value


@dataclass(frozen=True, eq=False)
class Cdf:
    """A piecewise-linear CDF through knots (x, p): 0 left of x[0], 1 right of x[-1].

    `x` is nondecreasing; a value repeated twice is a jump (an atom) from the first knot's p to
    the second's. Between distinct knots the CDF is linear (mass spread uniformly). `p` is
    nondecreasing from 0 to 1. `binned` marks a histogram of half-open cells: only P(X < x_i) at
    its knots (cell edges) is exact, which `ks` takes into account.
    """

    x: FloatArray
    p: FloatArray
    binned: bool = False

    def __post_init__(self) -> None:
        x, p = self.x, self.p
        if x.ndim != 1 or x.shape != p.shape or x.size < 2:
            raise ValueError(f"knots: expected two 1-D arrays of one length >= 2, got {x.shape}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(p))):
            raise ValueError("knots must be finite")
        if np.any(np.diff(x) < 0) or np.any(np.diff(p) < 0):
            raise ValueError("knots must be nondecreasing in x and in p")
        if p[0] != 0.0 or p[-1] != 1.0:
            raise ValueError(f"p must run from 0 to 1, got {p[0]} to {p[-1]}")

    @classmethod
    def from_knots(cls, x: ArrayLike, p: ArrayLike, *, binned: bool = False) -> Cdf:
        """Build from knots, keeping only the first and last knot of a run of equal x."""
        xs = np.asarray(x, dtype=np.float64)
        ps = np.asarray(p, dtype=np.float64)
        if xs.ndim == 1 and xs.shape == ps.shape and xs.size > 2:
            xs, ps = _without_inner_repeats(xs, ps)
        return cls(xs, ps, binned)

    @classmethod
    def from_quantiles(cls, levels: ArrayLike, values: ArrayLike) -> Cdf:
        """The CDF whose quantile function is linear between (level, value) points; levels 0..1.

        Repeated values (ties, discrete columns) become jumps of the CDF. Values are made
        nondecreasing (a running maximum) to absorb rounding in a profile's quantiles.
        """
        lv = np.asarray(levels, dtype=np.float64)
        vs = np.maximum.accumulate(np.asarray(values, dtype=np.float64))
        if lv.ndim != 1 or lv.shape != vs.shape or lv.size < 2:
            raise ValueError(f"expected levels and values of one length >= 2, got {lv.shape}")
        if lv[0] != 0.0 or lv[-1] != 1.0 or np.any(np.diff(lv) <= 0):
            raise ValueError("levels must increase strictly from 0 to 1")
        return cls.from_knots(vs, lv)

    @classmethod
    def from_histogram(
        cls, lo: float, hi: float, counts: ArrayLike, observed_min: float, observed_max: float
    ) -> Cdf:
        """The CDF of a grid histogram, mass uniform within each cell.

        `counts` has G + 2 entries: underflow (< lo, spanning [observed_min, lo)), G equal-width
        cells over [lo, hi), overflow (>= hi, spanning [hi, observed_max]). Every cell is clipped
        to [observed_min, observed_max], so a cell holding the minimum or maximum only spreads its
        mass over the part of the cell that was observed.
        """
        cs = np.asarray(counts, dtype=np.float64)
        if cs.ndim != 1 or cs.size < 3 or not np.all(np.isfinite(cs)) or np.any(cs < 0):
            raise ValueError("counts: expected G + 2 >= 3 finite counts, none negative")
        if not (lo < hi and observed_min <= observed_max) or cs.sum() <= 0:
            raise ValueError("expected lo < hi, observed_min <= observed_max and some counts")
        edges, shares = _histogram_knots(
            np.array([lo]),
            np.array([hi]),
            cs[None, :],
            np.array([observed_min]),
            np.array([observed_max]),
        )
        # Valid by construction from the checked inputs: edges nondecreasing and finite,
        # shares from 0 to 1 (a report builds one per numeric column, so checks count).
        xs, ps = _without_inner_repeats(edges[0], shares[0])
        cdf = object.__new__(cls)
        for name, value in (("x", xs), ("p", ps), ("binned", True)):
            object.__setattr__(cdf, name, value)
        return cdf

    def at(self, points: ArrayLike) -> FloatArray:
        """F(t) = P(X <= t) at each point (right-continuous)."""
        t = np.asarray(points, dtype=np.float64)
        return self._interpolate(t, np.searchsorted(self.x, t, side="right"))

    def left_limit(self, points: ArrayLike) -> FloatArray:
        """F(t-) = P(X < t) at each point."""
        t = np.asarray(points, dtype=np.float64)
        return self._interpolate(t, np.searchsorted(self.x, t, side="left"))

    def _interpolate(self, t: FloatArray, above: npt.NDArray[np.intp]) -> FloatArray:
        # `above` is the index of the first knot right of t; interpolate on the segment before it.
        x, p = self.x, self.p
        right = np.clip(above, 1, x.size - 1)
        x0, x1, p0, p1 = x[right - 1], x[right], p[right - 1], p[right]
        width = x1 - x0
        safe = np.where(width > 0, width, 1.0)
        inside = p0 + (p1 - p0) * np.clip((t - x0) / safe, 0.0, 1.0)
        inside = np.where(width > 0, inside, p1)
        return np.where(above == 0, 0.0, np.where(above >= x.size, 1.0, inside))


def _without_inner_repeats(xs: FloatArray, ps: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Knots without the inner ones of a run of equal x (its first and last stay)."""
    inner = (xs[1:-1] == xs[:-2]) & (xs[1:-1] == xs[2:])
    keep = np.concatenate([[True], ~inner, [True]])
    return xs[keep], ps[keep]


def quantiles(cdf: Cdf, levels: ArrayLike) -> FloatArray:
    """Generalised inverse inf{x : F(x) >= level} at each level in [0, 1]."""
    u = np.asarray(levels, dtype=np.float64)
    if np.any((u < 0) | (u > 1)) or not np.all(np.isfinite(u)):
        raise ValueError("levels must lie in [0, 1]")
    row: FloatArray = _inverse(cdf.x[None, :], cdf.p[None, :], u)[0]
    return row


def _inverse(x: FloatArray, p: FloatArray, u: FloatArray) -> FloatArray:
    """``quantiles`` of the CDF whose knots are row ``i`` of ``x`` and ``p``, each row."""
    j = np.clip(np.stack([np.searchsorted(row, u, side="left") for row in p]), 1, x.shape[1] - 1)
    p0, p1 = np.take_along_axis(p, j - 1, axis=1), np.take_along_axis(p, j, axis=1)
    x0, x1 = np.take_along_axis(x, j - 1, axis=1), np.take_along_axis(x, j, axis=1)
    rise = np.where(p1 > p0, p1 - p0, 1.0)
    inside = x0 + (x1 - x0) * np.clip((u - p0) / rise, 0.0, 1.0)
    result: FloatArray = np.where(u <= p[:, :1], x[:, :1], inside)
    return result


def _histogram_knots(
    lo: FloatArray,
    hi: FloatArray,
    counts: npt.NDArray[np.generic],
    lows: FloatArray,
    highs: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Knots (x, p) of row ``i``'s grid histogram (see ``Cdf.from_histogram``), each row,
    runs of equal x kept whole."""
    cs = counts.astype(np.float64)
    grid = np.linspace(lo, hi, cs.shape[1] - 1, axis=1)
    x = np.clip(np.column_stack([lows, grid, highs]), lows[:, None], highs[:, None])
    cumulative = np.column_stack([np.zeros(len(cs)), np.cumsum(cs, axis=1)])
    return x, cumulative / cumulative[:, -1:]


def histogram_quantiles(
    lo: FloatArray,
    hi: FloatArray,
    counts: npt.NDArray[np.int64],
    lows: FloatArray,
    highs: FloatArray,
    levels: FloatArray,
) -> FloatArray:
    """Row ``i`` is ``quantiles(Cdf.from_histogram(lo[i], hi[i], counts[i], lows[i],
    highs[i]), levels)``, for every row at once: a report asks it of each numeric
    column, and a dozen small numpy calls per column were most of a drift verdict.

    The rows must hold some counts (no check here: the callers' states always do). The
    inner repeats that ``from_histogram`` drops do not change a quantile: within a run
    of equal knots, any segment interpolates to that same value.
    """
    u = np.asarray(levels, dtype=np.float64)
    return _inverse(*_histogram_knots(lo, hi, counts, lows, highs), u)


def quantile(cdf: Cdf, level: float) -> float:
    """One quantile of `cdf` (see `quantiles`)."""
    return float(quantiles(cdf, [level])[0])


def _knots(reference: Cdf, current: Cdf) -> FloatArray:
    return np.unique(np.concatenate([reference.x, current.x]))


def ks(reference: Cdf, current: Cdf, n_reference: int, n_current: int) -> tuple[float, float]:
    """Two-sample KS: (D = sup |F_ref - F_cur|, asymptotic two-sided p-value as scipy's ks_2samp).

    D is the exact supremum over the union of knots (both one-sided limits), except when a CDF is
    `binned`: then D is the largest gap of P(X < t) at the binned CDFs' cell edges (and of
    P(X <= max) at their maxima), the KS statistic of both distributions coarsened to the cells.
    That keeps an atom (an integer value, say) from looking like a gap as large as its mass
    because a histogram spreads it over its cell.
    The p-value is kstwo.sf(D, round(n * m / (n + m))), scipy's method='asymp'.
    """
    if n_reference < 1 or n_current < 1:
        raise ValueError(f"sample sizes must be positive, got {n_reference}, {n_current}")
    binned = [c.x for c in (reference, current) if c.binned]
    if binned:
        # Cell edges give P(X < e); the observed maximum, whose cell was clipped, gives P(X <= max).
        edges = np.unique(np.concatenate([np.append(x[x < x[-1]], x[0]) for x in binned]))
        tops = np.array([x[-1] for x in binned])
        gaps = np.concatenate(
            [
                reference.left_limit(edges) - current.left_limit(edges),
                reference.at(tops) - current.at(tops),
            ]
        )
    else:
        t = _knots(reference, current)
        gaps = np.concatenate(
            [reference.at(t) - current.at(t), reference.left_limit(t) - current.left_limit(t)]
        )
    d = float(np.clip(np.max(np.abs(gaps)), 0.0, 1.0))
    effective_n = np.round(n_reference * n_current / (n_reference + n_current))
    return d, float(np.clip(stats.kstwo.sf(d, effective_n), 0.0, 1.0))


def wasserstein(reference: Cdf, current: Cdf, scale: float) -> float:
    """Exact W1 = integral of |F_ref - F_cur| dx, divided by max(scale, 0.001)."""
    t = _knots(reference, current)
    start = reference.at(t[:-1]) - current.at(t[:-1])
    end = reference.left_limit(t[1:]) - current.left_limit(t[1:])
    width = np.diff(t)
    a, b = np.abs(start), np.abs(end)
    same_sign = start * end >= 0
    # A segment whose difference changes sign holds two triangles of total area w(a² + b²)/2(a + b).
    crossing = (a**2 + b**2) / (2.0 * np.where(a + b > 0, a + b, 1.0))
    area = width * np.where(same_sign, (a + b) / 2.0, crossing)
    return float(area.sum() / max(scale, 0.001))


def adjust_p_values(p_values: ArrayLike, method: str) -> FloatArray:
    """Adjusted p-values: "none", "bonferroni", "holm" (step-down) or "benjamini_hochberg"."""
    p = np.asarray(p_values, dtype=np.float64)
    if method not in CORRECTIONS:
        raise ValueError(f"correction: expected one of {', '.join(CORRECTIONS)}, got {method!r}")
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values: expected a 1-D array of values in [0, 1]")
    m = p.size
    if method == "none" or m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * np.arange(m, 0, -1))
    else:
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    return result
