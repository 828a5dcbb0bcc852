"""`--ssl_config_file`: TF Serving's SSLConfig, for the gRPC port (and HTTPS on the REST port).

The `tensorflow-serving-api` wheel lacks `tensorflow_serving/config/ssl_config.proto`;
protos/ssl_config.proto copies it with TF Serving's package, name and field numbers
(tensorflow/serving, tensorflow_serving/config/ssl_config.proto):

    package tensorflow.serving;
    message SSLConfig {
      string server_key = 1;   // PEM text of the private key (the key itself, not a path)
      string server_cert = 2;  // PEM text of the certificate (chain)
      string custom_ca = 3;    // PEM text of the CA that signs client certificates
      bool client_verify = 4;  // require a client certificate signed by custom_ca
    }

gRPC gets the same credentials as TF Serving's BuildServerCredentialsFromSSLConfigFile
(server.cc): a key/cert pair, `custom_ca` as root certificates, and with
`client_verify` a client certificate is requested, required and verified. TF Serving
serves REST in plain HTTP only; pyserving serves HTTPS with the same certificate and the
same client check whenever the file is given.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

import grpc
from google.protobuf import text_format

from pyserving.adapters.protos.ssl_config_pb2 import SSLConfig
from pyserving.adapters.text_proto import parse_text_proto
from pyserving.api.text_proto_schema import read_flag_file
from pyserving.engine.errors import ConfigurationError

EXAMPLE = (
    'server_key: "-----BEGIN PRIVATE KEY-----\\n..."  '
    'server_cert: "-----BEGIN CERTIFICATE-----\\n..."  '
    'custom_ca: "-----BEGIN CERTIFICATE-----\\n..."  client_verify: true'
)


class TlsConfigError(ConfigurationError):
    """The SSL config cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class TlsSettings:
    server_key: bytes
    server_cert: bytes
    custom_ca: bytes  # b"" when none
    client_verify: bool

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.server_key, self.server_cert)],
            root_certificates=self.custom_ca or None,
            require_client_auth=self.client_verify,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context for HTTPS with the same certificate and client check."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # load_cert_chain reads files only: write the PEMs to a private folder and delete them.
        with tempfile.TemporaryDirectory(prefix="pyserving-tls-") as folder:
            cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            for path, data in ((cert, self.server_cert), (key, self.server_key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            try:
                context.load_cert_chain(cert, key)
            except ssl.SSLError as exc:
                raise TlsConfigError(
                    f"server_cert and server_key do not form a usable pair ({exc.reason}): "
                    "give the PEM text of a certificate and of its private key"
                ) from None
        if self.custom_ca:
            try:
                context.load_verify_locations(cadata=self.custom_ca.decode("ascii"))
            except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
                raise TlsConfigError(
                    f"custom_ca is not a PEM certificate ({exc}): give the CA's PEM text"
                ) from None
        context.verify_mode = ssl.CERT_REQUIRED if self.client_verify else ssl.CERT_NONE
        return context


def parse_ssl_config(text: str, source: str = "<text>") -> TlsSettings:
    try:
        config = parse_text_proto(SSLConfig, text)
    except text_format.ParseError as exc:
        raise TlsConfigError(
            f"{source} is not a valid SSLConfig text proto ({exc}); expected e.g. {EXAMPLE}"
        ) from None
    if not config.server_key or not config.server_cert:
        raise TlsConfigError(
            f"{source}: server_key and server_cert are required (the PEM text itself, "
            "not a file name)"
        )
    if config.client_verify and not config.custom_ca:
        raise TlsConfigError(
            f"{source}: client_verify: true needs custom_ca, the PEM of the CA that signs "
            "client certificates"
        )
    for field in ("server_key", "server_cert", "custom_ca"):
        value = getattr(config, field)
        if value and "-----BEGIN" not in value:
            raise TlsConfigError(
                f"{source}: {field} does not hold PEM text (no -----BEGIN line); TF Serving's "
                "SSLConfig takes the certificate or key itself, not a path to it"
            )
    return TlsSettings(
        server_key=config.server_key.encode(),
        server_cert=config.server_cert.encode(),
        custom_ca=config.custom_ca.encode(),
        client_verify=bool(config.client_verify),
    )


def load_ssl_config(path: str) -> TlsSettings | None:
    """TLS settings from `--ssl_config_file`, or None (plaintext) when no file is given."""
    if not path:
        return None
    text = read_flag_file("ssl_config_file", path, TlsConfigError)
    return parse_ssl_config(text, source=path)
