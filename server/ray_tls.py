"""A credential made for one local Ray: mutual TLS on every gRPC socket it opens (issue 32).

Ray Serve binds each replica's inter-deployment gRPC server to `[::]:0`, every interface, with no
setting to narrow it (ray/serve/_private/replica.py, `_on_initialized`): the one socket of a local
Ray that is not on 127.0.0.1. What Ray does honour is `RAY_USE_TLS`: with it, that server, and
every other gRPC server and client of Ray's (GCS, raylet, workers, agents), speaks only TLS, asks
the peer for a certificate signed by `RAY_TLS_CA_CERT`, and presents `RAY_TLS_SERVER_CERT`
itself (ray/_common/tls_utils.py, ray/_private/grpc_utils.py and Ray's C++ core).

`start()` makes a CA and one certificate it signed (for 127.0.0.1 and localhost, good as server
and as client) in a private temporary folder (0700, files 0600), and points those variables at
them for this process and the Ray processes it starts. The CA's key is never written: no other
certificate can be signed for this run. `LocalTLS.remove()` (also at exit) deletes the folder and
restores the variables (a SIGKILL leaves the folder behind, as it leaves Ray's /tmp/ray session;
its key opens nothing once that Ray is gone). It does nothing when `RAY_USE_TLS` is already set:
the user's own.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import os
import shutil
import tempfile

from ..engine.errors import EngineError

ENV = ("RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
VALID_DAYS = 3650  # a server may run for years; the credential still ends with the run (its folder is removed)


class LocalTLS:
    """The folder holding this run's credential and the environment variables that name it."""

    def __init__(self, folder: str | None, previous: dict):
        self.folder, self._previous = folder, previous

    def remove(self) -> None:
        """Delete the credential and restore Ray's TLS variables (idempotent)."""
        if self.folder is None:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
        for key, value in self._previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start() -> LocalTLS:
    """Turn on Ray's mutual TLS for the Ray this process is about to start (call before `import
    ray`: Ray's core reads the variables when it loads). A no-op when RAY_USE_TLS is set already."""
    if "RAY_USE_TLS" in os.environ:
        return LocalTLS(None, {})
    folder = tempfile.mkdtemp(prefix="ovchat-ray-tls-")  # mode 0700
    try:
        cert, key, ca = make_credential()
        paths = {name: os.path.join(folder, name) for name in ("cert.pem", "key.pem", "ca.pem")}
        for name, data in zip(paths, (cert, key, ca)):
            descriptor = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    tls = LocalTLS(folder, {key: os.environ.get(key) for key in ENV})
    os.environ.update(RAY_USE_TLS="1", RAY_TLS_SERVER_CERT=paths["cert.pem"], RAY_TLS_SERVER_KEY=paths["key.pem"],
                      RAY_TLS_CA_CERT=paths["ca.pem"])
    atexit.register(tls.remove)
    return tls


def make_credential() -> tuple[bytes, bytes, bytes]:
    """(certificate, its private key, the CA's certificate), PEM: a fresh CA signs one certificate
    for the loopback names, for both ends of a connection; the CA's key is dropped."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as error:
        raise EngineError(f"`ovchat serve --ray` needs the ray extra ({error.name} is missing): "
                          "pip install 'ovchat[ray]'.") from None
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ovchat local Ray CA")])

    def builder(subject, public_key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))

    ca = (builder(ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    names = [x509.DNSName(name) for name in LOOPBACK_NAMES if name != "::1"]  # Ray's own certificates name IPs so
    names += [x509.IPAddress(ipaddress.ip_address(name)) for name in LOOPBACK_NAMES if name != "localhost"]
    cert = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ovchat local Ray")]), key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            ca.public_bytes(pem))
