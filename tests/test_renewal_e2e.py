"""Certificates are renewed while the mesh runs, without a failed call: a mesh whose
certificates live 12 s keeps answering a request that crosses two module processes (front
calls back through ctx.client) on fresh connections, until every certificate in play has
been renewed and the first ones have expired."""

from __future__ import annotations

import asyncio
import datetime
import time

import grpc
import pytest

from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.protocol.pki import Credentials
from meshkit import WAIT_SECONDS, MeshDir

pytestmark = pytest.mark.e2e

LIFETIME_SECONDS = 12  # renewed at two thirds: every 8 s


def test_calls_keep_succeeding_while_every_certificate_is_renewed(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("back")
    mesh.module("front", depends=["back"])
    with mesh.up(MESH_CERT_LIFETIME_SECONDS=str(LIFETIME_SECONDS)) as running:
        modules = running.wait_until_up()
        pki = mesh.state / "pki"
        folders = [
            pki / "modules" / "front",
            pki / "modules" / "back",
            pki / "coordinator",
            pki / "operators" / "admin",
        ]
        first = {folder: Credentials.read(folder).cert_pem for folder in folders}
        expired_at = max(Credentials.read(folder).not_after for folder in folders)

        async def call_through_front() -> str:
            # a channel with its own connection (no shared subchannel), so every call makes a
            # new TLS handshake with the certificates on disk now
            fresh = [("grpc.use_local_subchannel_pool", 1)]
            async with running.transport.channel(modules["front"].address, options=fresh) as channel:
                reply = await greeter_pb2_grpc.GreeterStub(channel).SayHello(
                    greeter_pb2.SayHelloRequest(name="via:back:ada"), timeout=WAIT_SECONDS
                )
                return reply.message

        failures: list[grpc.aio.AioRpcError] = []
        calls = 0

        def call() -> None:
            nonlocal calls
            try:
                assert asyncio.run(call_through_front()).startswith("front via back")
            except grpc.aio.AioRpcError as error:
                failures.append(error)
            calls += 1

        deadline = time.monotonic() + WAIT_SECONDS + 2 * LIFETIME_SECONDS
        while not (
            all(Credentials.read(folder).cert_pem != first[folder] for folder in folders)
            and datetime.datetime.now(datetime.UTC) > expired_at
        ):
            call()  # across the renewals
            assert time.monotonic() < deadline, "the certificates were not renewed in time"
        for _ in range(3):
            call()  # every first certificate has expired: these need the renewed ones
    assert failures == [], f"{len(failures)} of {calls} calls failed across renewals: {failures[:3]}"
    assert calls > 1
