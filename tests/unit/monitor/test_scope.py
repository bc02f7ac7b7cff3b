"""The time range a report covers when the caller gives none."""

from __future__ import annotations

import time

import pytest

from services.monitor.scope import make_scope

BASE_S = 300
BOUNDARY_S = 1_764_316_800  # a multiple of 300: the start of a 5-minute bucket


@pytest.mark.parametrize("into_bucket_s", [0.0, 0.25, 0.999, 1.5, 299.9])
def test_the_default_range_holds_the_bucket_being_written(
    monkeypatch: pytest.MonkeyPatch, into_bucket_s: float
) -> None:
    # Rows logged just now carry times in the current bucket, even in its first second.
    monkeypatch.setattr(time, "time", lambda: BOUNDARY_S + into_bucket_s)
    found = make_scope("churn", 0, "", "", None, None, 0, BASE_S)
    assert found.end_s == BOUNDARY_S + BASE_S
    assert found.start_s <= BOUNDARY_S + BASE_S - 86_400


def test_a_given_end_is_kept_on_its_bucket_boundary() -> None:
    found = make_scope("churn", 0, "", "", BOUNDARY_S - 3600, BOUNDARY_S, 0, BASE_S)
    assert (found.start_s, found.end_s) == (BOUNDARY_S - 3600, BOUNDARY_S)
