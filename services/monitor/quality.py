"""Data quality per feature: missing values, values out of the declared range or outside
the reference's, unseen categories, and rows refused at inference."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from keel.common.v1 import profile_pb2, schema_pb2
from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import reports_pb2 as rp
from services.common.errors import InvalidArgument
from services.monitor.reference import ModelReference
from services.monitor.scope import VersionRows

OUT_OF_RANGE = ingest_pb2.REJECTION_REASON_OUT_OF_RANGE


def check_features(reference: ModelReference, features: list[str]) -> None:
    for name in features:
        if reference.feature(name) is None:
            raise InvalidArgument(f"features: '{name}' is not a feature of the model")


def quality_report(selection: list[VersionRows], features: list[str]) -> rp.DataQualityReport:
    """Data quality of the rows of every version in ``selection`` (pooled)."""
    report = rp.DataQualityReport()
    if not selection:
        return report
    newest = selection[-1].reference
    chosen = [f for f in newest.features if not features or f.name in features]
    rejections = np.zeros((len(newest.features) + 1, 7), dtype=np.int64)
    cells = missing_cells = 0
    for held in selection:
        report.row_count += held.rows
        table = held.state.i8("rejections")
        if table.shape == rejections.shape:
            rejections += table
    for index, feature in enumerate(newest.features):
        if feature not in chosen:
            continue
        quality = _feature(selection, feature.name, feature.numeric, rejections[index])
        cells += quality.row_count
        missing_cells += quality.missing_count
        report.features.append(quality)
    report.rejected_row_count = int(rejections.sum())
    total = report.row_count + report.rejected_row_count
    report.rejected_rate = report.rejected_row_count / total if total else 0.0
    report.missing_rate = missing_cells / cells if cells else 0.0
    report.request_rejections.extend(_reasons(rejections[-1]))
    return report


def _feature(
    selection: list[VersionRows], name: str, numeric: bool, rejected: npt.NDArray[np.int64]
) -> rp.FeatureQuality:
    kind = schema_pb2.FEATURE_KIND_NUMERIC if numeric else schema_pb2.FEATURE_KIND_CATEGORICAL
    quality = rp.FeatureQuality(feature=name, kind=kind)
    total = 0.0
    low, high = np.inf, -np.inf
    unseen: dict[str, int] = {}
    for held in selection:
        state = held.state
        prefix = f"{'n' if numeric else 'c'}:{name}"
        if f"{prefix}:count" not in state.arrays:
            continue
        count = state.i8(f"{prefix}:count")
        quality.row_count += int(count[0])
        quality.missing_count += int(count[1])
        if numeric:
            quality.out_of_range_count += int(count[2])
            quality.outside_reference_count += int(count[3])
            total += float(state.f8(f"{prefix}:sum")[0])
            low = min(low, float(state.f8(f"{prefix}:min")[0]))
            high = max(high, float(state.f8(f"{prefix}:max")[0]))
        else:
            quality.unseen_category_count += int(state.i8(f"{prefix}:counts")[-1])
            for value, n in state.unseen.get(name, {}).items():
                unseen[value] = unseen.get(value, 0) + n
    refused_range = int(rejected[OUT_OF_RANGE])
    quality.out_of_range_count += refused_range
    present = quality.row_count - quality.missing_count
    quality.missing_rate = quality.missing_count / quality.row_count if quality.row_count else 0.0
    denominator = quality.row_count + refused_range
    quality.out_of_range_rate = quality.out_of_range_count / denominator if denominator else 0.0
    if not numeric:
        quality.unseen_category_rate = quality.unseen_category_count / present if present else 0.0
        top = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))[:20]
        quality.top_unseen_categories.extend(
            profile_pb2.CategoryCount(value=v, count=c) for v, c in top
        )
    elif present:
        quality.min, quality.max, quality.mean = low, high, total / present
    quality.rejections.extend(_reasons(rejected))
    return quality


def _reasons(row: npt.NDArray[np.int64]) -> list[rp.RejectionCount]:
    return [
        rp.RejectionCount(reason=ingest_pb2.RejectionReason.ValueType(r), row_count=int(n))
        for r, n in enumerate(row)
        if n
    ]
