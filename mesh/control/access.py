"""Who may call what on the coordinator: the rules as data, and the one interceptor that
applies them to every call before any servicer runs.

Reading the mesh is for viewers, changing what runs is for operators, ending the mesh or
removing a module is for admins; RegisterModule is for a module's own certificate (the
servicer also checks that the certificate names the module it registers). The coordinator's
own identity counts as admin. Without TLS (`--insecure`) there are no identities and the
interceptor is not installed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from mesh.protocol.errors import MeshError
from mesh.protocol.guarded_handlers import guarded_handler
from mesh.protocol.identity import Identity, Kind, ModuleSelf, Role, Rule, Rules, identity_of, refusal

_COORDINATOR = "/mesh.v1.Coordinator/"
_TENANCY = "/mesh.v1.Tenancy/"
_EVENTS = "/mesh.v1.Events/"

COORDINATOR_RULES: Rules = {
    f"{_COORDINATOR}ListModules": Role.VIEWER,
    f"{_COORDINATOR}GetModule": Role.VIEWER,
    f"{_COORDINATOR}GetSystemHealth": Role.VIEWER,
    f"{_COORDINATOR}GetSystemMetrics": Role.VIEWER,
    f"{_COORDINATOR}GetGraph": Role.VIEWER,
    f"{_COORDINATOR}WatchModules": Role.VIEWER,
    f"{_COORDINATOR}ReloadModule": Role.OPERATOR,
    f"{_COORDINATOR}RestartModule": Role.OPERATOR,
    f"{_COORDINATOR}RegisterModule": ModuleSelf.MODULE,
    f"{_COORDINATOR}DeregisterModule": Role.ADMIN,
    f"{_COORDINATOR}Shutdown": Role.ADMIN,
    f"{_EVENTS}ListDeadLetters": Role.VIEWER,
    f"{_EVENTS}Publish": Role.OPERATOR,
    f"{_EVENTS}ReplayDeadLetter": Role.OPERATOR,
    f"{_TENANCY}ListTenantModules": Role.VIEWER,
    f"{_TENANCY}GetFeatureFlags": Role.VIEWER,
    f"{_TENANCY}GetConfig": Role.VIEWER,
    f"{_TENANCY}GetEffectiveConfig": Role.VIEWER,
    f"{_TENANCY}EnableModule": Role.OPERATOR,
    f"{_TENANCY}DisableModule": Role.OPERATOR,
    f"{_TENANCY}SetFeatureFlag": Role.OPERATOR,
    f"{_TENANCY}SetConfig": Role.OPERATOR,
    f"/{health.SERVICE_NAME}/": Role.VIEWER,
    f"/{reflection.SERVICE_NAME}/": Role.VIEWER,
}
"""Full method name or service prefix -> who may call it."""

DEFAULT_RULE: Rule = Role.ADMIN
"""A method the rules do not name (a service added later) is for admins until it is named."""


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs: generic, runtime: not
    """Refuses a call whose certificate's identity the rules do not allow: UNAUTHENTICATED
    without one, PERMISSION_DENIED (reason ACCESS_DENIED) otherwise, with ErrorInfo."""

    def __init__(self, rules: Rules = COORDINATOR_RULES, default: Rule = DEFAULT_RULE) -> None:
        self._rules = rules
        self._default = default

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        return guarded_handler(
            handler, lambda context: refusal(identity_of(context), method, self._rules, self._default)
        )


def may_register(identity: Identity | None, module: str) -> MeshError | None:
    """Why `identity` may not register module `module`, or None when it may: a module's
    certificate registers only the module it names (an admin may register any)."""
    if identity is None or identity.effective_role is Role.ADMIN:
        return None
    if identity.kind is Kind.MODULE and identity.name == module:
        return None
    return MeshError(
        "ACCESS_DENIED",
        f"{identity} may not register module '{module}': a module registers with its own certificate (module:{module})",
        metadata={"module": module, "identity": identity.common_name},
    )
