"""`--ssl_config_file` against a real server: certificates made here (a CA, a server
certificate for 127.0.0.1/localhost, a client certificate the CA signed, a self-signed
one). With client_verify, only the CA-signed client gets in, on gRPC and on HTTPS."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.util.processes import ServerProcess


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_cert(
    name: str, issuer: Pem | None = None, *, ca: bool = False, server: bool = False
) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    if issuer is None:
        issuer_name, signing_key = subject, key
    else:
        issuer_cert = x509.load_pem_x509_certificate(issuer.cert)
        issuer_name = issuer_cert.subject
        signing_key = serialization.load_pem_private_key(issuer.key, None)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(signing_key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class Certificates:
    ca: Pem
    server: Pem
    client: Pem  # signed by ca
    stranger: Pem  # self-signed


@pytest.fixture(scope="module")
def certs() -> Certificates:
    ca = make_cert("pyserving test CA", ca=True)
    return Certificates(
        ca=ca,
        server=make_cert("localhost", ca, server=True),
        client=make_cert("client", ca),
        stranger=make_cert("stranger"),
    )


def ssl_config_text(certs: Certificates, client_verify: bool) -> str:
    return (
        f"server_key: {json.dumps(certs.server.key.decode())}\n"
        f"server_cert: {json.dumps(certs.server.cert.decode())}\n"
        f"custom_ca: {json.dumps(certs.ca.cert.decode())}\n"
        f"client_verify: {str(client_verify).lower()}\n"
    )


@pytest.fixture(scope="module")
def server(
    trained_models: TrainedModels,
    certs: Certificates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("tls")
    trained_models.copy_version(1, tmp / "models")
    config = tmp / "ssl_config.txt"
    config.write_text(ssl_config_text(certs, client_verify=True))
    process = ServerProcess(
        [
            "--model_name=mnist",
            f"--model_base_path={tmp / 'models'}",
            f"--ssl_config_file={config}",
            *FAST_FLAGS,
        ],
        tmp / "server.log",
        rest=True,
    )
    # The fixture's plaintext channel cannot reach a TLS port: wait on a TLS one.
    process.channel.close()
    process.channel = tls_channel(process.port, certs, certs.client)
    from grpc_health.v1 import health_pb2_grpc

    process.health_stub = health_pb2_grpc.HealthStub(process.channel)
    process.wait_serving()
    yield process
    assert process.stop() == 0


def tls_channel(port: int, certs: Certificates, client: Pem | None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.ca.cert,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


def predict(channel: grpc.Channel) -> np.ndarray:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    reply = stub.Predict(predict_request(np.full((1, 64), 0.5, np.float32)), timeout=20)
    return np.array(reply.outputs["scores"].float_val)


def test_tls_client_with_a_ca_signed_certificate_is_served(
    server: ServerProcess, certs: Certificates
) -> None:
    with tls_channel(server.port, certs, certs.client) as channel:
        assert predict(channel).shape == (10,)


@pytest.mark.parametrize("client", ["none", "stranger"])
def test_clients_without_a_ca_signed_certificate_are_refused(
    server: ServerProcess, certs: Certificates, client: str
) -> None:
    pem = None if client == "none" else certs.stranger
    with tls_channel(server.port, certs, pem) as channel, pytest.raises(grpc.RpcError) as info:
        predict(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_is_refused(server: ServerProcess) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        predict(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def _https_context(certs: Certificates, client: Pem | None, tmp: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=certs.ca.cert.decode())
    if client is not None:
        (tmp / "c.pem").write_bytes(client.cert)
        (tmp / "k.pem").write_bytes(client.key)
        context.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    return context


def _https_predict(port: int, context: ssl.SSLContext | None) -> tuple[int, dict]:
    body = json.dumps({"instances": [[0.5] * 64]})
    if context is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection(
            "localhost", port, timeout=20
        )
    else:
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=20)
    try:
        connection.request("POST", "/v1/models/mnist:predict", body=body)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


def test_https_on_the_rest_port_with_the_same_certificate(
    server: ServerProcess, certs: Certificates, tmp_path: Path
) -> None:
    port = server.rest_port
    status, reply = _https_predict(port, _https_context(certs, certs.client, tmp_path))
    assert status == 200
    with tls_channel(server.port, certs, certs.client) as channel:
        np.testing.assert_array_equal(
            np.array(reply["predictions"][0], np.float32), predict(channel).astype(np.float32)
        )
    for client in (None, certs.stranger):  # no or a wrong client certificate: refused
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _https_predict(port, _https_context(certs, client, tmp_path))
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _https_predict(port, None)  # plain HTTP on the HTTPS port


def test_a_bad_ssl_config_stops_start_up_naming_the_problem(
    trained_models: TrainedModels, certs: Certificates, tmp_path: Path
) -> None:
    trained_models.copy_version(1, tmp_path / "models")
    config = tmp_path / "ssl.txt"
    config.write_text('server_key: "/etc/key.pem" server_cert: "/etc/cert.pem"')
    bad = ServerProcess(
        ["--model_name=m", f"--model_base_path={tmp_path / 'models'}",
         f"--ssl_config_file={config}"],
        tmp_path / "bad.log",
    )  # fmt: skip
    assert bad.process.wait(60) == 2
    bad.stop()
    assert "server_key does not hold PEM text" in bad.log_text()
