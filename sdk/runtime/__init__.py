"""Serving one module: the runtime that drives its lifecycle and owns its connections
(`_runtime`, `_resources`), the mesh.v1.Lifecycle servicer (`_lifecycle`), the gate in
front of every handler that counts calls and guards tenants (`_gating`), and the gRPC server that puts them
together with health and reflection (`_server`). Used by `sdk.run` and `sdk.testing`;
authors never import it."""

from sdk.runtime._config import validated_config
from sdk.runtime._origin import code_location, located
from sdk.runtime._runtime import ModuleRuntime
from sdk.runtime._server import ModuleServer

__all__ = ["ModuleRuntime", "ModuleServer", "code_location", "located", "validated_config"]
