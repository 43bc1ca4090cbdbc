"""A module's routes: the methods of its own services, with their message classes, read from
the module's gRPC server reflection. No .proto file of any module is needed by the gateway,
so a module installed or upgraded while it runs is routable as soon as it serves."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mesh.gateway.rest import RestRoute, RouteRejected, rest_routes
from mesh.protocol.reflection import MESH_SERVICES, REFLECTION_ERRORS, ReflectedMethod, served_methods, status_line


class ReflectionFailed(Exception):
    """The module's server reflection could not be read: what went wrong, in one line."""


Route = ReflectedMethod
"""One method of a module, with the classes of its request and response."""


@dataclass(frozen=True)
class ModuleRoutes:
    """The routes of one module as it serves at one address.

    Attributes:
        module: The module's name.
        address: Where it serves ("host:port").
        routes: By the names a URL may use: the method's own name ("PlaceOrder") when one
            service of the module has it, and always its full name ("orders.v1.Orders.PlaceOrder").
        unreadable: The services reflection could not describe, with what went wrong.
        rest: The REST routes of the methods' google.api.http annotations (mesh.gateway.rest).
        rejected: The annotations left out, by method, with why.
    """

    module: str
    address: str
    routes: dict[str, Route] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    rest: list[RestRoute] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)

    def named(self) -> list[str]:
        """The names to show a caller who asked for a method that does not exist: each
        method's shortest name that finds it."""
        shortest: dict[str, str] = {}
        for name, route in self.routes.items():
            known = shortest.get(route.path)
            if known is None or len(name) < len(known):
                shortest[route.path] = name
        return sorted(shortest.values())


def read_routes(channel: grpc.Channel, module: str, address: str) -> ModuleRoutes:
    """The routes of the module `channel` reaches (blocking: grpcio-reflection's client is).

    Raises:
        ReflectionFailed: the module's reflection answers nothing usable.
    """
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    try:
        services = [name for name in database.get_services() if not name.startswith(MESH_SERVICES)]
    except grpc.RpcError as error:
        raise ReflectionFailed(f"module {module}'s server reflection failed: {status_line(error)}") from None
    except REFLECTION_ERRORS as error:
        raise ReflectionFailed(f"module {module}'s server reflection is incomplete: {error}") from None
    methods, unreadable = served_methods(pool, services)
    routes: dict[str, Route] = {}
    bare: dict[str, list[Route]] = {}
    rest: list[RestRoute] = []
    rejected: dict[str, str] = {}
    for full_name, method in methods.items():
        try:
            route = ReflectedMethod.of(method)
        except REFLECTION_ERRORS as error:
            unreadable[full_name] = str(error)
            continue
        routes[full_name.replace("/", ".")] = route
        bare.setdefault(method.name, []).append(route)
        try:
            rest.extend(rest_routes(module, route))
        except RouteRejected as error:
            rejected[full_name] = str(error)
    for name, found in bare.items():
        if len(found) == 1:  # a name two services share is reached by its full name only
            routes[name] = found[0]
    return ModuleRoutes(module, address, routes, unreadable, rest, rejected)
