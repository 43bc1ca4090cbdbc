"""What a module is told at Initialize and Reload: its configuration, where its dependencies
are, how to reach NATS and the coordinator, telemetry and its state folder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from mesh.control.config import MeshConfig
from mesh.control.nats_identities import NatsLogin
from mesh.control.registry import ModuleRecord, Registry
from mesh.control.statedir import StateDir
from mesh.protocol.states import State
from mesh.v1 import lifecycle_pb2


def forwarded_to_modules(variable: str) -> bool:
    """Whether a module gets this variable of the coordinator's at Initialize: the telemetry
    settings, but never the OTLP exporter's headers (they carry the collector's API keys)."""
    secret = variable.startswith("OTEL_EXPORTER_OTLP_") and variable.endswith("_HEADERS")
    return variable.startswith("OTEL_") and not secret


@dataclass
class MeshEndpoints:
    """Where the mesh itself is reached; known only once NATS and the API are up."""

    address: str = ""
    nats_url: str = ""
    events_since: timestamp_pb2.Timestamp | None = None


class ModuleSettingsSource:
    """Builds each module's settings from the mesh configuration and the registry as they are now."""

    def __init__(
        self,
        config: MeshConfig,
        registry: Registry,
        state_dir: StateDir,
        endpoints: MeshEndpoints,
        env: Mapping[str, str],
        nats_login: Callable[[str], NatsLogin],
    ) -> None:
        self._config = config
        self._nats_login = nats_login
        self._registry = registry
        self._state_dir = state_dir
        self._endpoints = endpoints
        self._env = env

    def settings_for(
        self, record: ModuleRecord, extra_config: Mapping[str, Any] | None = None
    ) -> lifecycle_pb2.ModuleSettings:
        """The settings of one module.

        Args:
            record: The module.
            extra_config: Configuration laid over the mesh configuration's (a reload's).

        Returns:
            What goes into InitializeRequest / ReloadRequest.
        """
        config = struct_pb2.Struct()
        config.update(self._config.module_config(record.name) | dict(extra_config or {}))
        endpoints = []
        for dependency in record.manifest.dependencies:
            target = self._registry.get(dependency.name)
            available = target is not None and target.state is State.RUNNING and bool(target.address)
            endpoints.append(
                lifecycle_pb2.DependencyEndpoint(
                    name=dependency.name,
                    address=target.address if available and target else "",
                    version=target.manifest.version if target else "",
                    optional=dependency.optional,
                    available=available,
                )
            )
        mesh = self._endpoints
        return lifecycle_pb2.ModuleSettings(
            config=config,
            dependencies=endpoints,
            nats=self._nats_login(record.name).settings(mesh.nats_url.split(",") if mesh.nats_url else []),
            telemetry=lifecycle_pb2.TelemetrySettings(
                otel_env={key: value for key, value in self._env.items() if forwarded_to_modules(key)}
            ),
            coordinator_address=mesh.address,
            state_dir=str(self._state_dir.state / record.name) if record.directory else "",
            events_since=mesh.events_since,
        )
