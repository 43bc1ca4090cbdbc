"""The Node.js module (modules/audit) in a mesh like any other: sequenced by the coordinator,
serving Lifecycle, health and reflection over mTLS (Lifecycle to the coordinator alone),
handling and publishing events in the same binding with its own NATS identity, and serving
its own API only to tenants proven (by a bearer token from outside the mesh) and enabled."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audit.v1 import audit_pb2, audit_pb2_grpc
from conftest import PROJECT, tool
from inventory.v1 import inventory_pb2, inventory_pb2_grpc
from mesh.protocol.errors import error_info
from mesh.protocol.identity import COORDINATOR, Identity, identity_of, module_identity
from mesh.protocol.names import MODULES_BUCKET
from mesh.protocol.nats_access import ConsumerGrant, ModuleGrant, NatsUser, server_config
from mesh.protocol.nats_server import EmbeddedNats
from mesh.protocol.pki import CertificateAuthority, Credentials
from mesh.protocol.streams import ConsumerSettings, ensure_consumer, provision_mesh, stamp
from mesh.protocol.tokens import SIGNING_KEY_FILE, SigningKey, issue
from mesh.protocol.transport import Transport
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, lifecycle_pb2, lifecycle_pb2_grpc
from meshkit import WAIT_SECONDS, MeshDir
from orders.v1 import orders_pb2, orders_pb2_grpc
from sdk import State
from sdk.testing import eventually
from users.v1 import users_pb2, users_pb2_grpc

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the Node.js module cannot run"),
]

AUDIT = PROJECT / "modules" / "audit"
TRANSPORT_ENV = ("MESH_TLS_DIR", "MESH_INSECURE", "MESH_COORDINATOR", "MESH_LISTEN", "MESH_READY_FILE")


@dataclass(frozen=True)
class Folders:
    """Credentials from a CA of the test's own: the module's, the coordinator's, another module's."""

    authority: CertificateAuthority
    audit: Path
    coordinator: Path
    orders: Path


@pytest.fixture
def pki(tmp_path: Path) -> Folders:
    authority = CertificateAuthority.create()
    folders = Folders(authority, tmp_path / "audit", tmp_path / "coordinator", tmp_path / "orders")
    for identity, folder in [
        (module_identity("audit"), folders.audit),
        (COORDINATOR, folders.coordinator),
        (module_identity("orders"), folders.orders),
    ]:
        authority.issue(identity.common_name).write(folder)
    return folders


def audit_environment(**env: str) -> dict[str, str]:
    """The test's environment without the mesh's transport variables, plus `env`."""
    return {**{k: v for k, v in os.environ.items() if k not in TRANSPORT_ENV}, **env}


@contextmanager
def audit_module(tmp_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The audit module as its own process, as the coordinator spawns it; yields its address."""
    assert (AUDIT / "node_modules").is_dir(), "run `make test` (it installs the module's npm dependencies)"
    ready = tmp_path / "audit-ready.json"
    log = tmp_path / "audit.log"
    environment = audit_environment(
        MESH_LISTEN="127.0.0.1:0", MESH_READY_FILE=str(ready), MESH_EXIT_WITH_PARENT="1", **env
    )
    with log.open("w") as output:
        process = subprocess.Popen(
            ["node", "index.js"], cwd=AUDIT, env=environment, stdin=subprocess.PIPE, stderr=output, text=True
        )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not ready.exists():
            assert process.poll() is None, f"the audit module exited with {process.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"the audit module did not become ready: {log.read_text()}"
            time.sleep(0.02)
        yield json.loads(ready.read_text())["address"], process
    finally:
        assert process.stdin is not None
        process.stdin.close()  # MESH_EXIT_WITH_PARENT: it stops when its stdin closes
        try:
            process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def describe(address: str, credentials: Path | None) -> lifecycle_pb2.DescribeResponse:
    async with Transport(credentials).channel(address) as channel:
        return await lifecycle_pb2_grpc.LifecycleStub(channel).Describe(lifecycle_pb2.DescribeRequest(), timeout=30)


