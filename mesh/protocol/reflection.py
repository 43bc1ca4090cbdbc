"""What a process serves, read from its gRPC server reflection: its services, their methods and
their message types, so that a caller needs no .proto file (`mesh call`, the gateway); and how
a failed call is spelled in one line, the way grpcurl spells it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from mesh.protocol.errors import error_info

REFLECTION_ERRORS = (KeyError, TypeError, AssertionError)
"""What grpcio-reflection raises besides an RpcError. KeyError: a file or symbol reflection
does not know; TypeError: a descriptor that does not build; AssertionError: grpcio-reflection's
check of an unexpected error response."""

MESH_SERVICES = ("grpc.", "mesh.v1.")
"""The services every mesh process serves beside its own (health, reflection, Lifecycle)."""

_GO_SPELLING = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}
"""The codes whose Go names are not their camel-cased Python names."""


@dataclass(frozen=True)
class ReflectedMethod:
    """A method a process serves, and the classes of its request and response."""

    method: MethodDescriptor
    request_class: type[Message]
    response_class: type[Message]

    @classmethod
    def of(cls, method: MethodDescriptor) -> ReflectedMethod:
        """The method with its message classes built (REFLECTION_ERRORS when they do not build)."""
        return cls(
            method,
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
        )

    @property
    def path(self) -> str:
        """The method's path on the wire, "/pkg.Service/Method"."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def unary(self) -> bool:
        """One request, one response."""
        return not (self.method.client_streaming or self.method.server_streaming)


def served_methods(
    pool: descriptor_pool.DescriptorPool, services: list[str]
) -> tuple[dict[str, MethodDescriptor], dict[str, str]]:
    """The methods of each service reflection describes, by "pkg.Service/Method"; and, for each
    service it cannot describe, what went wrong (a module whose reflection cannot describe one
    of its services still serves the others).

    Args:
        pool: A descriptor pool over the process's reflection.
        services: The full names of the services to read.
    """
    methods: dict[str, MethodDescriptor] = {}
    broken = {}
    for name in services:
        try:
            service: ServiceDescriptor = pool.FindServiceByName(name)
        except grpc.RpcError as error:
            broken[name] = status_line(error)
            continue
        except REFLECTION_ERRORS as error:
            broken[name] = str(error)
            continue
        methods |= {f"{name}/{method_name}": found for method_name, found in service.methods_by_name.items()}
    return methods, broken


def status_line(error: grpc.RpcError) -> str:
    """A failed call in one line: grpcurl's name of its code, its message, the mesh's reason."""
    info = error_info(error)
    return f"{go_name(error.code())}: {error.details()}" + (f" [{info.reason}]" if info else "")


def go_name(code: grpc.StatusCode) -> str:
    """The code as grpcurl (Go) spells it: NOT_FOUND is NotFound, CANCELLED is Canceled."""
    return _GO_SPELLING.get(code) or "".join(part.capitalize() for part in code.name.split("_"))
