"""What the API servicers need of the control plane, as an interface.

The servicers depend on this, not on the coordinator that implements it, so the API
layer and the composition root import each other in one direction only, and a servicer
is tested against any object of this shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mesh.control.registry import ModuleRecord, Registry
from mesh.protocol.manifest import Manifest
from mesh.v1 import module_pb2


class MeshOperations(Protocol):
    """The operations behind mesh.v1.Coordinator."""

    @property
    def registry(self) -> Registry:
        """Every module's record, with change notifications (ListModules, WatchModules, health)."""
        ...

    def record_of(self, name: str) -> ModuleRecord:
        """The record of `name`; raises MeshError MODULE_NOT_FOUND."""
        ...

    async def reload_module(self, name: str, extra_config: Mapping[str, Any] | None = None) -> ModuleRecord:
        """Re-initialize one module in place with freshly resolved configuration."""
        ...

    async def restart_module(self, name: str) -> ModuleRecord:
        """Replace one module's process, then initialize and start it."""
        ...

    async def register_module(
        self, address: str, manifest: Manifest, manifest_proto: module_pb2.Manifest, instance_id: str
    ) -> ModuleRecord:
        """Add a module started outside the coordinator."""
        ...

    async def deregister_module(self, name: str, instance_id: str, force: bool) -> ModuleRecord:
        """Remove a registered module."""
        ...

    def request_shutdown(self, reason: str) -> None:
        """Ask the mesh to stop (what `mesh down` does)."""
        ...
