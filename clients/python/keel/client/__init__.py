"""Keel's hand-written Python client.

    from keel.client import Keel

    with Keel() as keel:
        v = keel.log_model(model, "churn", X_train, y_train, X_test, y_test,
                           objectives=["f1 >= 0.80"], protected=["sex"])
        keel.promote("churn", v.version, "production")

Importing this package needs only grpcio and protobuf; ``log_model`` needs the `ml`
extra (``pip install 'keel-client[ml]'``).
"""

from keel.client.errors import (
    AlreadyExists,
    Conflict,
    DeadlineExceeded,
    FailedPrecondition,
    GateRefused,
    Internal,
    InvalidArgument,
    KeelError,
    NotFound,
    PermissionDenied,
    RegistrationFailed,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    translate,
)
from keel.client.keel import Keel, RegisteredVersion
from keel.client.objectives import parse_objective

__all__ = [
    "AlreadyExists",
    "Conflict",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GateRefused",
    "Internal",
    "InvalidArgument",
    "Keel",
    "KeelError",
    "NotFound",
    "PermissionDenied",
    "RegisteredVersion",
    "RegistrationFailed",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "parse_objective",
    "translate",
]
