"""Fairness per protected feature, from the per-group counts of predicted classes (all
rows) and of actual × predicted classes (labelled rows)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from keel.common.v1 import metric_pb2
from keel.monitor.v1 import reports_pb2 as rp
from services.common.errors import FailedPrecondition, InvalidArgument
from services.monitor import metrics_math
from services.monitor.performance import judged
from services.monitor.reference import MULTICLASS, ModelReference
from services.monitor.scope import VersionRows

FAIRNESS_METRICS = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
)


def check_options(reference: ModelReference, options: rp.FairnessOptions) -> tuple[list[str], int]:
    """The features to report and the index of the positive class."""
    if not reference.classifier:
        raise FailedPrecondition("fairness needs a classifier; this model is a regressor")
    protected = [f.name for f in reference.features if f.protected]
    if not protected:
        raise FailedPrecondition("the model's signature flags no feature as protected")
    for name in options.features:
        if name not in protected:
            raise InvalidArgument(
                f"options.features: '{name}' is not a protected feature (protected: {protected})"
            )
    if options.positive_class:
        if options.positive_class not in reference.class_labels:
            raise InvalidArgument(
                f"options.positive_class: '{options.positive_class}' is not a class label "
                f"(expected one of {list(reference.class_labels)})"
            )
        positive = reference.class_labels.index(options.positive_class)
    elif reference.task == MULTICLASS:
        raise InvalidArgument("options.positive_class: required for a multiclass model")
    else:
        positive = 1
    return list(options.features) or protected, positive


def counts(
    selection: list[VersionRows], name: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """(predicted [G, K], joint [G, K, K]) of a protected feature, summed over versions
    with the same groups."""
    newest = selection[-1]
    pred_name, joint_name = f"f:{name}:pred", f"f:{name}:joint"
    if pred_name not in newest.state.arrays:
        return None
    pred = np.zeros_like(newest.state.i8(pred_name))
    joint = np.zeros_like(newest.state.i8(joint_name))
    for held in selection:
        if held.reference.layout.groups.get(name) != newest.reference.layout.groups.get(name):
            continue
        pred += held.state.i8(pred_name)
        joint += held.state.i8(joint_name)
    return pred, joint


def feature_fairness(
    selection: list[VersionRows], name: str, positive: int, options: rp.FairnessOptions
) -> rp.FeatureFairness | None:
    found = counts(selection, name)
    if found is None:
        return None
    pred, joint = found
    groups = selection[-1].reference.layout.groups[name]
    rows = pred.sum(axis=1)
    selected = pred[:, positive]
    tp = joint[:, positive, positive]
    fn = joint[:, positive, :].sum(axis=1) - tp
    fp = joint[:, :, positive].sum(axis=1) - tp
    tn = joint.sum(axis=(1, 2)) - tp - fn - fp
    min_size = options.min_group_size if options.HasField("min_group_size") else 30
    four_fifths = (
        options.four_fifths_threshold if options.HasField("four_fifths_threshold") else 0.8
    )
    result = metrics_math.fairness(
        list(groups), rows, selected, tp, fp, tn, fn, min_size, four_fifths
    )
    message = rp.FeatureFairness(
        feature=name,
        demographic_parity_difference=result.demographic_parity_difference,
        demographic_parity_ratio=result.demographic_parity_ratio,
        four_fifths_passed=result.four_fifths_passed,
    )
    if result.equalized_odds_difference is not None:
        message.equalized_odds_difference = result.equalized_odds_difference
    index = {g: i for i, g in enumerate(groups)}
    for group in result.groups:
        if group.rows == 0:
            continue
        i = index[group.group]
        entry = rp.GroupRates(
            group=group.group,
            row_count=group.rows,
            labeled_count=group.labeled,
            selection_rate=group.selection_rate,
            true_positives=int(tp[i]),
            false_positives=int(fp[i]),
            true_negatives=int(tn[i]),
            false_negatives=int(fn[i]),
            selection_rate_ratio=group.selection_rate_ratio,
            adverse_impact=group.adverse_impact,
            excluded=group.excluded,
        )
        if group.true_positive_rate is not None:
            entry.true_positive_rate = group.true_positive_rate
        if group.false_positive_rate is not None:
            entry.false_positive_rate = group.false_positive_rate
        message.groups.append(entry)
    return message


def fairness_report(selection: list[VersionRows], options: rp.FairnessOptions) -> rp.FairnessReport:
    report = rp.FairnessReport()
    if not selection:
        return report
    reference = selection[-1].reference
    features, positive = check_options(reference, options)
    report.row_count = sum(h.rows for h in selection)
    report.labeled_count = sum(h.labeled for h in selection)
    report.positive_class = reference.class_labels[positive]
    for name in features:
        entry = feature_fairness(selection, name, positive, options)
        if entry is not None:
            report.features.append(entry)
            report.objectives.extend(_objectives(reference, entry))
    return report


def _objectives(
    reference: ModelReference, entry: rp.FeatureFairness
) -> list[metric_pb2.ObjectiveResult]:
    results = []
    for objective in reference.objectives:
        if objective.metric not in FAIRNESS_METRICS:
            continue
        value = getattr(entry, objective.metric)
        if objective.metric == "equalized_odds_difference" and not entry.HasField(
            "equalized_odds_difference"
        ):
            value = None
        feature = f"feature '{entry.feature}'"
        result = judged(objective, value, note=feature, subject=f"{feature}: ")
        results.append(result)
    return results
