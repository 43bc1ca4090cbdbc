"""SDK publish -> handle with NATS authentication on against off, in the same run.

*Off*: an embedded nats-server without users (what `mesh up --insecure` runs). *On*: one with
a user per module and the permissions the coordinator gives it (mesh.protocol.nats_access,
from the module's manifest and the consumers of its handlers); the module connects as its own
user, with its own inbox prefix. In both, an admin connection creates the streams, the
tenancy buckets and the module's durable consumer beforehand, as the coordinator does, and
the module is told it runs in a mesh (a coordinator address), so the two differ only in the
server authenticating the connection and checking every publish and subscription against
the user's permissions. bench.events' SINK module, paths and load (20 publishing tasks).

    python -m bench.events_auth [--events 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors

from bench import figures
from bench.events import PUBLISHERS, sdk_run, write_sink
from mesh.control.nats_identities import grant_of
from mesh.protocol.nats_access import ADMIN_USER, NatsUser, server_config
from mesh.protocol.nats_server import EmbeddedNats
from mesh.protocol.streams import ConsumerSettings, ensure_consumer, provision_mesh
from mesh.v1 import lifecycle_pb2
from sdk import event_consumers, handler_bindings, load_module

MODES = {"ephemeral": "bench.tick", "durable": "bench.stored"}
"""Each delivery mode and the SINK event type that takes it."""


@dataclass(frozen=True)
class Login:
    """A NATS user name and password."""

    user: str
    password: str


@dataclass(frozen=True)
class SinkAccess:
    """The SINK module's NATS user and the consumers the coordinator creates for it."""

    user: NatsUser
    consumers: list[ConsumerSettings]

    @classmethod
    def of(cls, sink_dir: Path) -> SinkAccess:
        """Derived from the module's manifest and code, as `mesh nats permissions` does."""
        loaded = load_module(sink_dir)
        described = event_consumers(loaded.manifest.name, handler_bindings(loaded.module_class))
        grant = grant_of(loaded.manifest, described)
        consumers = [
            ConsumerSettings(c.name, list(c.patterns), c.ack_wait.ToNanoseconds() / 1e9, c.max_ack_pending)
            for c in described
        ]
        return cls(NatsUser(grant.module, secrets.token_urlsafe(24), grant.permissions()), consumers)


async def provision(url: str, access: SinkAccess, admin: Login | None) -> None:
    """What the coordinator does before the module starts: streams, buckets, its consumers."""
    client = await nats.connect(url, **({"user": admin.user, "password": admin.password} if admin else {}))
    try:
        js = client.jetstream()
        await provision_mesh(js)
        for consumer in access.consumers:
            await ensure_consumer(js, consumer, None)
    finally:
        await client.close()


async def refuses_strangers(url: str) -> bool:
    """Whether the server refuses a connection without credentials."""

    async def expected(error: Exception) -> None:
        """A refusal is what is asked about; nats-py would print it as a failure."""

    try:
        client = await nats.connect(
            url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5, error_cb=expected
        )
    except (nats.errors.Error, OSError):
        return True
    await client.close()
    return False


async def refuses_undeclared(url: str, login: Login) -> bool:
    """Whether the server refuses the module's user an event type its manifest does not publish."""
    refused = asyncio.Event()

    async def on_error(error: Exception) -> None:
        if "permissions violation" in str(error).lower():
            refused.set()

    client = await nats.connect(url, user=login.user, password=login.password, error_cb=on_error)
    try:
        await client.publish("mesh.evt._.bench.undeclared", b"{}")
        await client.flush()
        await asyncio.wait_for(refused.wait(), timeout=10)
    except TimeoutError:
        return False
    finally:
        await client.close()
    return True


def in_mesh(login: Login | None) -> Callable[[lifecycle_pb2.ModuleSettings], None]:
    """The settings change of a module the coordinator provisioned (and gave a NATS login)."""

    def adjust(settings: lifecycle_pb2.ModuleSettings) -> None:
        settings.coordinator_address = "bench"  # consumers exist: the module only looks them up
        if login is not None:
            settings.nats.user, settings.nats.password = login.user, login.password

    return adjust


async def main_async(events: int, rounds: int) -> None:
    results: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch_name:
        scratch = Path(scratch_name)
        sink_dir = write_sink(scratch)
        access = SinkAccess.of(sink_dir)
        admin = Login(ADMIN_USER, secrets.token_urlsafe(24))
        config = scratch / "nats-users.conf"
        config.write_text(server_config([NatsUser(admin.user, admin.password), access.user]))
        module_login = Login(access.user.name, access.user.password)
        async with (
            EmbeddedNats(data_dir=scratch / "off") as open_server,
            EmbeddedNats(data_dir=scratch / "on", extra_args=["-c", str(config)]) as auth_server,
        ):
            if (
                await refuses_strangers(open_server.url)
                or not await refuses_strangers(auth_server.url)
                or not await refuses_undeclared(auth_server.url, module_login)
            ):
                raise RuntimeError("NATS authentication and permissions are not off and on as this benchmark needs")
            await provision(open_server.url, access, None)
            await provision(auth_server.url, access, admin)
            servers = {"off": (open_server.url, in_mesh(None)), "on": (auth_server.url, in_mesh(module_login))}
            for round_ in range(rounds):
                # Alternate which goes first, so that warming up favours neither.
                order = list(servers.items())[:: -1 if round_ % 2 else 1]
                for mode, event_type in MODES.items():
                    for auth, (url, adjust) in order:
                        run = await sdk_run(url, sink_dir, events, event_type, adjust)
                        results.setdefault(f"{mode}, auth {auth}", []).append(run)
    medians = {name: tuple(statistics.median(r[i] for r in runs) for i in range(3)) for name, runs in results.items()}
    print(
        f"SDK publish -> handle, NATS auth off vs on, {events} events x {rounds} rounds, "
        f"{PUBLISHERS} publishing tasks, one process"
    )
    print(
        "auth on, checked first: a connection without credentials is refused, the module's user may not "
        "publish an undeclared event type"
    )
    print(f"{'path':<22}{'events/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, (rate, p50, p99) in medians.items():
        print(f"{name:<22}{rate:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    for mode in MODES:
        off, on = medians[f"{mode}, auth off"], medians[f"{mode}, auth on"]
        figures.record(f"{mode} auth on / off throughput", on[0] / off[0])
        print(
            f"ratio {mode} auth on / off: throughput {on[0] / off[0]:.2f}, p50 {on[1] / off[1]:.2f}, "
            f"p99 {on[2] / off[2]:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main_async(args.events, args.rounds))


if __name__ == "__main__":
    main()
