"""deploy/ checked offline, the way an operator would before ``kubectl apply -k``: yamllint,
kubernetes-validate (strict: an unknown field is an error) against pinned Kubernetes
versions, and what neither can see — the manifests agree with the settings classes, the CLI,
each other and the metrics the services really export (read from the three services started
in-process), and the NetworkPolicies let through exactly the calls the suite makes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate  # type: ignore[import-untyped]
import numpy as np
import pytest
import yaml  # type: ignore[import-untyped]
from fsspec.registry import known_implementations
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner
from yamllint import linter  # type: ignore[import-untyped]
from yamllint.config import YamlLintConfig  # type: ignore[import-untyped]

from keel.cli import build_app
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.cli import service_spec
from services.common.server import build_server
from services.inference.settings import InferenceSettings
from services.monitor.settings import MonitorSettings
from services.registry.settings import RegistrySettings
from tests.support.inference import raw_request
from tests.support.registry import Client, xgboost_artifact
from tests.support.suite import wait_model_ready

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
OBSERVABILITY = DEPLOY / "observability"
# The oldest release on which every field the manifests use is GA or on by default (the
# preStop `sleep` action), and the newest that kubernetes-validate 1.37.0 knows.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
NAMESPACE = "keel"
SERVICES = ("registry", "inference", "monitor")
# Pods of the namespace that are expected to exist outside these manifests.
DATABASE_NAMESPACE, MONITORING_NAMESPACE = "databases", "monitoring"
# Labels Prometheus adds to every series (prometheus.yml's relabelling).
TARGET_LABELS = {"job", "instance", "namespace", "pod"}


# Loading ---------------------------------------------------------------------------------
@functools.cache
def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path``, read once (callers do not change them)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> dict[str, Any]:
    return documents(K8S / "kustomization.yaml")[0]


def manifests() -> list[dict[str, Any]]:
    """Every resource kustomization.yaml applies."""
    return [doc for name in kustomization()["resources"] for doc in documents(K8S / name)]


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in deploy/kubernetes, found {len(found)}"
    return found[0]


def pod_spec(service: str) -> dict[str, Any]:
    spec: dict[str, Any] = resource("Deployment", f"keel-{service}")["spec"]["template"]["spec"]
    return spec


def container(service: str) -> dict[str, Any]:
    (only,) = pod_spec(service)["containers"]
    return dict(only)


def container_ports(service: str) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container(service)["ports"]}


def environment(service: str) -> dict[str, str]:
    """The container's environment as the pod gets it: ConfigMaps, then ``env`` with each
    Secret reference replaced by secrets.example.yaml's value (which must exist)."""
    env: dict[str, str] = {}
    for source in container(service).get("envFrom", []):
        env.update(resource("ConfigMap", source["configMapRef"]["name"])["data"])
    secrets = {
        s["metadata"]["name"]: s["stringData"] for s in documents(K8S / "secrets.example.yaml")
    }
    for variable in container(service).get("env", []):
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference is not None:
            name, key = reference["name"], reference["key"]
            assert key in secrets.get(name, {}), (
                f"{variable['name']}: no key {key!r} in Secret {name}"
            )
            env[variable["name"]] = secrets[name][key]
        elif "value" in variable:
            env[variable["name"]] = variable["value"]
    return env


def secret_variables(service: str) -> set[str]:
    return {
        v["name"]
        for v in container(service).get("env", [])
        if "secretKeyRef" in v.get("valueFrom", {})
    }


def serve_options(argv: list[str]) -> dict[str, str]:
    """The options of ``keel <argv>``, after the real command tree has parsed it (with
    ``--help`` added, so nothing runs): an unknown command or option fails the test."""
    result = CliRunner().invoke(build_app(), [*argv, "--help"])
    assert result.exit_code == 0, f"`keel {shlex.join(argv)}` does not parse:\n{result.output}"
    words = argv[2:]
    assert len(words) % 2 == 0 and all(word.startswith("--") for word in words[::2]), argv
    pairs = zip(words[::2], words[1::2], strict=True)
    return {option[2:].replace("-", "_"): value for option, value in pairs}


