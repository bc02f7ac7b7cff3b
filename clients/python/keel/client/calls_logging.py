"""``Keel``'s calls that send data to the monitor: ``feedback`` (true labels of earlier
predictions) and ``log_predictions`` (predictions made outside Keel)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keel.client.connection import Connection, check_model_id, needs_ml
from keel.client.errors import NotFound
from keel.client.monitoring import deployment_name
from keel.client.results import FeedbackResult, Prediction
from keel.common.v1 import schema_pb2
from keel.registry.v1 import model_pb2

_BASIC = model_pb2.MODEL_VERSION_VIEW_BASIC
_CLASSIFIERS = (schema_pb2.TASK_BINARY_CLASSIFICATION, schema_pb2.TASK_MULTICLASS_CLASSIFICATION)


class LoggingCalls(Connection):
    """Labels and predictions sent to the monitor."""

    def feedback(
        self,
        ids: Prediction | Sequence[str],
        labels: Any,
        *,
        model: str | None = None,
    ) -> FeedbackResult:
        """Sends the true ``labels`` of earlier predictions: ``ids`` is a ``Prediction``
        (it carries its model and row ids) or a sequence of prediction ids (then
        ``model`` is required). ``labels`` (list, array, Series; one per id): class
        labels as strings or as the values of ``y`` (e.g. ints), or a regressor's
        values; None/NaN skips a row. Needs the `ml` extra (numpy)."""
        try:
            from keel.client import batches
        except ImportError as error:
            raise needs_ml("feedback", error) from error
        if isinstance(ids, Prediction):
            if model is not None and model != ids.model:
                raise ValueError(f"model {model!r}: these predictions are of {ids.model!r}")
            model, id_list = ids.model, list(ids.ids)
            classifier = ids.label is not None
            classes = ids.class_labels or (self._label_facts(model)[1] if classifier else ())
        else:
            if isinstance(ids, str):
                raise TypeError("ids: expected a Prediction or a sequence of prediction ids")
            if model is None:
                raise ValueError("model is required with plain prediction ids")
            check_model_id(model)
            id_list = [str(i) for i in ids]
            classifier, classes = self._label_facts(model)
        request = batches.feedback_request(
            model, id_list, labels, classifier=classifier, class_labels=classes
        )
        response = self.monitor.log_feedback(request)
        return FeedbackResult(
            matched=response.matched_count,
            unmatched=response.unmatched_count,
            late=response.late_count,
            duplicate=response.duplicate_count,
        )

    def _label_facts(self, model: str) -> tuple[bool, tuple[str, ...]]:
        """Whether ``model`` is a classifier, and the class labels of its newest version
        (remembered per model)."""
        if model not in self._labels:
            task = self.registry.get_model(model).task
            classes: tuple[str, ...] = ()
            if task in _CLASSIFIERS:
                try:
                    newest = self.registry.resolve(f"{model}@latest").model_version
                    classes = tuple(newest.signature.class_labels)
                except NotFound:
                    pass
            self._labels[model] = (task in _CLASSIFIERS, classes)
        return self._labels[model]

    def log_predictions(
        self,
        name: str,
        version: int,
        X: Any,  # noqa: N803
        predictions: Any,
        *,
        ids: Sequence[str] | None = None,
        variant: str = "",
        deployment: str = "",
        probabilities: Any = None,
    ) -> list[str]:
        """Logs predictions that version ``version`` of ``name`` made outside Keel, so the
        monitor reports on them: ``X`` as in ``predict`` (columns in signature order for
        an array), ``predictions`` one per row (class labels, or values for a
        regressor), ``probabilities`` ``[N, C]`` in class-label order (optional). The
        rows are logged under ``ids`` (generated when None); returns the ids, for
        ``feedback``. Needs the `ml` extra (numpy)."""
        try:
            from keel.client import batches
        except ImportError as error:
            raise needs_ml("log_predictions", error) from error
        check_model_id(name)
        found = self.registry.get_model_version(name, int(version), view=_BASIC)
        task = self.registry.get_model(name).task
        batch = batches.prediction_batch(
            name,
            int(version),
            X,
            predictions,
            signature=found.signature,
            classifier=task in _CLASSIFIERS,
            ids=ids,
            probabilities=probabilities,
            deployment=deployment_name(deployment),
            variant=variant,
        )
        self.monitor.log_prediction_batch(batch)
        return list(batch.prediction_ids.strings.values)
