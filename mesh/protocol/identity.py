"""Who is calling: the identity a mesh certificate names, and the rules (as data) of what
each identity may call.

A certificate's common name is the identity:

    mesh-coordinator              the coordinator (it alone drives modules' Lifecycle)
    module:<name>                 a module process
    operator:<role>:<name>        a person or tool, with role viewer, operator or admin

One interceptor on every server reads it from the TLS session and checks the call against
the rules of that server; a call without a certificate never reaches a servicer.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.protocol.errors import MeshError

COORDINATOR_NAME = "mesh-coordinator"


class Role(enum.IntEnum):
    """An operator's role; each includes what the ones below it may do."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


class Kind(enum.Enum):
    COORDINATOR = "coordinator"
    MODULE = "module"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Identity:
    """A caller proven by its certificate."""

    kind: Kind
    name: str
    role: Role | None = None

    @property
    def common_name(self) -> str:
        if self.kind is Kind.COORDINATOR:
            return COORDINATOR_NAME
        if self.kind is Kind.MODULE:
            return f"module:{self.name}"
        assert self.role is not None
        return f"operator:{self.role.name.lower()}:{self.name}"

    @property
    def effective_role(self) -> Role | None:
        """The role for control-plane calls: the coordinator acts as admin, modules have none."""
        return Role.ADMIN if self.kind is Kind.COORDINATOR else self.role

    def __str__(self) -> str:
        return self.common_name

    @classmethod
    def parse(cls, common_name: str) -> Identity | None:
        """The identity a common name states, or None when it states none of ours."""
        if common_name == COORDINATOR_NAME:
            return COORDINATOR
        kind, _, rest = common_name.partition(":")
        if kind == Kind.MODULE.value and rest:
            return cls(Kind.MODULE, rest)
        if kind == Kind.OPERATOR.value:
            role_name, _, name = rest.partition(":")
            role = Role.__members__.get(role_name.upper())
            if role is not None and name:
                return cls(Kind.OPERATOR, name, role)
        return None


COORDINATOR = Identity(Kind.COORDINATOR, COORDINATOR_NAME)


def module_identity(name: str) -> Identity:
    return Identity(Kind.MODULE, name)


def operator_identity(name: str, role: Role) -> Identity:
    return Identity(Kind.OPERATOR, name, role)


def identity_of(context: Any) -> Identity | None:
    """The identity of a gRPC call's peer (grpc or grpc.aio ServicerContext), None without one."""
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name") or []
    if not names:
        return None
    return _identity_named(names[0])


@functools.lru_cache(maxsize=4096)
def _identity_named(name: bytes | str) -> Identity | None:
    """Identity.parse of a certificate's common name, once per name (asked on every call)."""
    return Identity.parse(name.decode() if isinstance(name, bytes) else str(name))


# --- rules ------------------------------------------------------------------------------


class Anyone(enum.Enum):
    """Any caller with a mesh certificate (health, reflection, a module's own API)."""

    AUTHENTICATED = "any mesh identity"


class CoordinatorOnly(enum.Enum):
    """Only the coordinator's certificate (a module's Lifecycle)."""

    COORDINATOR = "the coordinator"


class ModuleSelf(enum.Enum):
    """A module's own certificate (the servicer checks the name), or an admin."""

    MODULE = "the module itself (or an admin)"


Rule = Role | Anyone | CoordinatorOnly | ModuleSelf
Rules = Mapping[str, Rule]
"""Full method name ("/pkg.Service/Method") or service prefix ("/pkg.Service/") -> rule."""


def rule_for(rules: Rules, method: str) -> Rule | None:
    """The rule of `method`: its own, else its service's; None when the rules do not know it."""
    found = rules.get(method)
    if found is None:
        found = rules.get(method[: method.rfind("/") + 1])
    return found


def refusal(identity: Identity | None, method: str, rules: Rules, default: Rule) -> MeshError | None:
    """Why `identity` may not call `method` under `rules`, or None when it may.

    Returns:
        UNAUTHENTICATED without an identity; ACCESS_DENIED naming what the call needs.
    """
    if identity is None:
        return MeshError(
            "UNAUTHENTICATED",
            f"{method} needs a client certificate from the mesh's certificate authority; get one with "
            "`mesh creds issue NAME --role viewer|operator|admin` (grpcurl: `mesh creds grpcurl-flags`)",
            metadata={"method": method},
        )
    rule = rule_for(rules, method) or default
    if _allows(rule, identity):
        return None
    needed = f"the role {rule.name.lower()} or higher" if isinstance(rule, Role) else rule.value
    return MeshError(
        "ACCESS_DENIED",
        f"{identity} may not call {method}: it needs {needed}",
        metadata={"method": method, "identity": identity.common_name},
    )


def _allows(rule: Rule, identity: Identity) -> bool:
    if rule is Anyone.AUTHENTICATED:
        return True
    if rule is CoordinatorOnly.COORDINATOR:
        return identity.kind is Kind.COORDINATOR
    if rule is ModuleSelf.MODULE:
        return identity.kind is Kind.MODULE or identity.effective_role is Role.ADMIN
    role = identity.effective_role
    return role is not None and role >= rule
