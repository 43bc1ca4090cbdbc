"""The module class an author subclasses. The health verdict its hook returns lives in
`sdk._health` (re-exported here, where the runtime has always found it)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from sdk._health import ComponentHealth as ComponentHealth
from sdk._health import Health as Health
from sdk._health import HealthStatus as HealthStatus

if TYPE_CHECKING:
    from sdk._context import Context

T = TypeVar("T")


class NoConfig(BaseModel):
    """The configuration of a module that takes none: any key given is an error."""

    model_config = ConfigDict(extra="forbid")


class Module:
    """Base class of a module: subclass it, and the generated servicers of your own API.

    A module reads top to bottom like a description of itself: its config model, its
    lifecycle hooks, its gRPC methods. Every hook is optional.

        class Greeter(sdk.Module, greeter_pb2_grpc.GreeterServicer):
            config_model = GreeterConfig

            async def initialize(self, ctx: sdk.Context[GreeterConfig]) -> None:
                self.greeting = ctx.config.greeting

            async def SayHello(self, request, context):
                return greeter_pb2.SayHelloResponse(message=f"{self.greeting}, {request.name}!")

    The SDK serves every generated `...Servicer` class the module inherits from.
    """

    config_model: ClassVar[type[BaseModel]] = NoConfig
    """The pydantic model of the module's configuration; validated at Initialize."""

    event_models: ClassVar[Mapping[str, type]] = {}
    """The payload type of each event type the module publishes, e.g. {"order.created":
    OrderCreated}: publishing checks payloads against it, and `mesh events` reads the JSON
    Schemas from it."""

    async def initialize(self, ctx: Context[Any]) -> None:
        """Prepare the module: open storage, build clients to dependencies. Runs at
        Initialize and again at Reload with a new context."""

    async def start(self) -> None:
        """Begin work: the module takes requests and events once this returns."""

    async def stop(self) -> None:
        """Release what initialize and start took. Background tasks are cancelled after
        this returns (or when the grace period ends)."""

    async def health(self) -> Health:
        """Check the module's parts; called by GetHealth and periodically while RUNNING."""
        return Health()

    async def on_tenant_enabled(self, tenant: str) -> None:
        """The module was enabled for `tenant` (e.g. create the tenant's default data).

        Runs in every running replica, once per change it observes, from the moment the
        module is initialized; tenants enabled before that are in `ctx.tenants.enabled_tenants()`.
        """

    async def on_tenant_disabled(self, tenant: str) -> None:
        """The module was disabled for `tenant`; same semantics as `on_tenant_enabled`."""


def requires_flag(flag: str) -> Callable[[T], T]:
    """Guard one gRPC method by a feature flag: a call whose tenant (x-tenant-id) has the
    flag off fails with PERMISSION_DENIED, reason FEATURE_DISABLED. The method is returned
    unchanged."""

    def register(method: T) -> T:
        method.__mesh_required_flag__ = flag  # type: ignore[attr-defined]
        return method

    return register


def required_flags(module_class: type, services: list[ServedService]) -> dict[str, str]:
    """Full method name ("/pkg.Service/Method") -> the flag it requires."""
    flags = {}
    for service in services:
        for name in dir(module_class):
            flag = getattr(getattr(module_class, name, None), "__mesh_required_flag__", None)
            if flag and hasattr(service.servicer_class, name):
                flags[f"/{service.full_name}/{name}"] = flag
    return flags


@dataclass(frozen=True)
class ServedService:
    """One generated gRPC service a module class serves."""

    full_name: str
    servicer_class: type
    register: Any  # the generated add_<Name>Servicer_to_server function


def served_services(module_class: type[Any]) -> list[ServedService]:
    """The generated servicers `module_class` inherits, with their registration functions.

    Any class will do, not only a Module: test stand-ins are bare servicers.

    A generated servicer `FooServicer` lives in a `*_pb2_grpc` module beside
    `add_FooServicer_to_server`; its service's full name comes from the descriptor of
    the `*_pb2` module that the grpc module imports.
    """
    served: list[ServedService] = []
    for base in module_class.__mro__:
        grpc_module = sys.modules.get(base.__module__)
        register = getattr(grpc_module, f"add_{base.__name__}_to_server", None)
        if grpc_module is None or register is None or not base.__name__.endswith("Servicer"):
            continue
        short_name = base.__name__.removesuffix("Servicer")
        full_name = _service_full_name(grpc_module, short_name)
        if full_name is not None:
            served.append(ServedService(full_name, base, register))
    return served


def _service_full_name(grpc_module: ModuleType, short_name: str) -> str | None:
    for value in vars(grpc_module).values():
        descriptor = getattr(value, "DESCRIPTOR", None)
        services = getattr(descriptor, "services_by_name", None)
        if isinstance(value, ModuleType) and services and short_name in services:
            return str(services[short_name].full_name)
    return None