def settings_of(service: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The settings the pod's process ends up with (the service's settings class): its
    environment, then its flags."""
    spec = service_spec(service)
    assert spec is not None
    for variable in [v for v in os.environ if v.startswith("KEEL_")]:
        monkeypatch.delenv(variable)
    for variable, value in environment(service).items():
        monkeypatch.setenv(variable, value)
    return spec.settings(**serve_options(container(service)["args"]))


# Generic checks ----------------------------------------------------------------------------
def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), DEPLOY / ".yamllint"])


def test_every_yaml_file_passes_yamllint() -> None:
    config = YamlLintConfig(file=str(DEPLOY / ".yamllint"))
    assert len(yaml_files()) >= 10, yaml_files()
    problems = [
        f"{path.relative_to(ROOT)}:{problem.line}:{problem.column} {problem.message}"
        for path in yaml_files()
        for problem in linter.run(path.read_text(), config, str(path))
    ]
    assert problems == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    checked = 0
    for path in sorted(K8S.glob("*.yaml")):
        for doc in documents(path):
            if doc["kind"] == "Kustomization":
                continue
            where = f"{path.name}: {doc['kind']} {doc['metadata']['name']}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path_in_doc = ".".join(str(part) for part in error.path)
                pytest.fail(f"{where}: {path_in_doc}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                pytest.fail(f"{where}: {error.message}")
            checked += 1
    assert checked >= 20


def test_kustomization_applies_every_manifest_in_one_namespace() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert listed == present, "every manifest but the Secrets' example is applied"
    assert kustomization()["namespace"] == NAMESPACE
    for doc in manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
    images = {entry["name"] for entry in kustomization()["images"]}
    for service in SERVICES:
        assert container(service)["image"].split(":")[0] in images


# Each service ------------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_deployment_runs_the_service_as_configured(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(service, monkeypatch)
    ports = container_ports(service)
    assert container(service)["args"][:2] == [service, "serve"]
    assert settings.host == "0.0.0.0", "listen on the pod's address, not loopback"
    assert ports == {"grpc": settings.port, "metrics": settings.metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container(service)[probe]["grpc"]["port"] == settings.port, probe
    mounts = {m["mountPath"]: m["name"] for m in container(service)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(service)["volumes"]}
    assert "emptyDir" in volumes[mounts[str(settings.data_dir)]], "data_dir is a writable volume"
    assert "/tmp" in mounts
    prefix = f"KEEL_{service.upper()}_"
    for variable in environment(service):
        if variable.startswith("KEEL_"):
            assert variable.startswith(prefix), f"{variable} is not a {service} setting"
            assert variable[len(prefix) :].lower() in type(settings).model_fields, (
                f"{variable} names no setting: it would be ignored"
            )


@pytest.mark.parametrize("service", SERVICES)
def test_pods_are_locked_down_and_sized(service: str) -> None:
    pod, box = pod_spec(service), container(service)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    # Service links would put KEEL_<SERVICE>_PORT=tcp://… into every pod: a setting.
    assert pod["enableServiceLinks"] is False
    assert box["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for resource_name in ("cpu", "memory"):
        request = quantity(box["resources"]["requests"][resource_name])
        limit = quantity(box["resources"]["limits"][resource_name])
        assert 0 < request <= limit, resource_name


@pytest.mark.parametrize("service", SERVICES)
def test_shutdown_fits_the_termination_grace_period(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(service, monkeypatch)
    needed = container(service)["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed += settings.grace_period_s + getattr(settings, "prediction_log_drain_s", 0.0)
    assert pod_spec(service)["terminationGracePeriodSeconds"] >= needed + 5


def quantity(text: str | int) -> float:
    """A Kubernetes quantity (``250m``, ``2``, ``512Mi``) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|)", str(text))
    assert match is not None, f"not a quantity this test reads: {text!r}"
    return float(match[1]) * units[match[2]]


def test_services_route_to_their_pods() -> None:
    for svc in [m for m in manifests() if m["kind"] == "Service"]:
        targets = [s for s in SERVICES if svc["spec"]["selector"].items() <= pod_labels(s).items()]
        assert len(targets) == 1, f"Service {svc['metadata']['name']} selects {targets}"
        for port in svc["spec"]["ports"]:
            assert container_ports(targets[0])[port["targetPort"]] == port["port"], port


def pod_labels(service: str) -> dict[str, str]:
    labels: dict[str, str] = resource("Deployment", f"keel-{service}")["spec"]["template"][
        "metadata"
    ]["labels"]
    return labels


