"""Each module's NATS identity: a user of its own, with permissions derived from its manifest
and the consumers it reported at Describe (mesh/protocol/nats_access.py), and those consumers
created for it by the coordinator before Initialize.

With the embedded nats-server the coordinator owns the users: it writes the server's
configuration (passwords made here, kept in the state folder, readable by its owner only),
has the server load it again when a module is admitted, and hands each module its password
in Initialize over mTLS. With an external NATS (NATS_URL) the operator owns the users: the
coordinator and each module get the login named after them in the MESH_NATS_CREDENTIALS
folder (`mesh nats users` writes it with the servers' configuration), and
`mesh nats permissions` prints what each of them must be allowed.

    <state>/nats-access/server.conf        the embedded server's users (0600)
    <state>/nats-access/mesh-admin.json    the operator's NATS login for the CLI (0600)
    <state>/nats-access/mesh-gateway.json  the HTTP gateways' login: they share rate limits (0600)
    <state>/nats-access/permissions.json   every module's permissions, as last admitted
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors

from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.nats_access import (
    ADMIN_USER,
    COORDINATOR_USER,
    DENY_ALL,
    GATEWAY_PERMISSIONS,
    GATEWAY_USER,
    PROBE_USER,
    ConsumerGrant,
    ModuleGrant,
    NatsUser,
    server_config,
)
from mesh.protocol.nats_server import EmbeddedNats, NatsServerError
from mesh.protocol.streams import ConsumerSettings, ensure_consumer, provisioned
from mesh.v1 import lifecycle_pb2

RELOAD_SECONDS = 30.0
"""How long the embedded server may take to load a new configuration (milliseconds, usually)."""
CREDENTIALS_DIR_ENV = "MESH_NATS_CREDENTIALS"
"""The variable naming the folder of credentials files for an external NATS (config.py)."""

_log = logging.getLogger("mesh")


@dataclass(frozen=True)
class NatsLogin:
    """How one NATS client of the mesh authenticates: a user and password (none: a NATS
    without users)."""

    user: str = ""
    password: str = ""

    def connect_options(self) -> dict[str, Any]:
        """The nats-py connect() arguments."""
        if self.user:
            return {"user": self.user, "password": self.password}
        return {}

    def settings(self, servers: Sequence[str]) -> lifecycle_pb2.NatsSettings:
        """What a module is told at Initialize."""
        return lifecycle_pb2.NatsSettings(servers=list(servers), user=self.user, password=self.password)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = path.with_suffix(".tmp")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    scratch.replace(path)


def read_login(path: Path) -> NatsLogin | None:
    """A `{"user", "password"}` file; None when there is none.

    Raises:
        MeshError: ACCESS_DENIED when the file is there but cannot be read or is no login.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise MeshError("ACCESS_DENIED", f"cannot read the NATS login {path}: {error}") from None
    if not isinstance(data, dict) or not data.get("user") or not data.get("password"):
        raise MeshError("ACCESS_DENIED", f'{path} is no NATS login: expected {{"user": …, "password": …}}')
    return NatsLogin(user=str(data["user"]), password=str(data["password"]))


def admin_login(folder: Path, env: Mapping[str, str] = os.environ) -> NatsLogin:
    """The operator's NATS login: the running mesh's (its state folder's `nats-access`), else
    `mesh-admin.json` in MESH_NATS_CREDENTIALS (an external NATS), else none (a NATS without users).

    Raises:
        MeshError: ACCESS_DENIED when a login file is there but cannot be read.
    """
    return _saved_login(ADMIN_USER, folder, env)


def gateway_login(folder: Path, env: Mapping[str, str] = os.environ) -> NatsLogin:
    """The login a `mesh gateway` shares its rate limits with: the running mesh's
    `mesh-gateway.json`, else MESH_NATS_CREDENTIALS's, else none (a NATS without users).

    Raises:
        MeshError: ACCESS_DENIED when a login file is there but cannot be read.
    """
    return _saved_login(GATEWAY_USER, folder, env)


def _saved_login(user: str, folder: Path, env: Mapping[str, str]) -> NatsLogin:
    """`<user>.json` of the state folder's `nats-access`, else of MESH_NATS_CREDENTIALS."""
    candidates = [folder / f"{user}.json"]
    if env.get(CREDENTIALS_DIR_ENV):
        candidates.append(Path(env[CREDENTIALS_DIR_ENV]) / f"{user}.json")
    for path in candidates:
        login = read_login(path)
        if login is not None:
            return login
    return NatsLogin()


