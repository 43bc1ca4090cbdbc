"""A stand-in for a module's dependency: servicers the test gives, served where the real
dependency would be, so a module that declares a dependency is testable without bringing up
that module (and, in turn, everything it depends on).

The module under test dials a stand-in as it dials any dependency: at the address Initialize
names, over mTLS. So the stand-in serves with the dependency's own module certificate, issued
by the harness's authority, on a free loopback port. A method the given servicers do not
override answers UNIMPLEMENTED, as the generated base classes do; with no servicers at all,
every call does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

from mesh.protocol.identity import module_identity
from mesh.protocol.pki import CertificateAuthority
from mesh.protocol.transport import Transport
from sdk._module import served_services


class StandIn:
    """Serves `servicers` in the place of dependency `name`.

    Args:
        name: The dependency's module name, as module.toml's [[dependencies]] gives it.
        servicers: Objects inheriting a generated `...Servicer` class (e.g. a fake of
            `orders_pb2_grpc.OrdersServicer` overriding the methods the module calls).
        authority: The authority that issues the module's certificate too.
    """

    def __init__(self, name: str, servicers: Sequence[object], authority: CertificateAuthority) -> None:
        self.name = name
        self._servicers = list(servicers)
        self._authority = authority
        self._server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self, scratch: Path) -> str:
        """Serve on a free port, with credentials written under `scratch`; returns the address.

        Raises:
            ValueError: A servicer inherits no generated servicer class.
        """
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        for servicer in self._servicers:
            # `served_services` reads only the class's bases, which a fake servicer has like a module.
            services = served_services(type(servicer))
            if not services:
                raise ValueError(
                    f"stand-in for '{self.name}': {type(servicer).__name__} inherits no generated ...Servicer; "
                    "subclass the dependency's, e.g. orders_pb2_grpc.OrdersServicer"
                )
            for service in services:
                service.register(servicer, server)
        credentials = scratch / f"stand-in-{self.name}"
        self._authority.issue(module_identity(self.name).common_name).write(credentials)
        port = Transport(credentials).add_port(server, "127.0.0.1:0")
        await server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        """Stop serving (calls in flight are cut: the module under test has stopped first)."""
        if self._server is not None:
            await self._server.stop(None)
            self._server = None
