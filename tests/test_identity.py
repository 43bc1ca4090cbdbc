"""Identity as data: certificates from the mesh CA name who calls, the rules decide what
each identity may call, and plaintext is refused off loopback. Real TLS over real gRPC."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.protocol.identity import (
    COORDINATOR,
    Anyone,
    CoordinatorOnly,
    Identity,
    Role,
    identity_of,
    module_identity,
    operator_identity,
    refusal,
)
from mesh.protocol.pki import CertificateAuthority, Credentials, CredentialsError
from mesh.protocol.transport import InsecureBindRefused, Transport, refuse_public_plaintext


@pytest.mark.parametrize(
    "identity",
    [COORDINATOR, module_identity("orders"), operator_identity("ada", Role.VIEWER)],
    ids=str,
)
def test_an_identity_round_trips_through_its_common_name(identity: Identity) -> None:
    assert Identity.parse(identity.common_name) == identity


@pytest.mark.parametrize("name", ["", "operator:root:ada", "module:", "someone", "operator:admin:"])
def test_a_common_name_that_states_no_identity_is_none(name: str) -> None:
    assert Identity.parse(name) is None


def test_rules_by_role_and_kind() -> None:
    rules = {"/mesh.v1.Coordinator/Shutdown": Role.ADMIN, "/mesh.v1.Lifecycle/": CoordinatorOnly.COORDINATOR}
    viewer = operator_identity("ada", Role.VIEWER)
    denied = refusal(viewer, "/mesh.v1.Coordinator/Shutdown", rules, Role.VIEWER)
    assert denied is not None and denied.reason == "ACCESS_DENIED" and "admin or higher" in denied.message
    assert refusal(operator_identity("root", Role.ADMIN), "/mesh.v1.Coordinator/Shutdown", rules, Role.VIEWER) is None
    assert refusal(COORDINATOR, "/mesh.v1.Lifecycle/Stop", rules, Anyone.AUTHENTICATED) is None
    assert refusal(module_identity("orders"), "/mesh.v1.Lifecycle/Stop", rules, Anyone.AUTHENTICATED) is not None
    anonymous = refusal(None, "/x.Y/Z", rules, Anyone.AUTHENTICATED)
    assert anonymous is not None and anonymous.reason == "UNAUTHENTICATED" and "mesh creds issue" in anonymous.message


@pytest.mark.parametrize("address", ["0.0.0.0:50050", "10.1.2.3:7000", "[::]:1", "orders:7000", ":7000"])
def test_plaintext_off_loopback_is_refused(address: str) -> None:
    with pytest.raises(InsecureBindRefused, match="without TLS"):
        refuse_public_plaintext(address)


@pytest.mark.parametrize("address", ["127.0.0.1:0", "localhost:50050", "[::1]:7000"])
def test_plaintext_on_loopback_is_allowed(address: str) -> None:
    refuse_public_plaintext(address)


class _Health(health_pb2_grpc.HealthServicer):
    def __init__(self) -> None:
        self.callers: list[Identity | None] = []

    async def Check(self, request, context):
        self.callers.append(identity_of(context))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def test_mtls_names_the_caller_and_refuses_callers_without_a_mesh_certificate(tmp_path) -> None:
    authority = CertificateAuthority.load_or_create(tmp_path / "pki")
    assert CertificateAuthority.load_or_create(tmp_path / "pki").ca_pem == authority.ca_pem  # loaded, not new
    authority.issue(module_identity("orders").common_name).write(tmp_path / "orders")
    authority.issue(COORDINATOR.common_name).write(tmp_path / "coordinator")
    stranger = CertificateAuthority.create().issue(COORDINATOR.common_name)  # right name, wrong CA
    health = _Health()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = Transport(tmp_path / "orders").add_port(server, "127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    try:
        async with Transport(tmp_path / "coordinator").channel(address) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.callers == [COORDINATOR]
        refused_channels = [
            grpc.aio.insecure_channel(address),
            grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=authority.ca_pem)),
            grpc.aio.secure_channel(address, stranger.channel_credentials()),
        ]
        for channel in refused_channels:
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
        assert health.callers == [COORDINATOR]
    finally:
        await server.stop(None)


async def test_a_renewed_certificate_is_served_from_the_next_handshake_on(tmp_path) -> None:
    authority = CertificateAuthority.create()
    authority.issue(module_identity("orders").common_name, lifetime_seconds=600).write(tmp_path / "orders")
    authority.issue(COORDINATOR.common_name).write(tmp_path / "coordinator")
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(_Health(), server)
    port = Transport(tmp_path / "orders").add_port(server, "127.0.0.1:0")
    await server.start()
    try:
        first = Credentials.read(tmp_path / "orders").not_after
        renewed = authority.issue(module_identity("orders").common_name, lifetime_seconds=3600)
        renewed.write(tmp_path / "orders")
        async with Transport(tmp_path / "coordinator").channel(f"127.0.0.1:{port}") as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            peer_pem = await _served_certificate(port, tmp_path)
        assert peer_pem == renewed.cert_pem and renewed.not_after > first
    finally:
        await server.stop(None)


async def _served_certificate(port: int, tmp_path) -> bytes:
    """The certificate the server presents now, read with the standard library's TLS client."""
    import asyncio
    import ssl

    context = ssl.create_default_context(cafile=str(tmp_path / "coordinator" / "ca.pem"))
    context.load_cert_chain(tmp_path / "coordinator" / "cert.pem", tmp_path / "coordinator" / "key.pem")
    context.set_alpn_protocols(["h2"])
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return ssl.DER_cert_to_PEM_cert(der).encode()


def test_credentials_read_mid_renewal_wait_for_the_key_that_belongs_to_the_certificate(tmp_path, monkeypatch):
    """Renewal replaces cert.pem and key.pem one after the other: a reader in between must not
    get the new certificate with the old key (grpc would fail every handshake with it)."""
    authority = CertificateAuthority.create()
    old, new = authority.issue("module:orders"), authority.issue("module:orders")
    folder = tmp_path / "orders"
    old.write(folder)
    (folder / "cert.pem").write_bytes(new.cert_pem)  # the renewal, half done
    waits: list[float] = []
    real_sleep = time.sleep

    def renewal_finishes_while_the_reader_waits(seconds: float) -> None:
        waits.append(seconds)
        new.write(folder)  # the writer's second half lands between two reads
        real_sleep(seconds)

    monkeypatch.setattr("mesh.protocol.pki.time.sleep", renewal_finishes_while_the_reader_waits)
    read = Credentials.read(folder)
    assert (read.cert_pem, read.key_pem) == (new.cert_pem, new.key_pem)
    assert len(waits) == 1  # it saw the half-done pair, and read again instead of handing it on


def test_a_certificate_and_key_that_never_belong_together_are_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr("mesh.protocol.pki.READ_SETTLE_SECONDS", 0.05)
    authority = CertificateAuthority.create()
    folder = tmp_path / "orders"
    authority.issue("module:orders").write(folder)
    (folder / "key.pem").write_bytes(authority.issue("module:orders").key_pem)
    with pytest.raises(CredentialsError, match=r"cert\.pem and .*key\.pem do not belong together"):
        Credentials.read(folder)
