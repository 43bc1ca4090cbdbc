"""The NATS permissions a modules folder will need, before it runs: for an operator who
provisions the users of an external NATS (`mesh nats permissions` without a running mesh).
Loads the Python modules' code (through the SDK) to find their handlers' consumers."""

from __future__ import annotations

from collections.abc import Mapping

from mesh.control.discovery import DiscoveredModule
from mesh.control.nats_identities import grant_of
from mesh.protocol.nats_access import ModuleGrant
from mesh.v1 import lifecycle_pb2
from sdk import event_consumers, handler_bindings, load_module


def planned_grants(modules: Mapping[str, DiscoveredModule]) -> tuple[dict[str, ModuleGrant], list[str]]:
    """The grants of a modules folder before it runs: manifests, and the durable consumers of
    each Python module's handlers (a module in another language names its consumers when it
    is described, so its grant here lacks them: a warning says so)."""
    grants: dict[str, ModuleGrant] = {}
    warnings: list[str] = []
    for name, module in sorted(modules.items()):
        consumers: list[lifecycle_pb2.EventConsumer] = []
        if module.manifest.run.entry is None:
            if module.manifest.events.subscribes:
                warnings.append(
                    f"module {name} is not Python: its consumers are known once it runs; start the mesh "
                    "(mesh up) and run this again for them"
                )
        else:
            try:
                consumers = event_consumers(name, handler_bindings(load_module(module.directory).module_class))
            except Exception as error:  # one broken module must not hide the others' permissions
                warnings.append(f"module {name}: cannot load its code to find its consumers: {error}")
        grants[name] = grant_of(module.manifest, consumers)
    return grants, warnings
