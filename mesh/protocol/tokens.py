"""Tenants proven, not claimed: bearer tokens (JWT) that state a caller's tenant, company and
roles, signed by the mesh's own key or by an external identity provider the mesh trusts.

A certificate says *which process* calls; a token says *for which tenant* a person or tool
outside the mesh calls. The coordinator keeps the mesh's signing key (EC P-256, ES256) next to
its CA and gives every module the public half; an external issuer (Keycloak, Auth0 …) is
trusted through its JWKS file. Tokens must name the mesh as audience, so a token minted for
another service is no key to this one.

    <state>/pki/token-key.pem          the mesh's signing key (0600, only the coordinator and
                                       `mesh token issue` read it)
    <module MESH_TLS_DIR>/token-keys.pem   the public keys a module verifies tokens with
    MESH_TOKEN_JWKS=/path/jwks.json    an external issuer's keys (looked up by `kid`)
    MESH_TOKEN_ISSUER=https://…        that issuer's `iss` (default: the mesh's own, "module-mesh")
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.protocol.errors import MeshError
from mesh.protocol.pki import CredentialsError

ISSUER = "module-mesh"
AUDIENCE = "module-mesh"
ALGORITHM = "ES256"
SIGNING_KEY_FILE = "token-key.pem"
VERIFICATION_KEYS_FILE = "token-keys.pem"
JWKS_ENV = "MESH_TOKEN_JWKS"
ISSUER_ENV = "MESH_TOKEN_ISSUER"
AUTHORIZATION_METADATA = "authorization"
DEFAULT_TTL_SECONDS = 3600.0
HOW_TO_GET = "get one with `mesh token issue --tenant TENANT` (or from the identity provider the mesh trusts)"


@dataclass(frozen=True)
class TenantClaims:
    """What a verified token states about its caller."""

    tenant: str
    company: str = ""
    roles: tuple[str, ...] = ()
    subject: str = ""


# --- the mesh's signing key -------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """The mesh's own token signing key."""

    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in `path`, made (0600) when there is none yet."""
        if path.exists():
            return cls.read(path)
        key = cls(ec.generate_private_key(ec.SECP256R1()))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = path.with_name(f".{path.name}.new")
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(
                key.private_key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        os.replace(scratch, path)
        return key

    @classmethod
    def read(cls, path: Path) -> SigningKey:
        """The key a `mesh up` made in `path`, never a new one.

        Raises:
            CredentialsError: there is none, or it is no EC private key.
        """
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise CredentialsError(
                f"no token signing key at {path}: run `mesh up` once with this state folder (it creates "
                "the key), or pass --state-dir of the mesh whose key should sign"
            ) from None
        except ValueError as error:
            raise CredentialsError(f"{path} is no PEM private key: {error}") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise CredentialsError(f"{path} holds no EC P-256 key; move it away and run `mesh up` to make one")
        return cls(loaded)

    @property
    def kid(self) -> str:
        return key_id(self.private_key.public_key())

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key's JWK thumbprint (RFC 7638), the `kid` of the tokens it signs."""
    jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    canonical = json.dumps({name: jwk[name] for name in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def issue(
    key: SigningKey,
    tenant: str,
    company: str = "",
    roles: Sequence[str] = (),
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    subject: str = "",
) -> str:
    """A token for `tenant`, signed by the mesh's key.

    Args:
        key: The mesh's signing key.
        tenant: The tenant the bearer acts for.
        company: The company within the tenant, if any.
        roles: The bearer's application roles.
        ttl_seconds: How long the token is valid; negative makes an expired one (tests).
        subject: Who the bearer is (`sub`).

    Returns:
        The compact JWT.
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + int(ttl_seconds),
        "tenant": tenant,
    }
    if company:
        claims["company"] = company
    if roles:
        claims["roles"] = list(roles)
    if subject:
        claims["sub"] = subject
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


# --- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationKey:
    """One key the mesh accepts tokens of, with the algorithm and issuer they must carry."""

    kid: str
    key: Any
    algorithm: str
    issuer: str


def keys_from_pem(data: bytes) -> list[VerificationKey]:
    """The mesh's public keys from a PEM file of one or more EC public keys."""
    keys = []
    for block in data.split(b"-----END PUBLIC KEY-----")[:-1]:
        public = serialization.load_pem_public_key(block + b"-----END PUBLIC KEY-----\n")
        if isinstance(public, ec.EllipticCurvePublicKey):
            keys.append(VerificationKey(key_id(public), public, ALGORITHM, ISSUER))
    return keys


def keys_from_jwks(text: str, issuer: str) -> list[VerificationKey]:
    """An external issuer's signing keys from its JWKS document (keys without `kid` are skipped:
    tokens name their key)."""
    return [
        VerificationKey(str(jwk.key_id), jwk.key, str(jwk.algorithm_name), issuer)
        for jwk in jwt.PyJWKSet.from_json(text).keys
        if jwk.key_id and jwk.public_key_use in (None, "sig")
    ]


def verify(token: str, keys: Sequence[VerificationKey]) -> TenantClaims:
    """The claims of `token` once its signature, audience, issuer and expiry check out.

    Raises:
        MeshError: UNAUTHENTICATED, saying what is wrong (malformed, wrong signature, expired,
            not for this mesh, no tenant) and how to get a token.
    """
    return _decode(token, keys)[0]


def _decode(token: str, keys: Sequence[VerificationKey]) -> tuple[TenantClaims, float]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.DecodeError as error:
        raise _refused("malformed", f"the bearer token is malformed ({error})") from None
    if not keys:
        raise _refused("no-keys", "the bearer token cannot be verified: this module has no token keys")
    candidates = [key for key in keys if key.kid == kid] or list(keys)
    for key in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=AUDIENCE,
                issuer=key.issuer,
                options={"require": ["exp", "aud", "iss"]},
            )
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.InvalidKeyError):
            continue
        except jwt.ExpiredSignatureError:
            raise _refused("expired", "the bearer token has expired") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise _refused(
                "audience", f"the bearer token is not for this mesh (aud must be {AUDIENCE!r}, iss {key.issuer!r})"
            ) from None
        except jwt.MissingRequiredClaimError as error:
            raise _refused("malformed", f"the bearer token lacks the claim {error.claim!r}") from None
        except jwt.PyJWTError as error:
            raise _refused("malformed", f"the bearer token is malformed ({error})") from None
        return _tenant_claims(claims), float(claims["exp"])
    raise _refused("signature", "the bearer token is not signed by a key this mesh trusts")


