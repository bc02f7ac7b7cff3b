"""Loading a downloaded artifact in the notebook: only bytes that match the registered
digest, only XGBoost's own formats or skops files within the allowlist, never a pickle."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import skops.io
import xgboost
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from keel.client import ArtifactRefused
from keel.client.loading import ModelReference, load_artifact
from keel.common.v1 import schema_pb2
from keel.registry.v1 import model_pb2

X = np.random.default_rng(0).normal(size=(200, 3))
Y = (X[:, 0] > 0).astype(int)
BINARY = schema_pb2.TASK_BINARY_CLASSIFICATION
XGB = model_pb2.FLAVOR_XGBOOST
SKLEARN = model_pb2.FLAVOR_SKLEARN


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("churn", ModelReference("churn", alias="production")),
        ("churn@staging", ModelReference("churn", alias="staging")),
        ("churn@7", ModelReference("churn", version=7)),
    ],
)
def test_references_name_an_alias_or_a_version(reference: str, expected: ModelReference) -> None:
    assert ModelReference.parse(reference) == expected


@pytest.mark.parametrize("reference", ["", "Churn", "churn@", "churn@0", "churn@a b", "a@b@c"])
def test_other_references_are_refused(reference: str) -> None:
    with pytest.raises(ValueError, match="reference"):
        ModelReference.parse(reference)


@pytest.mark.parametrize("raw_format", ["ubj", "json"])
def test_xgboost_files_load_into_the_scikit_learn_api(raw_format: str) -> None:
    trained = xgboost.XGBClassifier(n_estimators=5).fit(X, Y)
    data = bytes(trained.get_booster().save_raw(raw_format))
    loaded = load_artifact(data, sha256=sha(data), flavor=XGB, task=BINARY)
    assert isinstance(loaded, xgboost.XGBClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(X), trained.predict_proba(X))
    regressor = xgboost.XGBRegressor(n_estimators=5).fit(X, X[:, 1])
    data = bytes(regressor.get_booster().save_raw("ubj"))
    found = load_artifact(data, sha256=sha(data), flavor=XGB, task=schema_pb2.TASK_REGRESSION)
    assert isinstance(found, xgboost.XGBRegressor)


def test_skops_files_load_within_the_allowlist() -> None:
    trained = LogisticRegression().fit(X, Y)
    data = skops.io.dumps(trained)
    loaded = load_artifact(data, sha256=sha(data), flavor=SKLEARN, task=BINARY)
    np.testing.assert_array_equal(loaded.coef_, trained.coef_)
    tree = skops.io.dumps(DecisionTreeClassifier(max_depth=2).fit(X, Y))
    with pytest.raises(ArtifactRefused, match="not on the allowlist: 'sklearn.tree._tree.Tree'"):
        load_artifact(
            tree, sha256=sha(tree), flavor=SKLEARN, task=BINARY, trusted_types=frozenset()
        )


def test_bytes_that_are_not_the_registered_digest_are_refused() -> None:
    data = skops.io.dumps(LogisticRegression().fit(X, Y))
    with pytest.raises(ArtifactRefused, match="sha256 is"):
        load_artifact(data, sha256="0" * 64, flavor=SKLEARN, task=BINARY)


@pytest.mark.parametrize(
    ("data", "flavor"),
    [
        (pickle.dumps(LogisticRegression()), SKLEARN),
        (b'{"learner": {}}', SKLEARN),  # an XGBoost-looking file of the wrong flavor
        (b"", XGB),
    ],
)
def test_anything_else_is_refused_unread(data: bytes, flavor: model_pb2.Flavor.ValueType) -> None:
    with pytest.raises(ArtifactRefused, match="not an XGBoost JSON/UBJSON or skops file"):
        load_artifact(data, sha256=sha(data), flavor=flavor, task=BINARY)
