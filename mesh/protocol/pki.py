"""The mesh's own certificate authority and the mTLS credentials of every process.

`mesh up` creates (or loads) a CA in the state folder and issues each process a short-lived
certificate whose common name is its identity (see `identity.py`); every gRPC server
requires a client certificate from that CA and every mesh client presents one. Keys are
EC P-256: fast to make, so a test harness can run its own CA too.

A folder of credentials holds `ca.pem`, `cert.pem` and `key.pem` (the key readable by its
owner only), which is also what grpcurl takes (`mesh creds grpcurl-flags`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CA_LIFETIME = datetime.timedelta(days=3650)
DEFAULT_CERT_LIFETIME_SECONDS = 24 * 3600.0
"""How long a process certificate lives (MESH_CERT_LIFETIME_SECONDS); it is renewed at two
thirds of that, while the process runs."""
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
READ_SETTLE_SECONDS = 1.0
"""How long `Credentials.read` waits for a certificate and key that do not belong together to
be made whole by the writer under way (renewal writes its three files in well under a ms)."""
READ_RETRY_SECONDS = 0.005
"""Names every server certificate carries, so that local clients verify it by address."""


class CredentialsError(RuntimeError):
    """Credentials that are missing or unusable; the message says which file and what to do."""


@dataclass(frozen=True)
class Credentials:
    """One process's mTLS material: the mesh CA, its certificate and its private key (PEM)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def read(cls, folder: Path) -> Credentials:
        """The credentials in `folder` (ca.pem, cert.pem, key.pem), a certificate and the key
        it belongs to.

        Renewal replaces the three files one after another, so a reader between two of the
        replacements would see a new certificate with the old key, and grpc then fails every
        handshake with it ("Failed to create security handshaker"). A pair that does not
        belong together is therefore read again, for up to READ_SETTLE_SECONDS, before it is
        refused.

        Raises:
            CredentialsError: a file is missing or unreadable, naming it; or the certificate
                and the key do not belong together.
        """
        deadline = time.monotonic() + READ_SETTLE_SECONDS
        while True:
            credentials = cls(*(_read_file(folder / name) for name in (CA_FILE, CERT_FILE, KEY_FILE)))
            if credentials.key_matches():
                return credentials
            if time.monotonic() > deadline:
                raise CredentialsError(
                    f"{folder / CERT_FILE} and {folder / KEY_FILE} do not belong together (the key is not the "
                    "certificate's); write both from one issue: a running `mesh up` renews the mesh's, "
                    "`mesh creds issue` writes an operator's"
                )
            time.sleep(READ_RETRY_SECONDS)

    def key_matches(self) -> bool:
        """Whether the private key is the one the certificate is for (False when either does
        not parse: the caller says which files)."""
        try:
            key = serialization.load_pem_private_key(self.key_pem, password=None)
            certificate = x509.load_pem_x509_certificate(self.cert_pem)
        except (ValueError, TypeError):
            return False
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        return bool(key.public_key().public_bytes(*spki) == certificate.public_key().public_bytes(*spki))

    def write(self, folder: Path) -> None:
        """Write the three files, each replaced at once (a reader never sees half a file)."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, data, mode in (
            (CA_FILE, self.ca_pem, 0o644),
            (CERT_FILE, self.cert_pem, 0o644),
            (KEY_FILE, self.key_pem, 0o600),
        ):
            scratch = folder / f".{name}.new"
            descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(scratch, folder / name)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def common_name(self) -> str:
        """The identity the certificate names."""
        return str(self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    def server_credentials(self) -> grpc.ServerCredentials:
        """TLS for a server that requires a client certificate from the mesh CA."""
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)], root_certificates=self.ca_pem, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """TLS for a client that presents this certificate and trusts only the mesh CA."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CredentialsError(
            f"cannot read {path}: {error.strerror or error}; a running `mesh up` writes the mesh's "
            "credentials into its state folder, `mesh creds issue` writes an operator's"
        ) from None


class CertificateAuthority:
    """Issues the mesh's certificates. Its key never leaves the coordinator's state folder."""

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self._certificate = certificate
        self._key = key

    @classmethod
    def load_or_create(cls, folder: Path, *, name: str = "Module Mesh CA") -> CertificateAuthority:
        """The CA kept in `folder` (ca.pem, ca-key.pem), created there when absent."""
        cert_path, key_path = folder / CA_FILE, folder / CA_KEY_FILE
        if cert_path.exists() and key_path.exists():
            try:
                certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (OSError, ValueError) as error:
                raise CredentialsError(
                    f"the mesh CA in {folder} cannot be read ({error}); remove {cert_path} and {key_path} "
                    "to make a new one (every credential issued by the old one stops working)"
                ) from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CredentialsError(f"{key_path} is not an EC private key; remove it and {cert_path}")
            return cls(certificate, key)
        authority = cls.create(name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path.write_bytes(b"")
        os.chmod(key_path, 0o600)
        key_path.write_bytes(authority.key_pem)
        cert_path.write_bytes(authority.ca_pem)
        return authority

    @classmethod
    def create(cls, name: str = "Module Mesh CA") -> CertificateAuthority:
        """A new CA, in memory (the test harness keeps one per harness)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @property
    def ca_pem(self) -> bytes:
        return self._certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def issue(
        self, common_name: str, *, hosts: Sequence[str] = (), lifetime_seconds: float = DEFAULT_CERT_LIFETIME_SECONDS
    ) -> Credentials:
        """A certificate for `common_name`, good as server and as client.

        Args:
            common_name: The identity (see `identity.Identity.common_name`).
            hosts: Host names and addresses the process is reached at, besides the local ones.
            lifetime_seconds: How long it is valid.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys([*LOCAL_HOSTS, *hosts]):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(seconds=lifetime_seconds))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return Credentials(self.ca_pem, certificate.public_bytes(serialization.Encoding.PEM), key_pem)


def cert_lifetime_seconds(env: dict[str, str] | os._Environ[str]) -> float:
    """MESH_CERT_LIFETIME_SECONDS, or the default; at least 10 s.

    Raises:
        CredentialsError: the value is not a number of seconds >= 10.
    """
    value = env.get("MESH_CERT_LIFETIME_SECONDS", "")
    if not value:
        return DEFAULT_CERT_LIFETIME_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 10:
        raise CredentialsError(f"MESH_CERT_LIFETIME_SECONDS is {value!r}; expected seconds >= 10")
    return seconds


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