async def served_certificate(address: str, client: Path) -> bytes:
    """The certificate the module presents now, read with the standard library's TLS client."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=str(client / "ca.pem"))
    context.load_cert_chain(client / "cert.pem", client / "key.pem")
    context.set_alpn_protocols(["h2"])
    _reader, writer = await asyncio.open_connection(host, int(port), ssl=context, server_hostname=host)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return ssl.DER_cert_to_PEM_cert(der).encode()


def test_the_node_modules_own_tests():
    assert (AUDIT / "node_modules").is_dir(), "run `make test` (it installs the module's npm dependencies)"
    # A test that hangs fails by name after its own timeout, rather than the whole run at ours.
    command = ["node", "--test", "--test-timeout=60000", "test/"]
    result = subprocess.run(command, cwd=AUDIT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout


async def test_the_coordinator_drives_the_lifecycle_over_mtls(tmp_path: Path, pki: Folders) -> None:
    with audit_module(tmp_path, MESH_TLS_DIR=str(pki.audit)) as (address, _process):
        described = await describe(address, pki.coordinator)
        assert described.manifest.name == "audit" and described.status.state == State.REGISTERED.value
        async with Transport(pki.orders).channel(address) as channel:  # health: any mesh identity
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING  # not RUNNING yet


async def test_a_module_identity_is_refused_on_lifecycle(tmp_path: Path, pki: Folders) -> None:
    with audit_module(tmp_path, MESH_TLS_DIR=str(pki.audit)) as (address, _process):
        async with Transport(pki.orders).channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await lifecycle_pb2_grpc.LifecycleStub(channel).Stop(lifecycle_pb2.StopRequest(), timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as unavailable:  # past the guard: audit.v1 is for any identity
                await audit_pb2_grpc.AuditStub(channel).ListEntries(audit_pb2.ListEntriesRequest(), timeout=30)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.details() == (
            "module:orders may not call /mesh.v1.Lifecycle/Stop: it needs the coordinator"
        )
        assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE and "only while RUNNING" in (
            unavailable.value.details() or ""
        )
        assert (await describe(address, pki.coordinator)).status.state == State.REGISTERED.value  # not stopped


async def test_calls_without_a_mesh_certificate_fail(tmp_path: Path, pki: Folders) -> None:
    stranger = CertificateAuthority.create().issue(COORDINATOR.common_name)  # the right name, another CA
    with audit_module(tmp_path, MESH_TLS_DIR=str(pki.audit)) as (address, _process):
        refused_channels = [
            grpc.aio.insecure_channel(address),
            grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=pki.authority.ca_pem)),
            grpc.aio.secure_channel(address, stranger.channel_credentials()),
        ]
        for channel in refused_channels:
            async with channel:
                stub = lifecycle_pb2_grpc.LifecycleStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Describe(lifecycle_pb2.DescribeRequest(), timeout=30)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


class _Coordinator(coordinator_pb2_grpc.CoordinatorServicer):
    """The coordinator's RegisterModule, to see who registers: a real mTLS server."""

    def __init__(self) -> None:
        self.registered: list[tuple[Identity | None, str]] = []

    async def RegisterModule(
        self, request: coordinator_pb2.RegisterModuleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> coordinator_pb2.RegisterModuleResponse:
        self.registered.append((identity_of(context), request.manifest.name))
        return coordinator_pb2.RegisterModuleResponse()


async def test_the_module_registers_with_its_own_certificate(tmp_path: Path, pki: Folders) -> None:
    coordinator = _Coordinator()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(coordinator, server)
    port = Transport(pki.coordinator).add_port(server, "127.0.0.1:0")
    await server.start()
    try:
        with audit_module(tmp_path, MESH_TLS_DIR=str(pki.audit), MESH_COORDINATOR=f"127.0.0.1:{port}"):
            registered = await eventually(lambda: coordinator.registered, "the module's RegisterModule")
        assert registered == [(module_identity("audit"), "audit")]
    finally:
        await server.stop(None)


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path, pki: Folders) -> None:
    with audit_module(tmp_path, MESH_TLS_DIR=str(pki.audit)) as (address, process):
        first = await served_certificate(address, pki.coordinator)
        renewed = pki.authority.issue(module_identity("audit").common_name, lifetime_seconds=3600)
        renewed.write(pki.audit)

        async def renewed_is_served() -> bool:
            return await served_certificate(address, pki.coordinator) == renewed.cert_pem

        await eventually(renewed_is_served, "the renewed certificate to be served")
        assert first != renewed.cert_pem and Credentials.read(pki.audit).cert_pem == renewed.cert_pem
        assert (await describe(address, pki.coordinator)).manifest.name == "audit"
        assert process.poll() is None


