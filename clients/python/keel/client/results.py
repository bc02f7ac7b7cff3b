"""What ``predict``, ``explain`` and ``feedback`` return: plain dataclasses holding
numpy arrays, with ``to_pandas()``.

Importing this module needs neither numpy nor pandas; building the results does
(``predict`` and ``explain`` need the client's `ml` extra), ``to_pandas`` needs pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from keel.client._optional import require
from keel.inference.v1 import inference_pb2
from keel.oip.v2 import open_inference_pb2 as oip

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[Any]
    FloatArray = npt.NDArray[np.float64]


def row_ids(prediction_id: str, rows: int) -> list[str]:
    """The ids the inference service logs the rows of one request under: the request's
    id for one row, ``{id}/0`` … ``{id}/{N-1}`` for more."""
    if rows == 1:
        return [prediction_id]
    return [f"{prediction_id}/{i}" for i in range(rows)]


@dataclass(frozen=True)
class ServedVersion:
    """What the registry says about the version that answered: the registered model
    (a deployment serves one) and its class labels (empty for a regressor)."""

    model: str
    version: int
    class_labels: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Prediction:
    """The answer to one ``predict`` call, one entry per row of X.

    - ``model``: the registered model that answered (also when a deployment was asked);
      ``version``: its version number.
    - ``id``: the request's prediction id; ``ids``: the row ids feedback is sent under
      (``id`` for a one-row request, ``{id}/{i}`` otherwise).
    - ``label`` (classifiers): the predicted class, as the class label strings of the
      version's signature (``class_labels``) — the int class indices only when the
      registry could not be asked for them. ``probabilities``: float32 ``[N, C]``, columns
      in ``class_labels`` order.
    - ``prediction`` (regressors): float32 ``[N]``.
    """

    model: str
    version: int
    id: str
    ids: list[str]
    label: Array | None = None
    probabilities: Array | None = None
    prediction: Array | None = None
    class_labels: tuple[str, ...] = ()
    index: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def to_pandas(self) -> Any:
        """One row per prediction (index = X's index when X was a DataFrame): ``id``,
        then ``label`` and ``probability_<class>`` columns, or ``prediction``."""
        pd = require("pandas")
        columns: dict[str, Any] = {"id": self.ids}
        if self.label is not None:
            columns["label"] = self.label
        if self.probabilities is not None:
            names = self.class_labels or tuple(str(i) for i in range(self.probabilities.shape[1]))
            for j, name in enumerate(names):
                columns[f"probability_{name}"] = self.probabilities[:, j]
        if self.prediction is not None:
            columns["prediction"] = self.prediction
        return pd.DataFrame(columns, index=self.index)


def prediction_from(
    response: oip.ModelInferResponse,
    outputs: Mapping[str, Array],
    served: ServedVersion,
    index: Any = None,
) -> Prediction:
    """A ``Prediction`` from the decoded outputs of one answer."""
    np = require("numpy")
    label = outputs.get("label")
    probabilities = outputs.get("probabilities")
    prediction = outputs.get("prediction")
    rows = next(len(a) for a in (label, probabilities, prediction) if a is not None)
    classes = served.class_labels
    if label is not None and classes and (label.size == 0 or int(label.max()) < len(classes)):
        label = np.asarray(classes, dtype=object)[label.astype(np.int64)]
    return Prediction(
        model=served.model,
        version=served.version,
        id=response.id,
        ids=row_ids(response.id, rows),
        label=label,
        probabilities=probabilities,
        prediction=prediction,
        class_labels=classes,
        index=index,
    )


METHODS = {
    inference_pb2.EXPLANATION_METHOD_TREE_SHAP: "tree_shap",
    inference_pb2.EXPLANATION_METHOD_LINEAR: "linear",
}
OUTPUT_SPACES = {
    inference_pb2.OUTPUT_SPACE_MARGIN: "margin",
    inference_pb2.OUTPUT_SPACE_IDENTITY: "identity",
}


@dataclass(frozen=True, eq=False)
class Explanation:
    """Per-row, per-feature contributions to the model's output, in ``output_space``
    units (``margin``: log-odds / per-class score before softmax; ``identity``: the
    prediction's units).

    One output (regressors, binary classifiers — for the positive class
    ``class_labels[0]``): ``contributions`` is ``[N, F]``, ``expected_value`` a float,
    ``outputs`` ``[N]``. Several (multiclass, one per class in ``class_labels``):
    ``contributions`` is ``[N, F, K]`` (as SHAP lays it out), ``expected_value`` ``[K]``,
    ``outputs`` ``[N, K]``. Per row, ``expected_value`` + the contributions add up to
    ``outputs``.
    """

    model: str
    version: int
    variant: str
    method: str
    output_space: str
    feature_names: list[str]
    class_labels: list[str]
    contributions: FloatArray
    expected_value: float | FloatArray
    outputs: FloatArray
    index: Any = None

    def for_class(self, label: str) -> FloatArray:
        """The ``[N, F]`` contributions towards one class (``label`` in ``class_labels``)."""
        if label not in self.class_labels:
            raise ValueError(f"class {label!r}: expected one of {self.class_labels}")
        if self.contributions.ndim == 2:
            return self.contributions
        return self.contributions[:, :, self.class_labels.index(label)]

    def to_pandas(self) -> Any:
        """Contributions with one row per explained row (index = X's index) and one column
        per feature; for several outputs, columns ``(class_label, feature)``."""
        pd = require("pandas")
        if self.contributions.ndim == 2:
            return pd.DataFrame(self.contributions, columns=self.feature_names, index=self.index)
        rows, features, outputs = self.contributions.shape
        columns = pd.MultiIndex.from_product(
            [self.class_labels, self.feature_names], names=["class_label", "feature"]
        )
        flat = self.contributions.transpose(0, 2, 1).reshape(rows, outputs * features)
        return pd.DataFrame(flat, columns=columns, index=self.index)


def explanation_from(response: inference_pb2.ExplainResponse, index: Any = None) -> Explanation:
    np = require("numpy")
    rows, features = int(response.row_count), len(response.feature_names)
    parts = [
        np.asarray(e.contributions, dtype=np.float64).reshape(rows, features)
        for e in response.explanations
    ]
    expected = np.asarray([e.expected_value for e in response.explanations], dtype=np.float64)
    outputs = [np.asarray(e.outputs, dtype=np.float64) for e in response.explanations]
    single = len(parts) == 1
    return Explanation(
        model=response.model_name,
        version=int(response.model_version),
        variant=response.variant,
        method=METHODS.get(response.method, ""),
        output_space=OUTPUT_SPACES.get(response.output_space, ""),
        feature_names=list(response.feature_names),
        class_labels=[e.class_label for e in response.explanations],
        contributions=parts[0] if single else np.stack(parts, axis=2),
        expected_value=float(expected[0]) if single else expected,
        outputs=outputs[0] if single else np.stack(outputs, axis=1),
        index=index,
    )


@dataclass(frozen=True)
class FeedbackResult:
    """What the monitor did with the labels sent: joined with their prediction now
    (``matched``), held until their prediction is logged (``unmatched``), too old to
    join (``late``), or for a prediction labelled already (``duplicate``)."""

    matched: int
    unmatched: int
    late: int
    duplicate: int

    @property
    def total(self) -> int:
        return self.matched + self.unmatched + self.late + self.duplicate

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