@pytest.mark.parametrize(
    ("service", "setting", "peer"),
    [
        ("inference", "registry_address", "registry"),
        ("inference", "monitor_address", "monitor"),
        ("monitor", "registry_address", "registry"),
    ],
)
def test_peer_addresses_name_the_peers_service(
    service: str, setting: str, peer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = getattr(settings_of(service, monkeypatch), setting).rsplit(":", 1)
    svc = resource("Service", host.split(".")[0])
    assert host.split(".")[1:2] in ([], [NAMESPACE])
    assert svc["spec"]["selector"].items() <= pod_labels(peer).items()
    (named,) = [p for p in svc["spec"]["ports"] if p["port"] == int(port)]
    assert container_ports(peer)[named["targetPort"]] == int(port)


def test_replicas_share_state_outside_the_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in ("registry", "monitor"):
        assert resource("Deployment", f"keel-{service}")["spec"]["replicas"] >= 2
        assert f"KEEL_{service.upper()}_DATABASE_URL" in secret_variables(service)
        url = settings_of(service, monkeypatch).database_url
        assert url.startswith("postgresql+psycopg://"), "replicas share one PostgreSQL"
    root = settings_of("registry", monkeypatch).artifact_root
    scheme = root.split("://")[0] if "://" in root else "file"
    assert scheme not in ("file", "local"), "replicas need one artifact store, not a pod's disk"
    backend = known_implementations[scheme]["class"].split(".")[0]
    assert backend in dockerfile().stages["build"].args["EXTRA_PACKAGES"], (
        f"{root} needs {backend} in the image"
    )
    # Digests of PII features must match across replicas: one key for all.
    assert "KEEL_INFERENCE_PII_HASH_KEY" in secret_variables("inference")


def test_inference_scales_on_cpu_and_keeps_its_spool_on_a_sized_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = resource("Deployment", "keel-inference")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = resource("HorizontalPodAutoscaler", "keel-inference")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "keel-inference",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container("inference")["resources"]["requests"], "utilisation needs a request"
    settings = settings_of("inference", monkeypatch)
    mounts = {m["mountPath"]: m["name"] for m in container("inference")["volumeMounts"]}
    volume = {v["name"]: v for v in pod_spec("inference")["volumes"]}[
        mounts[str(settings.data_dir)]
    ]
    room = quantity(volume["emptyDir"]["sizeLimit"])
    assert room >= 2 * settings.prediction_log_spool_bytes, "spool plus the artifact cache"


@pytest.mark.parametrize("service", SERVICES)
def test_disruption_budget_keeps_a_pod_serving(service: str) -> None:
    budget = resource("PodDisruptionBudget", f"keel-{service}")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels(service).items()
    deployment = resource("Deployment", f"keel-{service}")["spec"]
    replicas = (
        deployment.get("replicas")
        or resource("HorizontalPodAutoscaler", f"keel-{service}")["spec"]["minReplicas"]
    )
    assert budget["spec"]["maxUnavailable"] < replicas


# NetworkPolicies ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Pod:
    namespace: str | None  # None: an address outside the cluster
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    ip: str = "10.244.1.7"


def keel_pod(service: str) -> Pod:
    return Pod(NAMESPACE, pod_labels(service), container_ports(service))


PROMETHEUS = Pod(MONITORING_NAMESPACE, {"app.kubernetes.io/name": "prometheus"})
COLLECTOR = Pod(MONITORING_NAMESPACE, {"app.kubernetes.io/name": "opentelemetry-collector"})
POSTGRESQL = Pod(DATABASE_NAMESPACE, {"app.kubernetes.io/name": "postgresql"})
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
BACKEND = Pod("shop", {"app": "checkout"})
CI_RUNNER = Pod("ci", {"keel.dev/registry-client": "true"})
FEEDBACK_SENDER = Pod("shop", {"keel.dev/monitor-client": "true"})
OBJECT_STORE = Pod(None, ip="203.0.113.10")


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"this evaluator reads matchLabels only: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_matches(peer: Mapping[str, Any], pod: Pod) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(pod.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if pod.namespace is None:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": pod.namespace}
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif pod.namespace != NAMESPACE:
        return False
    return selects(peer.get("podSelector", {}), pod.labels)