async def test_the_module_works_with_only_the_nats_permissions_it_is_granted(tmp_path: Path, pki: Folders) -> None:
    """The permissions the coordinator derives from what Describe reports (nats_access.py): the
    module reads its consumer and tenancy and publishes its event, and creates nothing itself,
    so a consumer nobody created is an error naming it."""
    with audit_module(tmp_path, MESH_TLS_DIR=str(pki.audit)) as (address, _process):
        described = await describe(address, pki.coordinator)
        [consumer] = described.consumers
        assert (consumer.name, list(consumer.patterns), consumer.ack_wait.seconds, consumer.max_ack_pending) == (
            "audit--record",
            ["order.created", "transaction.completed"],
            30,
            16,
        )
        grant = ModuleGrant(
            "audit",
            publishes=tuple(described.manifest.publishes),
            subscribes=tuple(described.manifest.subscribes),
            consumers=(ConsumerGrant(consumer.name, tuple(consumer.patterns)),),
        )
        grant.check()
        config = tmp_path / "nats.conf"
        users = [NatsUser("admin", "admin-pw"), NatsUser("audit", "audit-pw", grant.permissions())]
        config.write_text(server_config(users))
        async with EmbeddedNats(extra_args=["-c", str(config)]) as server:
            admin = await nats.connect(server.url, user="admin", password="admin-pw")
            js = admin.jetstream()
            await provision_mesh(js)
            # Before Initialize: the module reads the current enablement when it opens tenancy.
            await (await js.key_value(MODULES_BUCKET)).put("acme.audit", stamp("test", enabled=True))
            nats_settings = lifecycle_pb2.NatsSettings(servers=[server.url], user="audit", password="audit-pw")
            initialize = lifecycle_pb2.InitializeRequest(settings=lifecycle_pb2.ModuleSettings(nats=nats_settings))
            async with Transport(pki.coordinator).channel(address) as channel:
                lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await lifecycle.Initialize(initialize, timeout=WAIT_SECONDS)
                assert "may not create its consumer audit--record" in (refused.value.details() or "")
                assert (info := error_info(refused.value)) is not None and info.metadata["consumer"] == "audit--record"

                settings = ConsumerSettings(
                    consumer.name,
                    list(consumer.patterns),
                    consumer.ack_wait.ToTimedelta().total_seconds(),
                    consumer.max_ack_pending,
                )
                await ensure_consumer(js, settings, None)  # what the coordinator does before Initialize
                initialized = await lifecycle.Initialize(initialize, timeout=WAIT_SECONDS)
                assert initialized.status.state == State.INITIALIZED.value
                await lifecycle.Start(lifecycle_pb2.StartRequest(), timeout=WAIT_SECONDS)

                recorded: asyncio.Queue[Any] = asyncio.Queue()
                await admin.subscribe("mesh.evt.*.audit.recorded", cb=recorded.put)
                await admin.flush()
                # globex's event first: skipped (audit is not enabled for globex), so acme's is recorded first
                for event_id, tenant in (("e1", "globex"), ("e2", "acme")):
                    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": "order.created"}
                    headers["ce-source"] = "mesh://orders"
                    headers["ce-tenant"] = tenant
                    await js.publish(f"mesh.evt.{tenant}.order.created", b'{"order_id": "o1"}', headers=headers)
                event = await asyncio.wait_for(recorded.get(), WAIT_SECONDS)
                assert event.subject == "mesh.evt.acme.audit.recorded"
                assert json.loads(event.data) == {"event_id": "e2", "event_type": "order.created"}
                async with Transport(pki.orders).channel(address) as forwarded:  # a module forwards acme's call
                    listed = await audit_pb2_grpc.AuditStub(forwarded).ListEntries(
                        audit_pb2.ListEntriesRequest(), metadata=(("x-tenant-id", "acme"),), timeout=WAIT_SECONDS
                    )
                assert [(entry.event_id, entry.tenant) for entry in listed.entries] == [("e2", "acme")]
                await lifecycle.Stop(lifecycle_pb2.StopRequest(), timeout=WAIT_SECONDS)
            await admin.close()


