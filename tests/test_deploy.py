"""The deployment files: valid against Kubernetes' schemas, and their arguments are ones
pyserving's own flag parser accepts, so manifests and code cannot drift apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from pyserving.api.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CORE_MANIFESTS = ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", CORE_MANIFESTS)
def test_core_manifests_pass_kubernetes_schema(name: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(load(DEPLOY / "kubernetes" / name), "1.30.0", strict=True)


@pytest.mark.parametrize(
    ("manifest", "schema"),
    [
        ("kubernetes/servicemonitor.yaml", "servicemonitor.schema.json"),
        ("kserve/servingruntime.yaml", "servingruntime.schema.json"),
        ("kserve/servingruntime-v2.yaml", "servingruntime.schema.json"),
    ],
)
def test_custom_resources_pass_their_crd_schema(manifest: str, schema: str) -> None:
    jsonschema.validate(
        load(DEPLOY / manifest), json.loads((DEPLOY / "schemas" / schema).read_text())
    )


def serve_options(args: list[str]) -> object:
    return build_parser().parse_args(["serve", *args])


@pytest.mark.parametrize(
    ("manifest", "protocols"),
    [("servingruntime.yaml", ["v1", "grpc-v1"]), ("servingruntime-v2.yaml", ["v2", "grpc-v2"])],
)
def test_servingruntime_arguments_are_pyservings_flags(manifest: str, protocols: list) -> None:
    runtime = load(DEPLOY / "kserve" / manifest)
    assert runtime["spec"]["protocolVersions"] == protocols
    [container] = runtime["spec"]["containers"]
    assert container["command"] == ["pyserving", "serve"]
    # KServe fills in {{.Name}} with the InferenceService's name.
    args = [re.sub(r"\{\{\s*\.Name\s*\}\}", "mnist", a) for a in container["args"]]
    options = serve_options(args)
    assert options.port == 9000 and options.rest_api_port == 8080
    assert options.model_name == "mnist" and options.model_base_path == "/mnt/models"
    assert options.rest_api_timeout_in_ms == 60000
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(options.rest_api_port)


def test_deployment_arguments_probes_and_grace_period_fit_together() -> None:
    deployment = load(DEPLOY / "kubernetes" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    options = serve_options(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": options.port, "http": options.rest_api_port}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The drain (in-flight requests, then unloads) must fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] >= options.shutdown_grace_seconds + 15
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_dockerfile_copies_what_exists_and_runs_the_console_script() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert re.search(r"^USER 10001$", text, flags=re.MULTILINE), "the image must not run as root"
    assert 'ENTRYPOINT ["pyserving", "serve"]' in text
    options = serve_options(json.loads(re.search(r"^CMD (.*)$", text, re.MULTILINE).group(1)))
    assert options.port == 8500 and options.rest_api_port == 8501
