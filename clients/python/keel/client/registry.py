"""RegistryClient: the registry's RPCs, one method each, raising typed exceptions.

A thin layer over the generated stub: requests are built from plain arguments where
that is simpler, responses come back as the contract's messages, and every failed call
is translated through the closed status table in ``errors.py``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from keel.client.errors import NotFound, invoke, translate
from keel.registry.v1 import alias_pb2, deployment_pb2, model_pb2, registry_pb2, registry_pb2_grpc

SERVICE = "keel.registry.v1.RegistryService"
UPLOAD_METHOD = f"{SERVICE}/UploadArtifact"
DOWNLOAD_METHOD = f"{SERVICE}/DownloadArtifact"
WATCH_METHOD = f"{SERVICE}/WatchEvents"
CHUNK_BYTES = 1024 * 1024
IDENTITY_HEADER = "x-keel-user"
# Uploads get their own deadline: the default one plus a second per this many bytes.
UPLOAD_BYTES_PER_SECOND = 4 * 1024 * 1024

_T = TypeVar("_T")


def model_name(model_id: str) -> str:
    return f"models/{model_id}"


def version_name(model_id: str, version: int) -> str:
    return f"models/{model_id}/versions/{version}"


def alias_name(model_id: str, alias: str) -> str:
    return f"models/{model_id}/aliases/{alias}"


def artifact_name(sha256: str) -> str:
    return f"artifacts/{sha256}"


def upload_requests(
    data: bytes, sha256: str, sent: Callable[[int], None] = lambda size: None
) -> Iterator[registry_pb2.UploadArtifactRequest]:
    """The upload stream: the header (digest and size), then chunks of at most 1 MiB;
    ``sent`` hears the size of each chunk as gRPC takes it."""
    header = registry_pb2.UploadArtifactHeader(sha256=sha256, size_bytes=len(data))
    yield registry_pb2.UploadArtifactRequest(header=header)
    view = memoryview(data)
    for start in range(0, len(data), CHUNK_BYTES):
        chunk = bytes(view[start : start + CHUNK_BYTES])
        yield registry_pb2.UploadArtifactRequest(chunk=chunk)
        sent(len(chunk))


@contextmanager
def upload_progress(total: int, console: Console | None) -> Iterator[Callable[[int], None]]:
    """A progress bar of an upload of ``total`` bytes on ``console`` (stderr by default),
    removed when done; yields the function that advances it."""
    columns = (
        TextColumn("uploading artifact"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as bar:
        task = bar.add_task("upload", total=total)
        yield lambda size: bar.advance(task, size)


class RegistryClient:
    """Calls to ``keel.registry.v1.RegistryService`` over one channel."""

    def __init__(
        self,
        stub: registry_pb2_grpc.RegistryServiceStub,
        *,
        timeout: float = 30.0,
        user: str | None = None,
    ) -> None:
        self._stub = stub
        self._timeout = timeout
        # Who the registry records as author and actor (until bearer tokens, issue #8).
        self._metadata = ((IDENTITY_HEADER, user),) if user else ()

    @classmethod
    def on_channel(
        cls, channel: grpc.Channel, *, timeout: float = 30.0, user: str | None = None
    ) -> RegistryClient:
        return cls(registry_pb2_grpc.RegistryServiceStub(channel), timeout=timeout, user=user)

    @property
    def stub(self) -> registry_pb2_grpc.RegistryServiceStub:
        """The generated stub, for RPCs this class has no method for (use ``call``)."""
        return self._stub

    def call(self, method: Callable[..., _T], request: Any, **kwargs: Any) -> _T:
        """``method`` (a unary RPC of ``stub``) with this client's deadline, identity and
        typed exceptions."""
        kwargs.setdefault("timeout", self._timeout)
        kwargs.setdefault("metadata", self._metadata)
        return invoke(method, request, **kwargs)

    # Models

    def get_model(self, model_id: str) -> model_pb2.Model:
        request = registry_pb2.GetModelRequest(name=model_name(model_id))
        return self.call(self._stub.GetModel, request).model

    def find_model(self, model_id: str) -> model_pb2.Model | None:
        """The model, or None when it does not exist."""
        try:
            return self.get_model(model_id)
        except NotFound:
            return None

    def create_model(self, model_id: str, model: model_pb2.Model) -> model_pb2.Model:
        request = registry_pb2.CreateModelRequest(model=model, model_id=model_id)
        return self.call(self._stub.CreateModel, request).model

    def update_model(self, model: model_pb2.Model, paths: list[str]) -> model_pb2.Model:
        request = registry_pb2.UpdateModelRequest(
            model=model, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        return self.call(self._stub.UpdateModel, request).model

    # Artifacts

    def find_artifact(self, sha256: str) -> model_pb2.Artifact | None:
        """The stored artifact with that digest, or None."""
        request = registry_pb2.GetArtifactRequest(name=artifact_name(sha256))
        try:
            return self.call(self._stub.GetArtifact, request).artifact
        except NotFound:
            return None

    def upload_artifact(
        self, data: bytes, *, progress: bool | None = None, console: Console | None = None
    ) -> model_pb2.Artifact:
        """Stores ``data`` (skipping the bytes when that digest is stored already), with a
        progress bar when ``progress`` (default: when stderr is a terminal)."""
        sha256 = hashlib.sha256(data).hexdigest()
        stored = self.find_artifact(sha256)
        if stored is not None:
            return stored
        timeout = self._timeout + len(data) / UPLOAD_BYTES_PER_SECOND
        if not (sys.stderr.isatty() if progress is None else progress):
            requests = upload_requests(data, sha256)
            return self.call(self._stub.UploadArtifact, requests, timeout=timeout).artifact
        with upload_progress(len(data), console) as sent:
            requests = upload_requests(data, sha256, sent)
            return self.call(self._stub.UploadArtifact, requests, timeout=timeout).artifact

    def download_artifact(self, sha256: str, *, timeout: float | None = None) -> bytes:
        """The bytes of ``artifacts/{sha256}`` (not verified here)."""
        request = registry_pb2.DownloadArtifactRequest(name=f"artifacts/{sha256}")
        stream = self._stub.DownloadArtifact(
            request, timeout=timeout or self._timeout, metadata=self._metadata
        )
        try:
            return b"".join(m.chunk for m in stream if m.WhichOneof("content") == "chunk")
        except grpc.RpcError as error:
            raise translate(error) from None

    # Deployments

    def get_deployment(self, deployment_id: str) -> deployment_pb2.Deployment:
        request = registry_pb2.GetDeploymentRequest(name=f"deployments/{deployment_id}")
        return self.call(self._stub.GetDeployment, request).deployment

    # Versions

    def create_model_version(
        self, model_id: str, version: model_pb2.ModelVersion, *, request_id: str = ""
    ) -> model_pb2.ModelVersion:
        request = registry_pb2.CreateModelVersionRequest(
            parent=model_name(model_id), model_version=version, request_id=request_id
        )
        return self.call(self._stub.CreateModelVersion, request).model_version

    def get_model_version(
        self,
        model_id: str,
        version: int,
        *,
        view: model_pb2.ModelVersionView.ValueType = model_pb2.MODEL_VERSION_VIEW_FULL,
    ) -> model_pb2.ModelVersion:
        request = registry_pb2.GetModelVersionRequest(
            name=version_name(model_id, version), view=view
        )
        return self.call(self._stub.GetModelVersion, request).model_version

    # Aliases

    def set_alias(
        self,
        model_id: str,
        alias: str,
        version: int,
        *,
        expected_version: int | None = None,
        reason: str = "",
    ) -> registry_pb2.SetAliasResponse:
        request = registry_pb2.SetAliasRequest(
            name=alias_name(model_id, alias), version=version, reason=reason
        )
        if expected_version is not None:
            request.expected_version = expected_version
        return self.call(self._stub.SetAlias, request)

    def get_alias(self, model_id: str, alias: str) -> alias_pb2.Alias:
        request = registry_pb2.GetAliasRequest(name=alias_name(model_id, alias))
        return self.call(self._stub.GetAlias, request).alias

    def resolve(self, reference: str) -> registry_pb2.ResolveAliasResponse:
        """``model@alias`` (or ``model@latest``) to the alias and the version it holds."""
        request = registry_pb2.ResolveAliasRequest(reference=reference)
        return self.call(self._stub.ResolveAlias, request)
