"""What `mesh call` knows of a module's methods: the one a command line names, with its request
and response types, read from the module's gRPC server reflection (`mesh.protocol.reflection`)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mesh.cli._common import EXIT_USAGE, CliError
from mesh.protocol.reflection import MESH_SERVICES, REFLECTION_ERRORS, ReflectedMethod, served_methods, status_line

T = TypeVar("T")


def resolve(channel: grpc.Channel, module: str, method: str) -> ReflectedMethod:
    """The method `method` names among the services the module serves, found by reflection.

    Only the services needed are built: a module whose reflection cannot describe one of its
    services (a file that uses types without importing their file) still serves the others.

    Args:
        channel: A connected channel to the module.
        module: The module's name, for messages.
        method: "pkg.Service/Method", "pkg.Service.Method", or a method name one service has.

    Returns:
        The method and its message classes.

    Raises:
        CliError: reflection fails (exit 1), or no served method or more than one matches (exit 2).
    """
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    served: list[str] = _reflected(module, database.get_services)
    named = _service_named(method, served)
    methods, broken = served_methods(pool, [named] if named else served)
    matches = [found for name, found in methods.items() if method in (name, found.full_name, found.name)]
    if len(matches) > 1:
        names = " and ".join(f"{m.containing_service.full_name}/{m.name}" for m in matches)
        raise CliError(f"module {module} serves {method} in more than one service ({names}): name one", EXIT_USAGE)
    if not matches:
        if named in broken:
            raise CliError(f"module {module}'s server reflection cannot describe {named}: {broken[named]}")
        every, broken = served_methods(pool, served)
        unreadable = f" (its reflection cannot describe {', '.join(broken)})" if broken else ""
        raise CliError(f"module {module} has no method {method}{_did_you_mean(method, every)}{unreadable}", EXIT_USAGE)
    (found,) = matches
    return _reflected(module, lambda: ReflectedMethod.of(found))


def _service_named(method: str, served: list[str]) -> str | None:
    """The served service `method` names (pkg.Service/Method or pkg.Service.Method), if any."""
    service = method.rpartition("/")[0] if "/" in method else method.rpartition(".")[0]
    return service if service in served else None


def _did_you_mean(method: str, methods: dict[str, MethodDescriptor]) -> str:
    """A near miss among the methods' full and bare names, else the list of the module's own."""
    bare = method.replace(".", "/").rpartition("/")[2]
    names = {name: name for name in methods} | {found.name: name for name, found in methods.items()}
    close = difflib.get_close_matches(method, names, n=1) or difflib.get_close_matches(bare, names, n=1)
    if close:
        return f"; did you mean {names[close[0]]}?"
    own = sorted(name for name in methods if not name.startswith(MESH_SERVICES))
    return f"; it serves {', '.join(own)}" if own else ""


def _reflected(module: str, read: Callable[[], T]) -> T:
    """`read` from the module's reflection; what goes wrong there becomes one line (exit 1)."""
    try:
        return read()
    except grpc.RpcError as error:
        raise CliError(f"module {module}'s server reflection failed: {status_line(error)}") from None
    except REFLECTION_ERRORS as error:
        raise CliError(f"module {module}'s server reflection is incomplete: {error}") from None