def test_without_credentials_or_insecure_the_module_does_not_start() -> None:
    result = subprocess.run(
        ["node", "index.js"], cwd=AUDIT, env=audit_environment(), capture_output=True, text=True, timeout=WAIT_SECONDS
    )
    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert "MESH_TLS_DIR" in line and "MESH_INSECURE=1" in line


def test_plaintext_off_loopback_is_refused() -> None:
    result = subprocess.run(
        ["node", "index.js"],
        cwd=AUDIT,
        env=audit_environment(MESH_INSECURE="1", MESH_LISTEN="0.0.0.0:0"),
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert "refusing to listen on 0.0.0.0:0 without TLS" in line


async def test_insecure_on_loopback_serves_plaintext_without_identities(tmp_path: Path) -> None:
    with audit_module(tmp_path, MESH_INSECURE="1") as (address, _process):
        assert (await describe(address, None)).manifest.name == "audit"


def test_the_node_module_takes_part_in_the_mesh(tmp_path: Path) -> None:
    assert (AUDIT / "node_modules").is_dir(), "run `make test` (it installs the module's npm dependencies)"
    mesh = MeshDir(tmp_path)
    for name in ("users", "inventory", "orders", "audit"):
        (mesh.modules / name).symlink_to(PROJECT / "modules" / name, target_is_directory=True)
    with mesh.up() as running:
        modules = running.wait_until_up()
        assert {name: State(m.state).name for name, m in modules.items()} == dict.fromkeys(
            ["users", "inventory", "orders", "audit"], "RUNNING"
        )
        audit = modules["audit"].address
        info = json.loads((mesh.state / "coordinator.json").read_text())
        # A secure mesh: the test calls as the admin operator `mesh up` made, and as the
        # coordinator (its credentials in the state folder) for Lifecycle.
        operator = Path(info["credentials"]) if info.get("tls") else None
        as_coordinator = mesh.state / "pki" / "coordinator" if operator else None
        tls_flags = ["-cacert", "ca.pem", "-cert", "cert.pem", "-key", "key.pem"]
        flags = [str(operator / name) if name.endswith(".pem") else name for name in tls_flags] if operator else []

        def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [tool("grpcurl"), *(flags or ["-plaintext"]), audit, *args],
                capture_output=True,
                text=True,
                timeout=WAIT_SECONDS,
            )

        listed = grpcurl("list")
        assert {"audit.v1.Audit", "mesh.v1.Lifecycle", "grpc.health.v1.Health"} <= set(listed.stdout.split())
        health = grpcurl("grpc.health.v1.Health/Check")
        assert '"status": "SERVING"' in health.stdout
        nats_url = info["nats_url"]

        async def order_and_watch():
            client = await nats.connect(nats_url, **running.nats_login())
            recorded = []

            async def keep(message):
                recorded.append(message)

            await client.subscribe("mesh.evt.*.audit.recorded", cb=keep)
            await client.flush()  # subscribed at the server before the order that leads to the event
            async with Transport(operator).channel(modules["users"].address) as channel:
                user = (
                    await users_pb2_grpc.UsersStub(channel).CreateUser(
                        users_pb2.CreateUserRequest(name="Ada", email="ada@example.org")
                    )
                ).user
            async with Transport(operator).channel(modules["inventory"].address) as channel:
                await inventory_pb2_grpc.InventoryStub(channel).SetStock(
                    inventory_pb2.SetStockRequest(sku="b", quantity=2)
                )
            async with Transport(operator).channel(modules["orders"].address) as channel:
                order = (
                    await orders_pb2_grpc.OrdersStub(channel).PlaceOrder(
                        orders_pb2.PlaceOrderRequest(user_id=user.id, sku="b", quantity=1)
                    )
                ).order
            async with Transport(operator).channel(audit) as channel:
                stub = audit_pb2_grpc.AuditStub(channel)

                async def entries_once_recorded():
                    entries = (await stub.ListEntries(audit_pb2.ListEntriesRequest())).entries
                    return entries if entries and recorded else None

                entries = await eventually(
                    entries_once_recorded, "the audit entry and its audit.recorded event", within=WAIT_SECONDS
                )
                if operator:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await lifecycle_pb2_grpc.LifecycleStub(channel).Describe(lifecycle_pb2.DescribeRequest())
                    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            described = await describe(audit, as_coordinator)
            await client.close()
            return order, entries, recorded, described

        order, entries, recorded, described = asyncio.run(order_and_watch())
        assert [(e.event_type, json.loads(e.data_json)["order_id"]) for e in entries] == [("order.created", order.id)]
        assert recorded[0].headers["ce-type"] == "audit.recorded"
        assert recorded[0].headers["ce-source"] == "mesh://audit"
        assert json.loads(recorded[0].data) == {"event_id": entries[0].event_id, "event_type": "order.created"}
        assert described.manifest.name == "audit" and described.status.state == State.RUNNING.value
        assert running.signal_and_wait(2) == 0
    stopped = [line for line in (mesh.state / "logs" / "audit.log").read_text().splitlines() if "stopping" in line]
    assert stopped, "the Node.js module was not stopped gracefully"