def _tenant_claims(claims: Mapping[str, Any]) -> TenantClaims:
    tenant, company, roles = claims.get("tenant"), claims.get("company", ""), claims.get("roles", [])
    if not isinstance(tenant, str) or not tenant:
        raise _refused("tenant", "the bearer token names no tenant (claim 'tenant')")
    if not isinstance(company, str) or not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise _refused("malformed", "the bearer token's 'company' must be a string and 'roles' a list of strings")
    return TenantClaims(tenant, company, tuple(roles), str(claims.get("sub", "")))


def _refused(problem: str, message: str) -> MeshError:
    return MeshError("UNAUTHENTICATED", f"{message}; {HOW_TO_GET}", metadata={"token": problem})


def bearer_token(authorization: str) -> str:
    """The token of an `authorization: Bearer <jwt>` metadata value.

    Raises:
        MeshError: UNAUTHENTICATED when the value is no bearer token.
    """
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refused("malformed", "the authorization metadata must be 'Bearer <token>'")
    return token.strip()


class TokenVerifier:
    """Verifies tokens with the keys in a module's files, read again when a file changes, and
    remembers verified tokens until they expire (one signature check per token, not per call).

    Args:
        pem_file: The mesh's public keys (token-keys.pem), if any.
        jwks_file: An external issuer's JWKS document, if any.
        jwks_issuer: The `iss` that issuer's tokens carry.
    """

    _REMEMBERED = 1024
    _KEYS_CHECKED_EVERY_SECONDS = 1.0
    """How stale the key files may be for a token verified before: a removed key stops
    honouring its tokens within this (new tokens always see the files as they are)."""

    def __init__(self, pem_file: Path | None, jwks_file: Path | None = None, *, jwks_issuer: str = ISSUER) -> None:
        self._pem_file = pem_file
        self._jwks_file = jwks_file
        self._jwks_issuer = jwks_issuer
        self._keys: list[VerificationKey] = []
        self._read_as: tuple[Any, ...] = ()
        self._verified: dict[str, tuple[TenantClaims, float]] = {}
        self._keys_checked_at = -math.inf

    @classmethod
    def for_module(cls, tls_dir: Path | None, env: Mapping[str, str]) -> TokenVerifier:
        """The verifier of a module: token-keys.pem in its credentials folder, MESH_TOKEN_JWKS."""
        return cls.with_keys(tls_dir / VERIFICATION_KEYS_FILE if tls_dir else None, env)

    @classmethod
    def with_keys(cls, pem_file: Path | None, env: Mapping[str, str]) -> TokenVerifier:
        """A verifier of the mesh's public keys in `pem_file` (if any) and of an external
        issuer's JWKS when MESH_TOKEN_JWKS names one (its `iss`: MESH_TOKEN_ISSUER)."""
        jwks = env.get(JWKS_ENV, "")
        return cls(pem_file, Path(jwks) if jwks else None, jwks_issuer=env.get(ISSUER_ENV, "") or ISSUER)

    def verify(self, token: str) -> TenantClaims:
        """See `verify`; the same errors.

        A token verified before is answered from memory until it expires (its signature is
        the costly part), the key files looked at once a second at most (a stat each); any
        other token is checked against the files as they are now.
        """
        now = time.monotonic()
        if now - self._keys_checked_at >= self._KEYS_CHECKED_EVERY_SECONDS:
            self._keys_now()
        remembered = self._verified.get(token)
        if remembered is not None and remembered[1] > time.time():
            return remembered[0]
        claims, expires = _decode(token, self._keys_now())
        if len(self._verified) >= self._REMEMBERED:
            self._verified.clear()
        self._verified[token] = (claims, expires)
        return claims

    def honoured_until(self, token: str) -> float:
        """When `token`, verified before, expires (time.time() seconds); -inf for a token not
        verified, or forgotten since (its key files changed)."""
        remembered = self._verified.get(token)
        return remembered[1] if remembered is not None else -math.inf

    def _keys_now(self) -> list[VerificationKey]:
        self._keys_checked_at = time.monotonic()
        files = (self._pem_file, self._jwks_file)
        read_as = tuple(_version(path) for path in files)
        if read_as != self._read_as:
            self._keys = [*_read(self._pem_file, keys_from_pem), *_read(self._jwks_file, self._jwks_keys)]
            self._read_as = read_as
            self._verified.clear()
        return self._keys

    def _jwks_keys(self, data: bytes) -> list[VerificationKey]:
        return keys_from_jwks(data.decode(), self._jwks_issuer)


def _version(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _read(path: Path | None, parse: Callable[[bytes], list[VerificationKey]]) -> Iterable[VerificationKey]:
    if path is None or not path.exists():
        return []
    try:
        keys = parse(path.read_bytes())
    except (OSError, ValueError, jwt.PyJWTError) as error:
        raise MeshError(
            "INVALID_CONFIG", f"the token keys in {path} cannot be read: {error}", metadata={"file": str(path)}
        ) from None
    return keys
