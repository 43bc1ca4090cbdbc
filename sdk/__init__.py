"""The Module Mesh SDK: write a module as a class with lifecycle hooks and its own gRPC
servicers; the SDK serves it with the mesh.v1 lifecycle, standard health, reflection
and metrics.

Serving: `python -m sdk.run modules/<name>`. Testing: `sdk.testing.ModuleHarness`.
"""

from sdk._context import Context
from sdk._errors import ERROR_DOMAIN, MeshError, error_info
from sdk._events import Drop, Event, Retry, current_event, on
from sdk._loader import LoadedModule, ModuleLoadError, load_module
from sdk._manifest import (
    MANIFEST_FILE,
    DependencySpec,
    EventsSpec,
    Manifest,
    ManifestError,
    RestartSpec,
    RunSpec,
    load_manifest,
    manifest_from_proto,
    parse_manifest,
)
from sdk._metrics import Counter
from sdk._module import ComponentHealth, Health, HealthStatus, Module, NoConfig, requires_flag
from sdk._state import State
from sdk._storage import Database
from sdk._tenancy import ModuleCache, TenantView, tenant_metadata, tenant_of

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
    # tenancy
    "ModuleCache",
    "TenantView",
    "requires_flag",
    "tenant_metadata",
    "tenant_of",
    # events
    "Drop",
    "Event",
    "Retry",
    "current_event",
    "on",
    # errors
    "ERROR_DOMAIN",
    "MeshError",
    "error_info",
    # manifests and loading
    "MANIFEST_FILE",
    "DependencySpec",
    "EventsSpec",
    "LoadedModule",
    "Manifest",
    "ManifestError",
    "ModuleLoadError",
    "RestartSpec",
    "RunSpec",
    "load_manifest",
    "load_module",
    "manifest_from_proto",
    "parse_manifest",
]