def port_matches(rules: list[dict[str, Any]] | None, target: Pod, port: int, protocol: str) -> bool:
    if not rules:
        return True
    for rule in rules:
        assert "endPort" not in rule, "this evaluator reads single ports only"
        named = rule.get("port")
        number = target.ports.get(named) if isinstance(named, str) else named
        if named in (None, port) or number == port:
            if rule.get("protocol", "TCP") == protocol:
                return True
    return False


def admits(direction: str, subject: Pod, other: Pod, target: Pod, port: int, protocol: str) -> bool:
    """Whether the policies selecting ``subject`` let this connection out (Egress) or in."""
    if subject.namespace != NAMESPACE:
        return True  # other namespaces' policies are not ours to check
    policies = [
        p["spec"]
        for p in manifests()
        if p["kind"] == "NetworkPolicy"
        and direction in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not policies:
        return True
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(
        (not rule.get(peers_key) or any(peer_matches(p, other) for p in rule[peers_key]))
        and port_matches(rule.get("ports"), target, port, protocol)
        for spec in policies
        for rule in spec.get(rules_key, [])
    )


def reachable(source: Pod, target: Pod, port: int, protocol: str = "TCP") -> bool:
    return admits("Egress", source, target, target, port, protocol) and admits(
        "Ingress", target, source, target, port, protocol
    )


def collector_port() -> int:
    return int(
        collector_config()["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":")[-1]
    )


CALLS: list[tuple[str, str, str, str, bool]] = [
    # (source, target, target port name or number, protocol, allowed)
    ("inference", "registry", "grpc", "TCP", True),
    ("inference", "monitor", "grpc", "TCP", True),
    ("monitor", "registry", "grpc", "TCP", True),
    ("registry", "postgresql", "5432", "TCP", True),
    ("monitor", "postgresql", "5432", "TCP", True),
    ("registry", "object-store", "443", "TCP", True),
    ("prometheus", "registry", "metrics", "TCP", True),
    ("prometheus", "inference", "metrics", "TCP", True),
    ("prometheus", "monitor", "metrics", "TCP", True),
    ("registry", "collector", "otlp", "TCP", True),
    ("inference", "collector", "otlp", "TCP", True),
    ("monitor", "collector", "otlp", "TCP", True),
    ("inference", "dns", "53", "UDP", True),
    ("backend", "inference", "grpc", "TCP", True),
    ("ci-runner", "registry", "grpc", "TCP", True),
    ("feedback-sender", "monitor", "grpc", "TCP", True),
    ("registry", "inference", "grpc", "TCP", False),
    ("registry", "monitor", "grpc", "TCP", False),
    ("monitor", "inference", "grpc", "TCP", False),
    ("inference", "postgresql", "5432", "TCP", False),
    ("inference", "object-store", "443", "TCP", False),
    ("monitor", "object-store", "443", "TCP", False),
    ("backend", "registry", "grpc", "TCP", False),
    ("backend", "monitor", "grpc", "TCP", False),
    ("backend", "inference", "metrics", "TCP", False),
    ("prometheus", "registry", "grpc", "TCP", False),
    ("registry", "backend", "8080", "TCP", False),
    ("registry", "backend", "443", "TCP", False),  # the object-store rule admits no pod
]


def endpoint(name: str) -> Pod:
    if name in SERVICES:
        return keel_pod(name)
    others = {
        "prometheus": PROMETHEUS,
        "collector": Pod(COLLECTOR.namespace, COLLECTOR.labels, {"otlp": collector_port()}),
        "postgresql": POSTGRESQL,
        "dns": DNS,
        "backend": BACKEND,
        "ci-runner": CI_RUNNER,
        "feedback-sender": FEEDBACK_SENDER,
        "object-store": OBJECT_STORE,
    }
    return others[name]


@pytest.mark.parametrize(
    ("source", "target", "port", "protocol", "allowed"),
    CALLS,
    ids=[f"{s}->{t}:{p}" for s, t, p, _, _ in CALLS],
)
def test_network_policies_let_through_exactly_the_suites_calls(
    source: str, target: str, port: str, protocol: str, allowed: bool
) -> None:
    to = endpoint(target)
    number = int(port) if port.isdigit() else to.ports[port]
    assert reachable(endpoint(source), to, number, protocol) is allowed


def test_every_pod_starts_from_deny_all() -> None:
    deny = resource("NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


# The image -----------------------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    base: str
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        found = [rest for kind, rest in self.instructions if kind == keyword]
        return found[-1] if found else None


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: dict[str, Stage]
    ignore: list[str]

    def inherited(self, stage: str, keyword: str) -> str | None:
        """An instruction's value in ``stage`` or the stage it is built FROM."""
        while stage in self.stages:
            value = self.stages[stage].last(keyword)
            if value is not None:
                return value
            stage = self.stages[stage].base
        return None


def dockerfile() -> Dockerfile:
    lines, pending = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        text = raw.strip()
        if text.startswith("#") or not (text or pending):
            continue
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        lines.append(pending + text)
        pending = ""
    parsed = Dockerfile({}, {}, (DEPLOY / "Dockerfile.dockerignore").read_text().split("\n"))
    stage: Stage | None = None
    for line in lines:
        keyword, rest = line.split(None, 1)
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            stage = parsed.stages.setdefault(name.strip(), Stage(name.strip(), base.strip()))
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            (stage.args if stage else parsed.args)[name] = (
                shlex.split(default)[0] if default else ""
            )
        elif stage is not None:
            stage.instructions.append((keyword, rest))
    return parsed


def exec_form(value: str | None) -> list[str]:
    assert value is not None and value.startswith("["), f"not in exec form: {value!r}"
    words: list[str] = json.loads(value)
    return words


def test_image_is_python_311_slim_and_runs_the_keel_command_as_a_non_root_user() -> None:
    image = dockerfile()
    for stage in image.stages.values():
        assert stage.base in image.stages or stage.base == "${PYTHON_IMAGE}", stage.base
    assert image.args["PYTHON_IMAGE"] == "python:3.11-slim"
    user = image.inherited("keel", "USER")
    assert user is not None and user.split(":")[0].isdigit() and int(user.split(":")[0]) > 0
    for service in SERVICES:
        # The pods run the image's entry point (no `command`) as the image's user.
        assert "command" not in container(service)
        assert str(pod_spec(service)["securityContext"]["runAsUser"]) == user.split(":")[0]
    client = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())["project"]
    assert exec_form(image.inherited("keel", "ENTRYPOINT")) == ["keel"]
    assert "keel" in client["scripts"], "ENTRYPOINT keel is keel-client's console script"
    assert exec_form(image.stages["keel"].last("CMD")) == ["--help"]


def test_image_installs_the_suite_and_the_client_from_files_the_context_keeps() -> None:
    image = dockerfile()
    build = image.stages["build"]
    copied = [rest.split()[:-1] for kind, rest in build.instructions if kind == "COPY"]
    kept = {line[1:].rstrip("/") for line in image.ignore if line.startswith("!")}
    rules = [line for line in image.ignore if line and not line.startswith("#")]
    assert rules[0] == "**", "the build context is an allowlist"
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in kept, f"{source} is left out of the build context"
    (install,) = [
        rest.split() for kind, rest in build.instructions if kind == "RUN" and "pip install" in rest
    ]
    assert {"./clients/python", "."} <= set(install)
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    fsspec = next(pin for pin in pins if pin.startswith("fsspec=="))
    s3fs = next(p for p in build.args["EXTRA_PACKAGES"].split() if p.startswith("s3fs=="))
    assert s3fs.split("==")[1] == fsspec.split("==")[1], "s3fs is released in step with fsspec"


@pytest.mark.parametrize("service", SERVICES)
def test_image_targets_start_each_service_on_its_ports(service: str) -> None:
    image = dockerfile()
    command = exec_form(image.stages[service].last("CMD"))
    entry = exec_form(image.inherited(service, "ENTRYPOINT"))
    assert entry == ["keel"]
    assert command[:2] == [service, "serve"]
    assert serve_options(command)["host"] == "0.0.0.0"
    spec = service_spec(service)
    assert spec is not None
    fields = spec.settings.model_fields
    exposed = {int(p) for p in (image.stages[service].last("EXPOSE") or "").split()}
    assert exposed == {fields["port"].default, fields["metrics_port"].default}
    assert container(service)["args"] == command, "the pods run what the image's target runs"


# Collector, Prometheus, Grafana ---------------------------------------------------------------
def collector_config() -> dict[str, Any]:
    return documents(OBSERVABILITY / "otel-collector.yaml")[0]


def test_collector_receives_otlp_grpc_where_the_services_send_it() -> None:
    config = collector_config()
    listen = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert listen.rsplit(":")[0] == "0.0.0.0", "the collector listens on its pod's address"
    for service in SERVICES:
        target = environment(service)["OTEL_EXPORTER_OTLP_ENDPOINT"]
        match = re.fullmatch(r"http://otel-collector\.([a-z-]+)\.svc[.a-z]*:(\d+)", target)
        assert match is not None, target
        assert match.groups() == (MONITORING_NAMESPACE, str(collector_port())), target
    (traces,) = config["service"]["pipelines"].values()
    assert "otlp" in traces["receivers"]
    assert traces["processors"][0] == "memory_limiter" and "batch" in traces["processors"]
    for kind in ("receivers", "processors", "exporters"):
        for name in traces[kind]:
            assert name in config[kind], f"pipeline names {kind[:-1]} {name!r}, not configured"
    for name in config["service"].get("extensions", []):
        assert name in config["extensions"]


def prometheus_config() -> dict[str, Any]:
    return documents(OBSERVABILITY / "prometheus.yml")[0]


@pytest.mark.parametrize("service", SERVICES)
def test_prometheus_scrapes_every_pod_of_the_service_on_its_metrics_port(service: str) -> None:
    config = prometheus_config()
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == f"keel-{service}"]
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod" and discovery["namespaces"]["names"] == [NAMESPACE]
    keep = {
        tuple(rule["source_labels"]): rule["regex"]
        for rule in job["relabel_configs"]
        if rule.get("action") == "keep"
    }
    label = "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    assert re.fullmatch(keep[(label,)], pod_labels(service)["app.kubernetes.io/name"])
    port = keep[("__meta_kubernetes_pod_container_port_number",)]
    assert int(port) == container_ports(service)["metrics"]
    added = {r["target_label"] for r in job["relabel_configs"] if "target_label" in r}
    assert added | {"job", "instance"} == TARGET_LABELS
    for rules in config["rule_files"]:
        assert (OBSERVABILITY / rules).is_file()


# Metric names the services really export ---------------------------------------------------
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


@dataclass
class Exported:
    """Series names as Prometheus stores them, with the labels and values seen on them."""

    labels: dict[str, set[str]] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, registry: CollectorRegistry) -> None:
        for family in registry.collect():
            for suffix in SUFFIXES.get(family.type, ("",)):
                self.labels.setdefault(family.name + suffix, set())
            for sample in family.samples:
                self.labels.setdefault(sample.name, set()).update(sample.labels)
                for label, value in sample.labels.items():
                    self.values.setdefault(label, set()).add(value)


