"""The checked-in protobuf modules are exactly what `make protos` generates from their .proto
files (adapters/protos/)."""

from __future__ import annotations

from pathlib import Path

import tensorflow_serving.apis.model_service_pb2  # noqa: F401  (TF Serving's files registered first)

from pyserving.adapters.protos import (
    batching_parameters_pb2,
    generate,
    grpc_service_pb2,
    model_config_pb2,
    model_registry_pb2,
    monitoring_config_pb2,
    ssl_config_pb2,
)

GENERATED = Path(generate.__file__).resolve().parent


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    written = generate.generate(tmp_path)
    names = {path.name for path in written}
    checked_in = {p.name for p in GENERATED.iterdir() if p.name.endswith((".pyi", "_pb2.py"))}
    checked_in |= {p.name for p in GENERATED.glob("*_pb2_grpc.py")}
    assert names == checked_in, "run `make protos` and commit what it writes"
    for path in written:
        fresh, kept = path.read_bytes(), (GENERATED / path.name).read_bytes()
        assert fresh == kept, f"adapters/protos/{path.name} is stale: run `make protos`"


def test_every_proto_has_its_module() -> None:
    stems = {p.stem for p in generate.proto_files()}
    assert stems == {
        "batching_parameters",
        "grpc_service",
        "log_provenance",
        "model_config",
        "model_registry",
        "monitoring_config",
        "ssl_config",
    }


def test_file_names_cannot_collide_with_tf_serving_files() -> None:
    for module in (
        batching_parameters_pb2,
        model_registry_pb2,
        monitoring_config_pb2,
        ssl_config_pb2,
    ):
        name = module.DESCRIPTOR.name
        assert name.startswith("pyserving/adapters/protos/"), name


def test_open_inference_protocol_files_are_tritonclients() -> None:
    """Our inference.* files are byte-for-byte the ones tritonclient registers, under the same
    names: one process can import both (the default pool refuses a differing second copy)."""
    from tritonclient.grpc import model_config_pb2 as their_config
    from tritonclient.grpc import service_pb2 as their_service

    for ours, theirs in ((grpc_service_pb2, their_service), (model_config_pb2, their_config)):
        assert ours.DESCRIPTOR.name == theirs.DESCRIPTOR.name
        assert ours.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb
    service = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert grpc_service_pb2.ModelInferRequest is their_service.ModelInferRequest


def test_tf_serving_names_and_numbers() -> None:
    """Same package, message names and field numbers as TF Serving's own .proto files."""

    def fields(message) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert ssl_config_pb2.SSLConfig.DESCRIPTOR.full_name == "tensorflow.serving.SSLConfig"
    assert fields(ssl_config_pb2.SSLConfig) == {
        "server_key": 1,
        "server_cert": 2,
        "custom_ca": 3,
        "client_verify": 4,
    }
    monitoring = monitoring_config_pb2.MonitoringConfig
    assert monitoring.DESCRIPTOR.full_name == "tensorflow.serving.MonitoringConfig"
    assert fields(monitoring) == {"prometheus_config": 1}
    assert fields(monitoring_config_pb2.PrometheusConfig) == {"enable": 1, "path": 2}
    batching = batching_parameters_pb2.BatchingParameters
    assert batching.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    assert list(fields(batching).values()) == list(range(1, 10))


def test_model_registry_wire_names() -> None:
    service = model_registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"]
    assert service.full_name == "pyserving.ModelRegistry"
    method = service.methods_by_name["ListModels"]
    assert method.input_type.full_name == "pyserving.ListModelsRequest"
    assert method.output_type.full_name == "pyserving.ListModelsResponse"
    info = model_registry_pb2.ModelInfo.DESCRIPTOR
    assert [(f.name, f.number) for f in info.fields] == [
        ("name", 1),
        ("base_path", 2),
        ("platform", 3),
        ("configured", 4),
        ("versions", 5),
        ("labels", 6),
    ]
