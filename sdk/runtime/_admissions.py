"""The calls a module server's gate let through lately, remembered for a second, so that the
next call of the same caller for the same tenant is let through on one dictionary lookup
instead of proving its tenant and checking the tenancy view again.

Why: the gate runs on every call of a module's own services, and under load its few dozen
Python operations cost far more than they do in a loop (the interpreter's caches are cold
after grpc's C core handled the call): 13-16 µs a call of about 215 µs of server CPU,
measured inside the gate with mTLS and tokens on (bench/rpc.py). Remembering the admission
leaves a lookup and three comparisons, and took the secured module's server CPU per call from
224 to 212 µs (four fresh sets of server processes, against 190 µs for the bare mTLS server).

What an admission depends on, and what ends it:

* the call's x-tenant-id and authorization metadata: they are the key;
* the caller's certificate: an admission it decided (a mesh process claiming a tenant without
  a token that proves it) is not remembered;
* the token: an admission holds no longer than the token is honoured (its `exp`, and the key
  files, which the verifier reads again at most once a second): at most REMEMBER_SECONDS;
* the tenancy view (the tenant enabled, the method's flag on): an admission holds while the
  module has the same view and the view has not changed since (`TenantView.changes`);
* the module's state: checked on every call before the admissions are asked.

Refusals are never remembered: a caller refused is told why on every call, and a flood of bad
tokens cannot push the good admissions out.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from mesh.protocol.errors import MeshError
from mesh.protocol.tokens import TokenVerifier, bearer_token
from sdk._tenancy import CallTenant

REMEMBER_SECONDS = 1.0
"""The longest an admission is remembered: as long as the token verifier trusts its key files
unread, so that a removed key stops honouring its tokens no later than it does without."""

REMEMBERED = 1024
"""How many (tenant, authorization) pairs are remembered at most; all are forgotten when full."""

TenantMetadata = tuple[str, str]
"""A call's (x-tenant-id, authorization) metadata; "" for either one missing."""


@dataclass(frozen=True, slots=True)
class _Admission:
    call: CallTenant
    view: Any
    changes: int
    until: float


class Admissions:
    """The admissions of one method's gate (what a call needs besides its tenant, the
    method's rule and flag, is the same for every call of the method)."""

    def __init__(self) -> None:
        self._admitted: dict[TenantMetadata, _Admission] = {}

    def admitted(self, metadata: TenantMetadata, view: Any) -> CallTenant | None:
        """The tenant of a call with this metadata, when such a call was let through lately and
        nothing it depended on changed since; None: work it out again.

        Args:
            metadata: The call's (x-tenant-id, authorization).
            view: The module's tenant view now (None without one); it must have a `changes` count.
        """
        admission = self._admitted.get(metadata)
        if admission is None or admission.view is not view or time.time() >= admission.until:
            return None
        if view is not None and view.changes != admission.changes:
            return None
        return admission.call

    def remember(self, metadata: TenantMetadata, call: CallTenant, view: Any, tokens: TokenVerifier | None) -> None:
        """Remember that a call with this metadata was let through as `call` under `view`,
        unless the caller's certificate decided its tenant."""
        now = time.time()
        until = min(_proven_until(metadata, tokens), now + REMEMBER_SECONDS)
        if until <= now:
            return
        if len(self._admitted) >= REMEMBERED:
            self._admitted.clear()
        self._admitted[metadata] = _Admission(call, view, view.changes if view is not None else 0, until)


def _proven_until(metadata: TenantMetadata, tokens: TokenVerifier | None) -> float:
    """Until when the metadata alone proves the call's tenant (the same call from another
    caller would get the same tenant); -inf when the caller's certificate had a say."""
    claimed, authorization = metadata
    if tokens is None or not (claimed or authorization):
        return math.inf  # plaintext takes x-tenant-id as sent; no tenant needs no proof
    if not (claimed and authorization):
        return -math.inf  # a claim alone, or a token alone: the answer depends on who calls
    try:
        token = bearer_token(authorization)
        proves = tokens.verify(token).tenant == claimed  # remembered by the verifier: a lookup
    except MeshError:
        return -math.inf
    return tokens.honoured_until(token) if proves else -math.inf