def grant_of(manifest: Manifest, consumers: Sequence[lifecycle_pb2.EventConsumer]) -> ModuleGrant:
    """What a module may do on NATS, checked: its consumers are its own and read only what
    its manifest subscribes to (raises MeshError ACCESS_DENIED otherwise)."""
    grant = ModuleGrant(
        module=manifest.name,
        publishes=tuple(manifest.events.publishes),
        subscribes=tuple(manifest.events.subscribes),
        consumers=tuple(ConsumerGrant(c.name, tuple(c.patterns)) for c in consumers),
    )
    grant.check()
    return grant


class NatsIdentities:
    """The NATS users of the mesh, its modules' permissions, and their consumers.

    Args:
        folder: Where the server configuration, the admin login and the permissions are kept.
        embedded: The coordinator runs the nats-server (it then owns the users); False for an
            external NATS, whose users the operator provisions.
        credentials_dir: With an external NATS, the folder of credentials files.
        enforced: False with --insecure: no users at all (plaintext debugging on one machine).
    """

    def __init__(self, folder: Path, *, embedded: bool, credentials_dir: Path | None, enforced: bool) -> None:
        self._folder = folder
        self._embedded = embedded and enforced
        self._credentials_dir = credentials_dir if enforced else None
        self._server: EmbeddedNats | None = None
        self._grants: dict[str, ModuleGrant] = {}
        self._passwords: dict[str, str] = {}
        self._probe_password = ""
        self._lock = asyncio.Lock()
        self._jetstream: Any = None
        self._events_since: datetime | None = None

    @property
    def config_file(self) -> Path:
        return self._folder / "server.conf"

    @property
    def permissions_file(self) -> Path:
        return self._folder / "permissions.json"

    # --- the coordinator's own connections ----------------------------------------------------

    def server_args(self) -> list[str]:
        """The embedded server's extra arguments: its users, written now; none without auth."""
        if not self._embedded:
            return []
        for user in (COORDINATOR_USER, ADMIN_USER, GATEWAY_USER):
            self._passwords[user] = secrets.token_urlsafe(24)
        # The previous run's logins must not outlive it (with --insecure none is written).
        for user in (ADMIN_USER, GATEWAY_USER):
            write_private(self._folder / f"{user}.json", json.dumps({"user": user, "password": self._passwords[user]}))
        self._write_config()
        return ["-c", str(self.config_file)]

    def attach(self, jetstream: Any, events_since: datetime | None, server: EmbeddedNats | None) -> None:
        """The coordinator's JetStream to create consumers with (and where new ones start),
        and the embedded server to reload (None with an external NATS)."""
        self._jetstream = jetstream
        self._events_since = events_since
        self._server = server

    def coordinator_login(self) -> NatsLogin:
        """How the coordinator itself connects."""
        if self._embedded:
            return NatsLogin(COORDINATOR_USER, self._passwords[COORDINATOR_USER])
        return self._file_login(COORDINATOR_USER)

    def gateway_login(self) -> NatsLogin:
        """How `mesh up`'s gateway connects, to share its rate limits with other gateways.

        Raises:
            MeshError: ACCESS_DENIED when an external NATS was given a credentials folder
                without the gateways' login.
        """
        if self._embedded:
            return NatsLogin(GATEWAY_USER, self._passwords[GATEWAY_USER])
        return self._file_login(GATEWAY_USER)

    def module_login(self, module: str) -> NatsLogin:
        """How `module` connects (what Initialize tells it); raises MeshError when an external
        NATS was given credentials for some modules but not this one."""
        if self._embedded:
            password = self._passwords.get(module)
            if password is None:
                raise MeshError(
                    "ACCESS_DENIED",
                    f"module {module} has no NATS identity yet: it is made when the module is brought up",
                    metadata={"module": module},
                )
            return NatsLogin(module, password)
        return self._file_login(module)

    def _file_login(self, name: str) -> NatsLogin:
        """`<name>.json` of the credentials folder: a user and password (as `mesh nats users`
        writes them), handed to the module in Initialize over mTLS."""
        if self._credentials_dir is None:
            return NatsLogin()
        path = self._credentials_dir / f"{name}.json"
        login = read_login(path)
        if login is None:
            raise MeshError(
                "ACCESS_DENIED",
                f"no NATS login for {name}: expected {path} ({CREDENTIALS_DIR_ENV}); `mesh nats users --out DIR` "
                f'writes the logins with the servers\' users, or write {{"user", "password"}} of a NATS user '
                f"allowed what `mesh nats permissions --module {name}` prints",
                metadata={"module": name},
            )
        return login

    # --- admitting a module -------------------------------------------------------------------

    async def admit(self, manifest: Manifest, consumers: Sequence[lifecycle_pb2.EventConsumer]) -> None:
        """Give a module its NATS identity and create its consumers, before its Initialize.

        Raises:
            MeshError: ACCESS_DENIED when it reported a consumer that is not its own or reads
                what its manifest does not declare; MODULE_UNAVAILABLE when NATS did not
                take the new configuration.
        """
        await self._grant([grant_of(manifest, consumers)])
        for consumer in consumers:
            settings = ConsumerSettings(
                name=consumer.name,
                patterns=list(consumer.patterns),
                ack_wait_seconds=consumer.ack_wait.ToNanoseconds() / 1e9 or 30.0,
                max_ack_pending=consumer.max_ack_pending or 16,
            )
            await provisioned(
                f"creating the consumer {consumer.name}",
                functools.partial(ensure_consumer, self._jetstream, settings, self._events_since),
            )

    async def admit_ahead(self, described: Sequence[tuple[Manifest, Sequence[lifecycle_pb2.EventConsumer]]]) -> None:
        """Give many described modules their NATS identities at once, with one reload of the
        embedded server, before the first of them is initialized; each module's `admit` then
        only creates its consumers.

        Why: `mesh up` admits every module before its Initialize, and each admission that
        changes the users reloads nats-server, one after another (30-40 ms each), and drops
        the connections still in their handshake (the module retries after 0.5 s). Admitted
        ahead, the 40-module boot of bench/boot.py reloads once instead of 40 times.

        A module whose consumers are not its own is left out here: its own `admit` refuses it,
        which fails that module alone.

        Raises:
            MeshError: MODULE_UNAVAILABLE when NATS did not take the new configuration.
        """
        grants: list[ModuleGrant] = []
        for manifest, consumers in described:
            try:
                grants.append(grant_of(manifest, consumers))
            except MeshError:
                continue
        await self._grant(grants)

    async def _grant(self, grants: Sequence[ModuleGrant]) -> None:
        """Record these grants; when any is new or changed, write the users and (embedded) have
        the server load them, once for all."""
        async with self._lock:
            changed = [grant for grant in grants if self._grants.get(grant.module) != grant]
            if not changed:
                return
            for grant in changed:
                self._grants[grant.module] = grant
                self._passwords.setdefault(grant.module, secrets.token_urlsafe(24))
            write_private(self.permissions_file, self.permissions_json())
            if self._embedded:
                self._write_config()
                await self._reload()

    def permissions_json(self) -> str:
        """Every admitted module's permissions, for `mesh nats permissions`."""
        return json.dumps(
            {name: grant.permissions() for name, grant in sorted(self._grants.items())}, indent=2, sort_keys=True
        )

    def _write_config(self) -> None:
        self._probe_password = secrets.token_urlsafe(16)
        users = [
            NatsUser(COORDINATOR_USER, self._passwords[COORDINATOR_USER]),
            NatsUser(ADMIN_USER, self._passwords[ADMIN_USER]),
            NatsUser(GATEWAY_USER, self._passwords[GATEWAY_USER], GATEWAY_PERMISSIONS),
            NatsUser(PROBE_USER, self._probe_password, DENY_ALL),
            *(NatsUser(name, self._passwords[name], grant.permissions()) for name, grant in self._grants.items()),
        ]
        write_private(self.config_file, server_config(users))

    async def _reload(self) -> None:
        """Have the server load the configuration just written, and wait until it has: the
        probe user's fresh password is accepted only by the new configuration. A server that
        is down meanwhile is being restarted by the coordinator and reads the file as it starts."""
        assert self._server is not None and self._server.url, "attach() the running server first"
        try:
            self._server.reload()
        except NatsServerError as error:
            _log.warning("admitting a module while the nats-server is down: %s; waiting for its restart", error)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELOAD_SECONDS
        while True:
            try:
                probe = await nats.connect(
                    self._server.url,
                    user=PROBE_USER,
                    password=self._probe_password,
                    connect_timeout=2,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    error_cb=_quiet,
                )
            except (nats.errors.Error, OSError, TimeoutError) as error:
                if loop.time() > deadline:
                    raise MeshError(
                        "MODULE_UNAVAILABLE",
                        f"the embedded nats-server did not load its new users within {RELOAD_SECONDS:.0f} s "
                        f"({error}); see its log in the state folder",
                    ) from error
                await asyncio.sleep(0.02)
                continue
            await probe.close()
            return


async def _quiet(error: Exception) -> None:
    """A refused probe is expected until the server has reloaded."""