def test_the_node_module_serves_only_tenants_proven_and_enabled(tmp_path: Path) -> None:
    assert (AUDIT / "node_modules").is_dir(), "run `make test` (it installs the module's npm dependencies)"
    mesh = MeshDir(tmp_path)
    (mesh.modules / "audit").symlink_to(AUDIT, target_is_directory=True)
    with mesh.up() as running:
        audit = running.wait_until_up()["audit"].address
        state = ("--state-dir", str(mesh.state))
        # globex first: once the module serves acme it has seen globex's change too (one watch, in order).
        for action, tenant in (("disable", "globex"), ("enable", "acme")):
            changed = mesh.run_cli("tenant", action, tenant, "audit", "--coordinator", running.address, *state)
            assert changed.returncode == 0, changed.stderr

        def token(tenant: str) -> str:
            issued = mesh.run_cli("token", "issue", "--tenant", tenant, *state)
            assert issued.returncode == 0, issued.stderr
            return issued.stdout.strip()

        async def list_entries(*metadata: tuple[str, str]) -> audit_pb2.ListEntriesResponse:
            async with running.channel(audit) as channel:  # as the mesh's admin operator: from outside the mesh
                stub = audit_pb2_grpc.AuditStub(channel)
                return await stub.ListEntries(audit_pb2.ListEntriesRequest(), metadata=metadata, timeout=WAIT_SECONDS)

        async def refusal(*metadata: tuple[str, str]) -> grpc.aio.AioRpcError:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_entries(*metadata)
            return refused.value

        def served(*metadata: tuple[str, str]) -> bool:
            try:
                asyncio.run(list_entries(*metadata))
            except grpc.aio.AioRpcError as error:
                info = error_info(error)
                assert info is not None and info.reason == "MODULE_DISABLED_FOR_TENANT", error.details()
                return False  # not yet: the module learns the enablement from a KV watch a moment later
            return True

        running.wait_for(lambda: served(("authorization", f"Bearer {token('acme')}")), "the audit module to serve acme")

        claimed = asyncio.run(refusal(("x-tenant-id", "acme")))
        assert claimed.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer" in (claimed.details() or "")
        assert (info := error_info(claimed)) is not None and info.reason == "UNAUTHENTICATED"

        expired_token = issue(SigningKey.read(mesh.state / "pki" / SIGNING_KEY_FILE), "acme", ttl_seconds=-60)
        expired = asyncio.run(refusal(("authorization", f"Bearer {expired_token}")))
        assert (info := error_info(expired)) is not None and (info.reason, dict(info.metadata)) == (
            "UNAUTHENTICATED",
            {"token": "expired"},
        )

        disabled = asyncio.run(refusal(("authorization", f"Bearer {token('globex')}")))
        assert disabled.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (info := error_info(disabled)) is not None and info.reason == "MODULE_DISABLED_FOR_TENANT"
        assert dict(info.metadata) == {"module": "audit", "tenant": "globex"}
