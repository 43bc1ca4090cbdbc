"""How a mesh process listens and dials: mTLS with its credentials folder, or plaintext when
the user asked for it (`--insecure`, MESH_INSECURE=1) — and then only on loopback.

Both the coordinator and the SDK open ports and channels through a `Transport`, so the rule
"nothing listens without authentication unless asked" lives in one place. Certificates are
renewed by rewriting the folder's files: a server re-reads them at its next TLS handshake
(grpc's dynamic server credentials), a channel opened afterwards presents the new ones.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from mesh.protocol.pki import CERT_FILE, KEY_FILE, Credentials, CredentialsError

TLS_DIR_ENV = "MESH_TLS_DIR"
"""The folder holding a process's ca.pem, cert.pem and key.pem."""
INSECURE_ENV = "MESH_INSECURE"
"""1: plaintext, for debugging on one machine."""


class InsecureBindRefused(CredentialsError):
    """Plaintext on an address other hosts can reach."""


@dataclass(frozen=True)
class Transport:
    """mTLS with the credentials in `folder`, or plaintext when `folder` is None."""

    folder: Path | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Transport:
        """MESH_TLS_DIR, or plaintext with MESH_INSECURE=1.

        Raises:
            CredentialsError: neither is set, or the folder's credentials cannot be read.
        """
        folder = env.get(TLS_DIR_ENV, "")
        if folder:
            transport = cls(Path(folder))
            transport.credentials()  # fail at start, naming the file, not at the first call
            return transport
        if env.get(INSECURE_ENV, "") in ("1", "true", "yes"):
            return cls(None)
        raise CredentialsError(
            f"no credentials: set {TLS_DIR_ENV} to a folder with ca.pem, cert.pem and key.pem (`mesh up` "
            f"does this for the modules it starts; `mesh creds issue` writes one), or {INSECURE_ENV}=1 for "
            "plaintext on this machine only"
        )

    @property
    def secure(self) -> bool:
        return self.folder is not None

    def credentials(self) -> Credentials:
        """The credentials as they are now in the folder (renewal rewrites them)."""
        assert self.folder is not None, "an insecure transport has no credentials"
        return Credentials.read(self.folder)

    def stamp(self) -> tuple[int, ...]:
        """The version of the credentials' files: it changes whenever renewal rewrites them,
        so that a long-lived client knows to make its channels afresh."""
        return () if self.folder is None else _stamp(self.folder)

    def add_port(self, server: grpc.aio.Server, address: str) -> int:
        """Listen on `address` ("host:port"); returns the port.

        Raises:
            InsecureBindRefused: plaintext asked for on a non-loopback address.
        """
        if self.folder is None:
            refuse_public_plaintext(address)
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self._server_credentials())

    def channel(
        self, address: str, *, interceptors: Sequence[Any] = (), options: Sequence[Any] = ()
    ) -> grpc.aio.Channel:
        """A channel to `address`, presenting the current certificate."""
        if self.folder is None:
            return grpc.aio.insecure_channel(address, options=list(options), interceptors=list(interceptors))
        return grpc.aio.secure_channel(
            address, self.credentials().channel_credentials(), options=list(options), interceptors=list(interceptors)
        )

    def blocking_channel(self, address: str) -> grpc.Channel:
        """A synchronous channel to `address`, presenting the current certificate (for the
        clients that are blocking only, such as grpcio-reflection's)."""
        if self.folder is None:
            return grpc.insecure_channel(address)
        return grpc.secure_channel(address, self.credentials().channel_credentials())

    def _server_credentials(self) -> grpc.ServerCredentials:
        assert self.folder is not None
        folder = self.folder
        initial = Credentials.read(folder)
        seen: dict[str, tuple[int, ...]] = {"stamp": _stamp(folder)}

        def reread() -> grpc.ServerCertificateConfiguration | None:
            """At each handshake: the renewed certificate once its files changed, else None."""
            stamp = _stamp(folder)
            if stamp == seen["stamp"]:
                return None
            try:
                renewed = Credentials.read(folder)
            except CredentialsError:
                return None  # mid-rewrite or gone: keep serving with what we have
            seen["stamp"] = stamp
            return _configuration(renewed)

        # grpc calls the fetcher at each handshake and keeps the current configuration on None;
        # grpc-stubs types the fetcher as never returning None.
        return grpc.dynamic_ssl_server_credentials(
            _configuration(initial),
            reread,  # type: ignore[arg-type]
            require_client_authentication=True,
        )


def refuse_public_plaintext(address: str) -> None:
    """Plaintext is for one machine: refuse any address but loopback.

    Raises:
        InsecureBindRefused: naming the address and the fix.
    """
    host = address.rpartition(":")[0].strip("[]") or "0.0.0.0"
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InsecureBindRefused(
            f"refusing to listen on {address} without TLS: plaintext (--insecure) is for this machine only; "
            "listen on 127.0.0.1, or drop --insecure to serve mTLS"
        )


def _configuration(credentials: Credentials) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(credentials.key_pem, credentials.cert_pem)], root_certificates=credentials.ca_pem
    )


def _stamp(folder: Path) -> tuple[int, ...]:
    """Changes whenever a file is rewritten: `Credentials.write` replaces it (a new inode)."""
    try:
        cert, key = os.stat(folder / CERT_FILE), os.stat(folder / KEY_FILE)
    except OSError:
        return ()
    return (cert.st_ino, cert.st_mtime_ns, key.st_ino, key.st_mtime_ns)
