"""The mesh configuration: `mesh.toml` (optional), then environment, then command line.

modules_dir = "modules"
listen = "127.0.0.1:50050"
state_dir = ".mesh"
stop_grace_seconds = 30

[flags]                     # feature flags; FEATURE_FLAG_<FLAG> in the environment wins
enable-shipping = false

[[remote]]                  # modules already running elsewhere, not spawned here
address = "10.0.0.5:7000"

[modules.greeter.config]    # configuration overrides over each module's own defaults
greeting = "Hi"
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.protocol.errors import excerpt
from mesh.protocol.layers import non_finite_path
from mesh.protocol.toml_files import TomlFileError, read_toml

DEFAULT_LISTEN = "127.0.0.1:50050"
CONFIG_FILE = "mesh.toml"


class ConfigError(ValueError):
    """The mesh configuration is unusable; one line per problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoteModule(_Strict):
    """A module running outside this coordinator, at a fixed address."""

    address: str = Field(min_length=3)


class ModuleOverrides(_Strict):
    """Per-module settings of the mesh."""

    config: dict[str, Any] = Field(default_factory=dict)


class MeshConfig(_Strict):
    """Everything the coordinator needs to know besides the manifests."""

    modules_dir: Path = Path("modules")
    listen: str = DEFAULT_LISTEN
    state_dir: Path = Path(".mesh")
    nats_url: str = ""
    nats_credentials: Path | None = None
    """With an external NATS: a folder of credentials files, `coordinator.creds` and one
    `<module>.creds` per module (MESH_NATS_CREDENTIALS); see `mesh nats permissions`."""
    stop_grace_seconds: float = Field(default=30.0, gt=0)
    ready_timeout_seconds: float = Field(default=60.0, gt=0)
    health_cache_seconds: float = Field(default=5.0, ge=0)
    health_timeout_seconds: float = Field(default=2.0, gt=0)
    insecure: bool = False
    """Plaintext gRPC without identities (`mesh up --insecure`, MESH_INSECURE=1): for
    debugging on one machine; a non-loopback `listen` is then refused."""
    external_modules: bool = False
    """The modules of the folder run elsewhere (containers, other hosts) and register
    themselves; the coordinator validates them all first, then brings each up in dependency
    order as it registers, instead of spawning it."""
    flags: dict[str, bool] = Field(default_factory=dict)
    remote: list[RemoteModule] = Field(default_factory=list)
    modules: dict[str, ModuleOverrides] = Field(default_factory=dict)
    config_file: Path | None = None
    """The file this configuration was read from, read again when a module is reloaded."""

    def module_config(self, name: str) -> dict[str, Any]:
        """The configuration overrides the mesh gives module `name`."""
        overrides = self.modules.get(name)
        return dict(overrides.config) if overrides else {}


def load_config(
    path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> MeshConfig:
    """Read `path` (or ./mesh.toml when it exists), then apply the environment and `overrides`.

    Environment: MESH_LISTEN, MESH_STATE_DIR, MESH_MODULES_DIR, NATS_URL, MESH_NATS_CREDENTIALS,
    MESH_EXTERNAL_MODULES,
    MESH_INSECURE.

    Raises:
        ConfigError: naming the file and field of every problem.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "mesh configuration"
    if path is None and Path(CONFIG_FILE).exists():
        path = Path(CONFIG_FILE)
    if path is not None:
        source = str(path)
        try:
            data = read_toml(path, "mesh configuration file")
        except TomlFileError as error:
            raise ConfigError(str(error)) from None
    for variable, key in (
        ("MESH_LISTEN", "listen"),
        ("MESH_STATE_DIR", "state_dir"),
        ("MESH_MODULES_DIR", "modules_dir"),
        ("NATS_URL", "nats_url"),
        ("MESH_NATS_CREDENTIALS", "nats_credentials"),
        ("MESH_EXTERNAL_MODULES", "external_modules"),
        ("MESH_INSECURE", "insecure"),
    ):
        if env.get(variable):
            data[key] = env[variable]
    data.update({key: value for key, value in (overrides or {}).items() if value is not None})
    if path is not None:
        data["config_file"] = path.resolve()
    try:
        config = MeshConfig.model_validate(data)
    except ValidationError as error:
        lines = [
            f"{source}: field {excerpt('.'.join(str(p) for p in problem['loc']), 120)}: {problem['msg']}"
            for problem in error.errors()[:20]
        ]
        raise ConfigError("\n".join(lines)) from None
    for name, module in config.modules.items():
        where = non_finite_path(module.config)
        if where is not None:
            # NaN and Infinity have no JSON form: the module could never be sent this configuration.
            raise ConfigError(
                f"{source}: field {excerpt(f'modules.{name}.config.{where}', 120)} is NaN or Infinity; "
                "configuration is JSON, so use a finite number"
            )
    return config
