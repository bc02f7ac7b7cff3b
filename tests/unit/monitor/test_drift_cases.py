"""Seeded drift cases with a known answer, at 100k and 1M rows: exactly the drifted
features are flagged, a tiny shift never is, and identical distributions of every shape
never are. The rows go through the monitor's own counting (``count_predictions``) into
bucket state, and the verdicts come from that state alone."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from keel.client.profile import categorical_profile, numeric_profile
from keel.monitor.v1 import reports_pb2 as rp
from services.monitor.accumulate import Rows, count_predictions
from services.monitor.aggregates import State
from services.monitor.convert import column_reference
from services.monitor.drift import drift_report
from services.monitor.reference import FeatureSpec, ModelReference
from services.monitor.scope import VersionRows
from tests.support.monitor_references import binary_reference

REFERENCE_ROWS = 100_000
CITIES = ("paris", "lyon", "nice", "lille")
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def shapes(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    """Every shape a feature takes here, drawn independently."""
    return {
        "normal": rng.normal(10, 2, n),
        "skewed": rng.lognormal(0, 1, n),
        "discrete": rng.poisson(3, n).astype(np.float64),
        "bimodal": np.where(rng.random(n) < 0.3, rng.normal(-4, 1, n), rng.normal(5, 0.5, n)),
    }


def city(rng: np.random.Generator, n: int, mix: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)) -> Ints:
    return rng.choice(len(CITIES), size=n, p=mix)


def reference_for(seed: int) -> ModelReference:
    rng = np.random.default_rng(seed)
    numeric = shapes(rng, REFERENCE_ROWS)
    cities = city(rng, REFERENCE_ROWS)
    columns = {
        name: column_reference(numeric_profile(name, values)) for name, values in numeric.items()
    }
    columns["city"] = column_reference(categorical_profile("city", [CITIES[c] for c in cities]))
    columns["prediction"] = column_reference(numeric_profile("prediction", rng.random(1000)))
    features = tuple(FeatureSpec(name, "numeric") for name in numeric) + (
        FeatureSpec("city", "categorical", categories=CITIES),
    )
    return binary_reference(features, columns, REFERENCE_ROWS)


def verdicts(
    reference: ModelReference, numeric: dict[str, Floats], cities: Ints
) -> dict[str, bool]:
    state = State.empty(reference.layout)
    index = reference.layout.categories["city"].index
    codes = np.array([index[c] for c in CITIES])[cities]
    n = len(cities)
    for start in range(0, n, 100_000):  # counted in batches, as the service does
        part = slice(start, start + 100_000)
        rows = Rows(
            numeric={k: (v[part], np.zeros(len(v[part]), dtype=bool)) for k, v in numeric.items()},
            categorical={"city": (codes[part], np.zeros(len(codes[part]), dtype=bool))},
        )
        count_predictions(state, reference, rows)
    report = drift_report(VersionRows(reference, state, n), rp.DriftOptions())
    return {f.feature: f.drifted for f in report.features}


@pytest.fixture(scope="module")
def reference() -> ModelReference:
    return reference_for(0)


@pytest.mark.parametrize("rows", [100_000, 1_000_000])
def test_identical_distributions_never_drift(reference: ModelReference, rows: int) -> None:
    rng = np.random.default_rng(rows)
    assert not any(verdicts(reference, shapes(rng, rows), city(rng, rows)).values())


@pytest.mark.parametrize("rows", [100_000, 1_000_000])
def test_exactly_the_changed_features_drift(reference: ModelReference, rows: int) -> None:
    rng = np.random.default_rng(rows + 1)
    current = shapes(rng, rows)
    current["normal"] = current["normal"] + 0.5 * 2  # mean shift of 0.5 sd
    mean = current["bimodal"].mean()
    current["bimodal"] = mean + (current["bimodal"] - mean) * 2**0.5  # doubled variance
    found = verdicts(reference, current, city(rng, rows, (0.1, 0.2, 0.3, 0.4)))
    assert found == {
        "normal": True,
        "skewed": False,
        "discrete": False,
        "bimodal": True,
        "city": True,
    }


@pytest.mark.parametrize("rows", [100_000, 1_000_000])
def test_doubled_variance_is_drift(reference: ModelReference, rows: int) -> None:
    rng = np.random.default_rng(rows + 2)
    current = shapes(rng, rows)
    current["normal"] = 10 + (current["normal"] - 10) * 2**0.5
    assert verdicts(reference, current, city(rng, rows)) == {
        "normal": True,
        "skewed": False,
        "discrete": False,
        "bimodal": False,
        "city": False,
    }


@pytest.mark.parametrize("rows", [100_000, 1_000_000])
def test_a_tiny_shift_is_not_drift_at_any_size(reference: ModelReference, rows: int) -> None:
    rng = np.random.default_rng(rows + 3)
    current = shapes(rng, rows)
    current["normal"] = current["normal"] + 0.02 * 2
    current["skewed"] = current["skewed"] * 1.02
    assert not any(verdicts(reference, current, city(rng, rows)).values())


def test_state_size_does_not_grow_with_rows(reference: ModelReference) -> None:
    rng = np.random.default_rng(9)
    sizes = []
    for rows in (1_000, 100_000, 1_000_000):
        state = State.empty(reference.layout)
        numeric = shapes(rng, rows)
        rows_ = Rows(numeric={k: (v, np.zeros(rows, dtype=bool)) for k, v in numeric.items()})
        count_predictions(state, reference, rows_)
        sizes.append(sum(a.nbytes for a in state.arrays.values()))
    assert sizes[0] == sizes[1] == sizes[2]
