"""The Module Mesh SDK: write a module as a class with lifecycle hooks and its own gRPC
servicers; the SDK serves it with the mesh.v1 lifecycle, standard health, reflection
and metrics.

Serving: `python -m sdk.run modules/<name>`. Testing: `sdk.testing.ModuleHarness`.
The names below are the SDK's public surface; the wire contract they build on (errors,
manifests, states, subjects) lives in `mesh.protocol`, shared with the control plane.
"""

from mesh.protocol.errors import ERROR_DOMAIN, MeshError, error_info
from mesh.protocol.manifest import Manifest, ManifestError
from mesh.protocol.states import State
from sdk._context import Context
from sdk._health import ComponentHealth, Health, HealthStatus
from sdk._loader import LoadedModule, ModuleLoadError, load_module
from sdk._metrics import Counter
from sdk._module import Module, NoConfig, requires_flag
from sdk._storage import Database, Transaction
from sdk._tenancy import ModuleCache, TenantView, tenant_metadata, tenant_of
from sdk.events import (
    Drop,
    Durable,
    Ephemeral,
    Event,
    HandlerBinding,
    Retry,
    current_event,
    event_consumers,
    handler_bindings,
    on,
)

__all__ = [
    # writing a module
    "ComponentHealth",
    "Context",
    "Counter",
    "Health",
    "HealthStatus",
    "Module",
    "NoConfig",
    "State",
    "Database",
    "Transaction",
    # tenancy
    "ModuleCache",
    "TenantView",
    "requires_flag",
    "tenant_metadata",
    "tenant_of",
    # events
    "Drop",
    "Durable",
    "Ephemeral",
    "Event",
    "Retry",
    "current_event",
    "on",
    # errors
    "ERROR_DOMAIN",
    "MeshError",
    "error_info",
    # the module's manifest (ctx.manifest), and what tools read of a module's code
    "HandlerBinding",
    "LoadedModule",
    "Manifest",
    "ManifestError",
    "ModuleLoadError",
    "event_consumers",
    "handler_bindings",
    "load_module",
]
