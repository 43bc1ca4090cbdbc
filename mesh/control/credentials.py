"""The coordinator's side of the mesh PKI: the CA in the state folder, and every certificate
the coordinator hands out — its own, the admin operator's (what the CLI of the person who ran
`mesh up` uses), each module's before its process is spawned — renewed while the mesh runs.

    <state>/pki/ca.pem, ca-key.pem     the mesh CA (created at the first `mesh up`)
    <state>/pki/coordinator/           the coordinator's credentials
    <state>/pki/operators/<role>/      operator credentials (admin by default)
    <state>/pki/modules/<name>/        each module's credentials (its MESH_TLS_DIR), with the
                                       public token keys (token-keys.pem) it verifies callers' tokens with
    <state>/pki/token-key.pem          the mesh's token signing key (`mesh token issue`)

Renewal rewrites a folder's files at two thirds of the certificate's lifetime: servers re-read
them at the next handshake, clients present them from their next channel on, nothing restarts.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mesh.protocol.identity import COORDINATOR, Role, module_identity, operator_identity
from mesh.protocol.pki import CA_KEY_FILE, CertificateAuthority, CredentialsError, cert_lifetime_seconds
from mesh.protocol.tokens import JWKS_ENV, SIGNING_KEY_FILE, VERIFICATION_KEYS_FILE, SigningKey
from mesh.protocol.transport import INSECURE_ENV, TLS_DIR_ENV, Transport

_log = logging.getLogger("mesh")

RENEW_AT_FRACTION = 2 / 3
"""Renew a certificate once this much of its lifetime has passed."""


def operator_name() -> str:
    """The login name an operator certificate carries when none is given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


@dataclass
class _Issued:
    common_name: str
    hosts: tuple[str, ...]
    folder: Path
    renew_at: float = field(default=0.0)


class MeshCredentials:
    """The CA of one state folder and the credentials issued from it (none when insecure)."""

    def __init__(self, pki_dir: Path, env: Mapping[str, str], *, insecure: bool) -> None:
        self.pki_dir = pki_dir
        self.insecure = insecure
        self._lifetime = cert_lifetime_seconds(dict(env))
        self._jwks = env.get(JWKS_ENV, "")
        self._token_key: SigningKey | None = None
        self._authority: CertificateAuthority | None = None
        self._issued: dict[Path, _Issued] = {}
        self._changed = asyncio.Event()

    @property
    def coordinator_dir(self) -> Path:
        return self.pki_dir / "coordinator"

    @property
    def admin_dir(self) -> Path:
        return self.operator_dir(Role.ADMIN)

    def operator_dir(self, role: Role) -> Path:
        return self.pki_dir / "operators" / role.name.lower()

    def module_dir(self, name: str) -> Path:
        return self.pki_dir / "modules" / name

    @property
    def token_key_file(self) -> Path:
        return self.pki_dir / SIGNING_KEY_FILE

    @property
    def transport(self) -> Transport:
        """How the coordinator listens and dials (its files exist once `issue_own` ran)."""
        return Transport(None if self.insecure else self.coordinator_dir)

    def issue_own(self) -> None:
        """Issue the coordinator's and the admin operator's credentials (the CA is made first
        when the state folder has none); once per coordinator, renewed afterwards."""
        if self.insecure or self.coordinator_dir in self._issued:
            return
        self._issue(COORDINATOR.common_name, (), self.coordinator_dir)
        self._issue(operator_identity(operator_name(), Role.ADMIN).common_name, (), self.admin_dir)
        self._token_key_now()

    def module_env(self, name: str, hosts: Sequence[str] = ()) -> dict[str, str]:
        """The environment that gives module `name` its transport, its credentials issued now
        (with the public keys it verifies callers' tokens with, and an external issuer's JWKS
        as an absolute path when MESH_TOKEN_JWKS names one).

        Args:
            name: The module.
            hosts: Addresses it is reached at besides the local ones.
        """
        if self.insecure:
            return {INSECURE_ENV: "1"}
        folder = self.module_dir(name)
        self._issue(module_identity(name).common_name, tuple(hosts), folder)
        (folder / VERIFICATION_KEYS_FILE).write_bytes(self._token_key_now().public_pem)
        env = {TLS_DIR_ENV: str(folder.resolve())}
        if self._jwks:
            env[JWKS_ENV] = str(Path(self._jwks).resolve())
        return env

    def _issue(self, common_name: str, hosts: tuple[str, ...], folder: Path) -> None:
        authority = self._authority_now()
        authority.issue(common_name, hosts=hosts, lifetime_seconds=self._lifetime).write(folder)
        self._issued[folder] = _Issued(
            common_name, hosts, folder, renew_at=time.monotonic() + self._lifetime * RENEW_AT_FRACTION
        )
        self._changed.set()

    def _token_key_now(self) -> SigningKey:
        if self._token_key is None:
            self._token_key = SigningKey.load_or_create(self.token_key_file)
        return self._token_key

    def _authority_now(self) -> CertificateAuthority:
        if self._authority is None:
            self._authority = CertificateAuthority.load_or_create(self.pki_dir)
        return self._authority

    async def renew_forever(self) -> None:
        """Renew each issued certificate at two thirds of its lifetime, until cancelled."""
        while True:
            self._changed.clear()
            now = time.monotonic()
            for issued in list(self._issued.values()):
                if issued.renew_at <= now:
                    self._issue(issued.common_name, issued.hosts, issued.folder)
                    _log.info("renewed the certificate of %s in %s", issued.common_name, issued.folder)
            due = min((issued.renew_at for issued in self._issued.values()), default=None)
            wait = None if due is None else max(due - time.monotonic(), 0.0)
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=wait)
            except TimeoutError:
                pass


def existing_authority(pki_dir: Path) -> CertificateAuthority:
    """The CA a `mesh up` made in `pki_dir`, never a new one (an operator's credentials must
    come from the CA the mesh trusts).

    Raises:
        CredentialsError: there is no CA there yet.
    """
    if not (pki_dir / CA_KEY_FILE).exists():
        raise CredentialsError(
            f"no mesh CA in {pki_dir}: run `mesh up` once with this state folder (it creates the CA), "
            "or pass --state-dir of the mesh whose CA should issue"
        )
    return CertificateAuthority.load_or_create(pki_dir)
