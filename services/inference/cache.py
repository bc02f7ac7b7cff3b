"""The local artifact cache and the last known serving state, on disk.

Artifacts are kept by digest (``<dir>/sha256/ab/cdef…``), verified when read; the manifest
records the versions served (with their signatures) and the routing, so a restart with
the registry down serves what was served before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from services.inference.records import FeatureSpec, ModelSignature
from services.inference.upstream import DeploymentInfo, RouteInfo, Snapshot, VersionInfo


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)


class LocalCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, sha256: str) -> Path:
        return self.folder / "sha256" / sha256[:2] / sha256[2:]

    def get(self, sha256: str) -> bytes | None:
        """The cached bytes if present and intact (a corrupt file is removed)."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, sha256: str, data: bytes) -> None:
        _atomic_write(self._path(sha256), data)

    def save_state(self, snapshot: Snapshot, versions: list[VersionInfo]) -> None:
        state = {
            "sequence": snapshot.sequence,
            "tasks": snapshot.tasks,
            "aliases": snapshot.aliases,
            "deployments": {k: dataclasses.asdict(v) for k, v in snapshot.deployments.items()},
            "versions": [dataclasses.asdict(v) for v in versions],
        }
        _atomic_write(self.folder / "state.json", json.dumps(state).encode())

    def load_state(self) -> tuple[Snapshot, list[VersionInfo]] | None:
        try:
            state: dict[str, Any] = json.loads((self.folder / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        deployments = {
            name: DeploymentInfo(
                d["name"],
                d["model"],
                [RouteInfo(**r) for r in d["routes"]],
                d["sticky_key_parameter"],
            )
            for name, d in state["deployments"].items()
        }
        snapshot = Snapshot(state["sequence"], state["tasks"], state["aliases"], deployments)
        versions = [
            VersionInfo(
                v["model"],
                v["version"],
                v["sha256"],
                v["flavor"],
                ModelSignature(
                    v["signature"]["task"],
                    tuple(
                        FeatureSpec(**{**f, "categories": tuple(f["categories"])})
                        for f in v["signature"]["inputs"]
                    ),
                    tuple(v["signature"]["class_labels"]),
                ),
            )
            for v in state["versions"]
        ]
        return snapshot, versions