async def exported_by_the_suite(tmp: Path) -> Exported:
    """Start registry, monitor and inference in-process through their specs (as ``keel
    <service> serve`` does), serve one prediction, and read the three metric registries."""
    registries = {service: CollectorRegistry() for service in SERVICES}
    provider = TracerProvider()

    async with contextlib.AsyncExitStack() as stack:

        async def start(service: str, settings: Any) -> str:
            spec = service_spec(service)
            assert spec is not None
            opened = spec.open(settings, provider, registries[service])
            deps = await stack.enter_async_context(opened)
            server, port = build_server(settings, tracer_provider=provider, deps=deps)
            await server.start()
            stack.push_async_callback(server.stop, None)
            return f"127.0.0.1:{port}"

        common: dict[str, Any] = {"port": 0, "metrics_port": None}
        registry = await start("registry", RegistrySettings(data_dir=tmp / "r", **common))
        monitor = await start(
            "monitor", MonitorSettings(data_dir=tmp / "m", registry_address=registry, **common)
        )
        inference = await start(
            "inference",
            InferenceSettings(
                data_dir=tmp / "i",
                registry_address=registry,
                monitor_address=monitor,
                registry_retry_s=0.2,
                prediction_log_drain_s=0.5,
                **common,
            ),
        )
        async with grpc.aio.insecure_channel(registry) as channel:
            client = Client(channel)
            await client.create_model("churn")
            await client.register("churn", xgboost_artifact())
            await client.set_alias("churn", "production", 1)
        async with grpc.aio.insecure_channel(inference) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            await wait_model_ready(stub, "churn")
            rows = np.zeros((3, 4), dtype=np.float32)
            await stub.ModelInfer(raw_request("churn", rows), timeout=10)
        exported = Exported()
        for metrics in registries.values():
            exported.add(metrics)
        return exported


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return asyncio.run(exported_by_the_suite(tmp_path_factory.mktemp("suite")))


PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip
MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class Query:
    """What a PromQL expression refers to: series names, label names, label matchers."""

    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    matchers: list[tuple[str, str, str, str]] = field(default_factory=list)


def read_promql(expr: str) -> Query:
    query = Query()
    expr = re.sub(r"\$\{?\w+\}?", "", expr.replace("$__rate_interval", "5m"))
    for metric, body in re.findall(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}", expr):
        for label, op, value in MATCHER.findall(body):
            query.matchers.append((metric, label, op, value))
            query.labels.add(label)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"(?:[^\"\\]|\\.)*\"", " ", expr)
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        query.labels.update(label.strip() for label in clause.split(",") if label.strip())
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    for name in re.findall(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", expr):
        if name.lower() not in PROMQL_WORDS:
            query.metrics.add(name)
    return query


def unknown_references(expr: str, exported: Exported, legend: str = "") -> list[str]:
    """What ``expr`` (and its legend) names that the services do not export."""
    query = read_promql(expr)
    problems = [f"{m}: no such series" for m in query.metrics - {"up"} if m not in exported.labels]
    if not query.metrics:
        problems.append("names no series")
    known = set(TARGET_LABELS)
    for metric in query.metrics & set(exported.labels):
        known |= exported.labels[metric]
    labels = query.labels | set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    problems += [
        f"label {label!r} is on none of {sorted(query.metrics)}" for label in labels - known
    ]
    for _, label, op, value in query.matchers:
        if label == "code" and op in ("=", "=~"):
            wrong = [c for c in value.split("|") if c not in grpc.StatusCode.__members__]
            problems += [f"code {c!r} is no gRPC status code" for c in wrong]
        elif op == "=" and label in exported.values and value not in exported.values[label]:
            problems.append(f"{label}={value!r}: no series has it")
    return problems


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    return loaded


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(where, expression, legend) of every panel query and template variable."""
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"], target.get("legendFormat", "")
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match is not None, variable["definition"]
            yield f"${variable['name']}", match[1], "{{" + match[2] + "}}"


def test_dashboard_queries_only_what_the_services_export(exported: Exported) -> None:
    assert {"keel_rpc_server_calls_total", "keel_inference_rows_total"} <= set(exported.labels)
    queries = list(dashboard_queries())
    assert len(queries) >= 20
    problems = [
        f"{where}: {problem}"
        for where, expr, legend in queries
        for problem in unknown_references(expr, exported, legend)
    ]
    assert problems == []


def test_dashboard_covers_the_key_metrics() -> None:
    board = dashboard()
    used = {m for _, expr, _ in dashboard_queries() for m in read_promql(expr).metrics}
    for family in (
        "keel_rpc_server_calls_total",
        "keel_rpc_server_duration_seconds_bucket",
        "keel_inference_rows_total",
        "keel_inference_queue_depth",
        "keel_prediction_log_delivered_rows_total",
        "keel_prediction_log_dropped_rows_total",
        "keel_prediction_log_spooled_bytes",
    ):
        assert family in used, family
    datasources = {
        json.dumps(panel.get("datasource")) for panel in board["panels"] if panel["type"] != "row"
    }
    assert datasources == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"]


def test_alert_rules_watch_real_series(exported: Exported) -> None:
    (group,) = documents(OBSERVABILITY / "keel-alerts.yml")[0]["groups"]
    problems = []
    for rule in group["rules"]:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        problems += [f"{rule['alert']}: {p}" for p in unknown_references(rule["expr"], exported)]
    assert problems == []
    watched = {m for rule in group["rules"] for m in read_promql(rule["expr"]).metrics}
    assert {"up", "keel_prediction_log_dropped_rows_total"} <= watched


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(rate(keel_inference_row_total[5m]))", "keel_inference_row_total: no such series"),
        ("sum by (modle) (keel_inference_queue_depth)", "label 'modle'"),
        ('keel_rpc_server_calls_total{code="INTERNAL_ERROR"}', "'INTERNAL_ERROR' is no gRPC"),
        ('keel_rpc_server_calls_total{service="registy"}', "service='registy'"),
    ],
)
def test_a_wrong_query_is_caught(expr: str, problem: str, exported: Exported) -> None:
    assert any(problem in found for found in unknown_references(expr, exported))
