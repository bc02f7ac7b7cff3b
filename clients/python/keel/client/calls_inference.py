"""``Keel``'s calls to the inference service: ``predict``, ``explain``, ``wait_ready``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from keel.client.connection import Connection, needs_ml
from keel.client.errors import DeadlineExceeded, InvalidArgument, KeelError, NotFound
from keel.client.results import (
    Explanation,
    Prediction,
    ServedVersion,
    explanation_from,
    prediction_from,
)
from keel.registry.v1 import model_pb2

if TYPE_CHECKING:
    from keel.client.tensors import Layout, Parameter

_FIRST_POLL_S = 0.05
_MAX_POLL_S = 1.0
_BASIC = model_pb2.MODEL_VERSION_VIEW_BASIC

logger = logging.getLogger(__name__)


class InferenceCalls(Connection):
    """Predictions and explanations from the inference service."""

    def predict(
        self,
        name: str,
        X: Any,  # noqa: N803 - the name data scientists use
        *,
        version: str | int = "",
        parameters: Mapping[str, Parameter] | None = None,
    ) -> Prediction:
        """Predictions of ``name`` (a model or a deployment) for the rows of ``X``: a
        pandas DataFrame (columns matched to features by name; text and categorical
        columns sent as BYTES), a 2-D numpy array or a list of rows (columns in
        signature order).

        ``version``: empty (the deployment's routing, else ``production``), a number
        or an alias. ``parameters`` are the request's parameters (e.g. a deployment's
        sticky key). Every row is logged to the monitor under ``Prediction.ids``, the
        ids ``feedback`` takes. Needs the `ml` extra (numpy)."""
        try:
            from keel.client import tensors
        except ImportError as error:
            raise needs_ml("predict", error) from error
        wanted = str(version)
        rows = tensors.encode_rows(X, self._layout(name, wanted))
        request = tensors.infer_request(name, wanted, rows, parameters)
        try:
            response = self.inference.infer(request)
        except InvalidArgument:
            self._layouts.pop((name, wanted), None)  # the version served may have changed
            raise
        served = self._served_version(name, int(response.model_version))
        return prediction_from(response, tensors.decode_outputs(response), served, rows.index)

    def explain(
        self,
        name: str,
        X: Any,  # noqa: N803
        *,
        version: str | int = "",
        class_labels: Sequence[str] = (),
    ) -> Explanation:
        """Per-feature contributions to the model's output for the rows of ``X`` (as in
        ``predict``): TreeSHAP for tree ensembles, coefficient × centred value for
        linear models; Unimplemented for other models. ``class_labels`` limits a
        multiclass explanation to those classes. Needs the `ml` extra (numpy)."""
        try:
            from keel.client import tensors
        except ImportError as error:
            raise needs_ml("explain", error) from error
        wanted = str(version)
        rows = tensors.encode_rows(X, self._layout(name, wanted))
        response = self.inference.explain(tensors.explain_request(name, wanted, rows, class_labels))
        return explanation_from(response, rows.index)

    def wait_ready(
        self, name: str, *, version: str | int = "", timeout_s: float | None = None
    ) -> None:
        """Waits until the inference service serves ``name`` (e.g. after ``promote``)
        without loading first; DeadlineExceeded after ``timeout_s`` (default: the
        client's timeout)."""
        limit = timeout_s if timeout_s is not None else self.timeout
        deadline = time.monotonic() + limit
        pause = _FIRST_POLL_S
        while True:
            try:
                if self.inference.model_ready(name, str(version)):
                    return
            except NotFound:
                pass  # not heard of yet
            if time.monotonic() + pause > deadline:
                raise DeadlineExceeded(f"model '{name}' is not served after {limit:g} s")
            self._sleep(pause)
            pause = min(pause * 2, _MAX_POLL_S)

    def _layout(self, name: str, version: str) -> Layout:
        from keel.client.tensors import Layout

        key = (name, version)
        if key not in self._layouts:
            metadata = self.inference.model_metadata(name, version)
            self._layouts[key] = Layout.from_metadata(metadata)
        return self._layouts[key]

    def _served_version(self, name: str, version: int) -> ServedVersion:
        """The registered model behind ``name`` and the class labels of ``version``;
        without the registry, ``name`` and no labels (not remembered)."""
        key = (name, version)
        if key not in self._served:
            try:
                model = self._registered_model(name)
                found = self.registry.get_model_version(model, version, view=_BASIC)
            except KeelError as error:
                logger.warning(
                    "class labels of '%s' version %d unknown (%s): labels are class indices",
                    name,
                    version,
                    error,
                )
                return ServedVersion(name, version)
            self._served[key] = ServedVersion(model, version, tuple(found.signature.class_labels))
        return self._served[key]

    def _registered_model(self, name: str) -> str:
        """``name`` when it is a model, else the model of the deployment ``name``."""
        if self.registry.find_model(name) is not None:
            return name
        return self.registry.get_deployment(name).model.removeprefix("models/")
