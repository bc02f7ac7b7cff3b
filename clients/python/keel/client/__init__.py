"""Keel's hand-written Python client.

    from keel.client import Keel

    with Keel() as keel:
        v = keel.log_model(model, "churn", X_train, y_train, X_test, y_test,
                           objectives=["f1 >= 0.80"], protected=["sex"])
        keel.promote("churn", v.version, "production")
        prediction = keel.predict("churn", X_new)
        keel.feedback(prediction, y_new)
        keel.performance("churn").metrics

Importing this package, constructing ``Keel`` and the monitor's reports need only
grpcio and protobuf; ``log_model``, ``predict``, ``explain``, ``feedback``,
``log_predictions`` and ``load_model`` need the `ml` extra
(``pip install 'keel-client[ml]'``), ``to_pandas()`` needs pandas.
"""

from keel.client.alerts import Alert, AlertList
from keel.client.errors import (
    STATUS_TABLE,
    AlreadyExists,
    ArtifactRefused,
    Cancelled,
    Conflict,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    GateRefused,
    Internal,
    InvalidArgument,
    KeelError,
    NotFound,
    OutOfRange,
    PermissionDenied,
    RegistrationFailed,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    translate,
)
from keel.client.fairness import FairnessResult, FeatureFairness, GroupRates
from keel.client.keel import Keel, RegisteredVersion
from keel.client.objectives import parse_objective
from keel.client.reports import (
    ClassPerformance,
    DriftBins,
    DriftResult,
    FeatureDrift,
    ObjectiveCheck,
    PerformanceResult,
)
from keel.client.results import Explanation, FeedbackResult, Prediction
from keel.client.variants import ComparisonResult, VariantComparison, VariantValue

__all__ = [
    "STATUS_TABLE",
    "Alert",
    "AlertList",
    "AlreadyExists",
    "ArtifactRefused",
    "Cancelled",
    "ClassPerformance",
    "ComparisonResult",
    "Conflict",
    "DataLoss",
    "DeadlineExceeded",
    "DriftBins",
    "DriftResult",
    "Explanation",
    "FailedPrecondition",
    "FairnessResult",
    "FeatureDrift",
    "FeatureFairness",
    "FeedbackResult",
    "GateRefused",
    "GroupRates",
    "Internal",
    "InvalidArgument",
    "Keel",
    "KeelError",
    "NotFound",
    "ObjectiveCheck",
    "OutOfRange",
    "PerformanceResult",
    "PermissionDenied",
    "Prediction",
    "RegisteredVersion",
    "RegistrationFailed",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "VariantComparison",
    "VariantValue",
    "parse_objective",
    "translate",
]
