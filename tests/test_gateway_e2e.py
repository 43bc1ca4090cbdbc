"""The HTTP gateway (`mesh gateway`) against a running mesh that serves mTLS: a real `mesh up`, a
real gateway process and a real HTTP client (aiohttp). A caller with a token calls a module's
unary method with JSON and gets its JSON; every refusal has its HTTP status and the mesh's
reason; a restarted module stays routable; CORS answers only the origins allowed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from conftest import PROJECT
from greeter.v1 import greeter_pb2
from httpkit import Gateway, gateway_of_up
from inventory.v1 import inventory_pb2
from mesh.protocol.tokens import SigningKey, issue
from meshkit import WAIT_SECONDS, MeshDir, RunningMesh
from users.v1 import users_pb2

pytestmark = pytest.mark.e2e

ALLOWED_ORIGIN = "https://app.example"


@contextmanager
def gateway_for(mesh: MeshDir, running: RunningMesh, *args: str) -> Iterator[Gateway]:
    """`mesh gateway` on a free port for the running mesh, stopped (and waited for) afterwards."""
    env = mesh.environment(MESH_STATE_DIR=str(mesh.state), MESH_COORDINATOR=running.address)
    process = subprocess.Popen(
        mesh.mesh_command("gateway", "--listen", "127.0.0.1:0", *args),
        cwd=mesh.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "mesh gateway: serving http://" in banner, banner + (process.stderr.read() if process.stderr else "")
        url = banner.split("serving ", 1)[1].split("/api/v1/", 1)[0]
        yield Gateway(url, mesh, running)
    finally:
        process.terminate()
        out, err = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 0, err
    assert "mesh gateway: stopped" in out
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A mesh of users, inventory and greeter (SayHello public), users enabled for acme, and a
    gateway for it."""
    mesh = MeshDir(tmp_path_factory.mktemp("gateway"))
    for module in ("users", "inventory", "greeter"):
        shutil.copytree(PROJECT / "modules" / module, mesh.modules / module)
    with mesh.up() as running:
        running.wait_until_up()
        enabled = mesh.run_cli("tenant", "enable", "acme", "users", "--state-dir", str(mesh.state))
        assert enabled.returncode == 0, enabled.stderr
        # No rate limit here: the restart test calls in a loop (the limit has a gateway of its own).
        with gateway_for(mesh, running, "--allow-origin", ALLOWED_ORIGIN, "--rate-limit", "0") as gateway:
            yield gateway


def test_a_caller_with_a_token_calls_a_module_with_json(served: Gateway) -> None:
    token = served.token("acme")
    ada = {"name": "Ada", "email": "ada@example.org"}
    created = served.eventually(
        lambda: (answer := served.call("users", "CreateUser", ada, token)).status == 200 and answer,
        "users to serve acme through the gateway",
    )
    user = created.body["user"]
    assert user["name"] == "Ada" and user["email"] == "ada@example.org" and user["id"]
    listed = served.call("users", "users.v1.Users.ListUsers", {}, token)
    assert listed.status == 200 and user in listed.body["users"]
    got = served.call("users", "GetUser", {"id": user["id"]}, token)
    assert got.status == 200 and got.body["user"] == user
    assert created.headers["Content-Type"].startswith("application/json")
    assert created.headers["X-Content-Type-Options"] == "nosniff" and created.headers["X-Request-Id"]
    echoed = served.request("POST", "/api/v1/users/ListUsers", token=token, X_Request_Id="trace-me-42")
    assert echoed.status == 200 and echoed.headers["X-Request-Id"] == "trace-me-42"


def test_every_refusal_has_its_http_status_and_reason(served: Gateway, tmp_path: Path) -> None:
    acme = served.token("acme")
    served.eventually(lambda: served.call("users", "ListUsers", {}, acme).status == 200, "users to serve acme")

    no_token = served.call("users", "ListUsers", {}, "")
    assert no_token.status == 401 and no_token.reason == "UNAUTHENTICATED"
    assert "Authorization: Bearer" in no_token.body["error"]["message"]
    forged = served.call("users", "ListUsers", {}, issue(SigningKey.load_or_create(tmp_path / "other.pem"), "acme"))
    assert forged.status == 401 and "not signed" in forged.body["error"]["message"]
    disabled = served.call("users", "ListUsers", {}, served.token("globex"))
    assert disabled.status == 403 and disabled.reason == "MODULE_DISABLED_FOR_TENANT"
    assert disabled.body["error"]["metadata"] == {"module": "users", "tenant": "globex"}

    bad_json = served.request("POST", "/api/v1/users/CreateUser", token=acme, body='{"nam": 1}')
    assert (
        bad_json.status == 400 and bad_json.reason == "BAD_REQUEST_BODY" and "nam" in bad_json.body["error"]["message"]
    )
    not_json = served.request("POST", "/api/v1/users/CreateUser", token=acme, body=b"\xff\xfe")
    assert not_json.status == 400 and not_json.reason == "BAD_REQUEST_BODY"
    invalid = served.call("users", "CreateUser", {"name": "", "email": "nobody"}, acme)
    assert invalid.status == 400 and invalid.body["error"]["code"] == "INVALID_ARGUMENT"

    no_module = served.call("userz", "ListUsers", {}, acme)
    assert no_module.status == 404 and "did you mean 'users'" in no_module.body["error"]["message"]
    near_miss = served.call("users", "ListUser", {}, acme)
    assert near_miss.status == 404 and "did you mean 'ListUsers'" in near_miss.body["error"]["message"]
    no_method = served.call("users", "Frobnicate", {}, acme)
    assert no_method.status == 404 and "CreateUser, GetUser, ListUsers" in no_method.body["error"]["message"]
    no_route = served.request("GET", "/api/v1/users/ListUsers", token=acme)
    assert no_route.status == 405 and "POST /api/v1/<module>/<Method>" in no_route.body["error"]["message"]
    too_big = served.request("POST", "/api/v1/users/CreateUser", token=acme, body="x" * (2 * 1024 * 1024))
    assert too_big.status == 413 and too_big.body["error"]["code"] == "RESOURCE_EXHAUSTED"


def test_health_endpoints_answer_for_load_balancers(served: Gateway) -> None:
    assert served.request("GET", "/healthz").body == {"status": "ok"}
    ready = served.eventually(lambda: (answer := served.request("GET", "/readyz")).status == 200 and answer, "ready")
    assert ready.body["status"] == "healthy" and set(ready.body["modules"]) == {"users", "inventory", "greeter"}


def test_cors_answers_only_the_allowed_origins(served: Gateway) -> None:
    preflight = {"Access_Control_Request_Method": "POST", "Access_Control_Request_Headers": "authorization"}
    allowed = served.request("OPTIONS", "/api/v1/users/ListUsers", Origin=ALLOWED_ORIGIN, **preflight)
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"]
    refused = served.request("OPTIONS", "/api/v1/users/ListUsers", Origin="https://evil.example", **preflight)
    assert refused.status == 403 and refused.reason == "CORS"
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_a_restarted_module_stays_routable(served: Gateway) -> None:
    """While `mesh restart` replaces the users process, every answer is the module's own (200)
    or 503 while no process serves it; afterwards calls reach the new process."""
    token = served.token("acme")
    served.eventually(lambda: served.call("users", "ListUsers", {}, token).status == 200, "users to serve acme")
    before = served.running.modules()["users"].address
    statuses: list[int] = []

    async def loop_calls(stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=WAIT_SECONDS)
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                async with session.post(served.url + "/api/v1/users/ListUsers", data="{}", headers=headers) as answer:
                    await answer.read()
                    statuses.append(answer.status)

    async def restart_while_calling() -> None:
        stop = asyncio.Event()
        calls = asyncio.create_task(loop_calls(stop))
        done = await asyncio.to_thread(served.mesh.run_cli, "restart", "users", "--state-dir", str(served.mesh.state))
        assert done.returncode == 0, done.stderr
        await asyncio.to_thread(
            served.eventually,
            lambda: served.running.modules()["users"].address != before,
            "users to serve from its new process",
        )
        stop.set()
        await calls

    asyncio.run(restart_while_calling())
    assert statuses and set(statuses) <= {200, 503}, sorted(set(statuses))
    served.eventually(lambda: served.call("users", "ListUsers", {}, token).status == 200, "users routable again")


def test_a_module_installed_while_a_client_loops_is_routable_at_once(tmp_path: Path) -> None:
    """A module registers itself with the running mesh (as one installed on another host does)
    while a client calls the gateway in a loop: the modules already there answer 200 all
    along; the new one is 404 (no such module), then 503 while it is brought up, then 200 for
    good, without restarting the gateway."""
    mesh = MeshDir(tmp_path / "mesh")
    shutil.copytree(PROJECT / "modules" / "users", mesh.modules / "users")
    elsewhere = tmp_path / "elsewhere" / "greeter"
    shutil.copytree(PROJECT / "modules" / "greeter", elsewhere)
    with mesh.up("--rate-limit", "0") as running:
        running.wait_until_up()
        enabled = mesh.run_cli("tenant", "enable", "acme", "users", "--state-dir", str(mesh.state))
        assert enabled.returncode == 0, enabled.stderr
        gateway = gateway_of_up(mesh, running)
        token = gateway.token("acme")
        gateway.eventually(lambda: gateway.call("users", "ListUsers", {}, token).status == 200, "users for acme")
        users_statuses: list[int] = []
        greeter_statuses: list[int] = []

        async def loop_calls(calls_after_greeter_answers: int) -> None:
            timeout = aiohttp.ClientTimeout(total=WAIT_SECONDS)
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while greeter_statuses.count(200) < calls_after_greeter_answers:
                    async with session.post(gateway.url + "/api/v1/users/ListUsers", data="{}", headers=headers) as a:
                        await a.read()
                        users_statuses.append(a.status)
                    hello = '{"name": "Ada"}'
                    async with session.post(gateway.url + "/api/v1/greeter/SayHello", data=hello) as answer:
                        await answer.read()
                        greeter_statuses.append(answer.status)

        async def install_while_calling() -> None:
            calls = asyncio.create_task(loop_calls(calls_after_greeter_answers=20))
            await asyncio.to_thread(
                running.wait_for, lambda: len(greeter_statuses) >= 3, "the client to call before the install"
            )
            with running.registered(elsewhere, tmp_path / "greeter-tls"):
                try:
                    await asyncio.wait_for(calls, WAIT_SECONDS * 2)
                except TimeoutError:
                    counts = {status: greeter_statuses.count(status) for status in set(greeter_statuses)}
                    raise AssertionError(f"greeter did not answer 20 times; its statuses: {counts}") from None

        asyncio.run(install_while_calling())
        assert users_statuses and set(users_statuses) == {200}, sorted(set(users_statuses))
        assert greeter_statuses[0] == 404 and set(greeter_statuses) <= {404, 503, 200}, sorted(set(greeter_statuses))
        first_answer = greeter_statuses.index(200)
        assert set(greeter_statuses[first_answer:]) == {200}, greeter_statuses[first_answer:]


def test_openapi_document_validates_and_covers_every_unary_method(served: Gateway) -> None:
    document = served.request("GET", "/openapi.json").body
    validate(document)  # the OpenAPI 3.1 specification's schema, by openapi-spec-validator
    modules = (("users", users_pb2), ("inventory", inventory_pb2), ("greeter", greeter_pb2))
    expected = {
        f"/api/v1/{module}/{method.name}"
        for module, generated in modules
        for service in generated.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if not method.client_streaming
    }
    assert set(document["paths"]) == expected
    create = document["paths"]["/api/v1/users/CreateUser"]["post"]
    request_schema = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]
    assert set(document["components"]["schemas"][request_schema]["properties"]) == {"name", "email"}
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/api/v1/greeter/SayHello"]["post"]["security"] == [{}, {"bearer": []}]
    assert "security" not in document["paths"]["/api/v1/greeter/GetGreetingCount"]["post"]


def test_a_public_method_is_called_without_a_token_and_the_others_are_not(served: Gateway) -> None:
    hello = served.eventually(
        lambda: (answer := served.call("greeter", "SayHello", {"name": "Ada"}, "")).status == 200 and answer,
        "greeter to answer SayHello without a token",
    )
    assert hello.body["message"] == "Hello, Ada!"
    # A token sent is forwarded: the module judges its tenant (greeter is not enabled for acme).
    with_token = served.call("greeter", "SayHello", {"name": "Ada"}, served.token("acme"))
    assert with_token.status == 403 and with_token.reason == "MODULE_DISABLED_FOR_TENANT"
    count = served.call("greeter", "GetGreetingCount", {"name": "Ada"}, "")
    assert count.status == 401 and count.reason == "UNAUTHENTICATED"
    forged = served.call("greeter", "SayHello", {"name": "Ada"}, "not-a-token")
    assert forged.status == 401, "a token sent is verified, on a public method too"


def test_metrics_count_requests_by_module_method_and_status(served: Gateway) -> None:
    token = served.token("acme")
    served.eventually(lambda: served.call("users", "ListUsers", {}, token).status == 200, "users to serve acme")
    assert served.call("nosuchmodule", "Anything", {}, token).status == 404
    exposition = served.request("GET", "/metrics")
    assert exposition.status == 200 and exposition.headers["Content-Type"].startswith("text/plain")
    counts = {
        (sample.labels["module"], sample.labels["method"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(exposition.body)
        if family.name == "mesh_gateway_requests"
        for sample in family.samples
        if sample.name == "mesh_gateway_requests_total"
    }
    assert counts[("users", "users.v1.Users.ListUsers", "200")] >= 1
    assert counts[("-", "-", "404")] >= 1
    served_by_module = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.body)
        if family.name in ("mesh_module_requests", "mesh_module_events")
        for sample in family.samples
    }
    assert served_by_module[("mesh_module_requests_total", (("module", "users"),))] >= 1
    published = (("module", "users"), ("outcome", "published"), ("type", "user.created"))
    created = served.call("users", "CreateUser", {"name": "Metrics", "email": f"m.{time.time_ns()}@example.org"}, token)
    assert created.status == 200
    served.eventually(
        lambda: any(
            sample.value >= 1
            for family in text_string_to_metric_families(served.request("GET", "/metrics").body)
            if family.name == "mesh_module_events"
            for sample in family.samples
            if tuple(sorted(sample.labels.items())) == published
        ),
        "the user.created event counted among the mesh's metrics",
    )


def test_a_plaintext_mesh_is_served_without_tokens_and_on_loopback_only(tmp_path: Path) -> None:
    """`mesh up --insecure`: the gateway says it verifies nothing, forwards x-tenant-id as sent
    (as the modules of such a mesh take it), and refuses to listen beyond this machine."""
    mesh = MeshDir(tmp_path)
    shutil.copytree(PROJECT / "modules" / "users", mesh.modules / "users")
    with mesh.up("--insecure") as running:
        running.wait_until_up()
        enabled = mesh.run_cli("tenant", "enable", "acme", "users", "--state-dir", str(mesh.state))
        assert enabled.returncode == 0, enabled.stderr
        public = mesh.run_cli("gateway", "--listen", "0.0.0.0:0", "--state-dir", str(mesh.state))
        assert public.returncode == 2 and "refusing to listen on 0.0.0.0:0 without TLS" in public.stderr
        with gateway_for(mesh, running) as gateway:
            listed = gateway.eventually(
                lambda: (
                    (answer := gateway.request("POST", "/api/v1/users/ListUsers", X_Tenant_Id="acme")).status == 200
                    and answer
                ),
                "users to serve acme through the plaintext gateway",
            )
            assert listed.body == {}  # no user yet: the canonical JSON of an empty ListUsersResponse
            other = gateway.request("POST", "/api/v1/users/ListUsers", X_Tenant_Id="globex")
            assert other.status == 403 and other.reason == "MODULE_DISABLED_FOR_TENANT"


def test_mesh_up_starts_a_gateway_and_runs_on_without_one_when_its_port_is_taken(tmp_path: Path) -> None:
    mesh = MeshDir(tmp_path)
    shutil.copytree(PROJECT / "modules" / "users", mesh.modules / "users")
    with mesh.up() as running:
        running.wait_until_up()
        gateway = gateway_of_up(mesh, running)
        assert gateway.request("GET", "/healthz").body == {"status": "ok"}
        # 503 until the gateway has heard from the coordinator which modules run (it just started).
        no_token = gateway.eventually(
            lambda: (answer := gateway.call("users", "ListUsers", {}, "")).status != 503 and answer,
            "the gateway to know the modules",
        )
        assert no_token.status == 401 and no_token.reason == "UNAUTHENTICATED"
        enabled = mesh.run_cli("tenant", "enable", "acme", "users", "--state-dir", str(mesh.state))
        assert enabled.returncode == 0, enabled.stderr
        token = gateway.token("acme")
        gateway.eventually(lambda: gateway.call("users", "ListUsers", {}, token).status == 200, "users for acme")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with mesh.up("--gateway-listen", f"127.0.0.1:{port}") as running:
            running.wait_until_up()
            running.wait_for(lambda: "the HTTP gateway cannot listen on" in running.text, "the gateway's warning")
            assert running.process.poll() is None  # the mesh runs on without it


def test_over_the_rate_limit_a_tenant_gets_429_until_its_bucket_refills(served: Gateway) -> None:
    """One call in five seconds per tenant and route, bursts of three: the fourth call at once
    is refused with Retry-After; another route is not; the bucket refills."""
    token = served.token("acme")
    served.eventually(lambda: served.call("users", "ListUsers", {}, token).status == 200, "users to serve acme")
    with gateway_for(served.mesh, served.running, "--rate-limit", "0.2", "--rate-burst", "3") as limited:
        other_route = {"id": "u-none"}
        limited.eventually(lambda: limited.call("users", "GetUser", other_route, token).status == 404, "routes known")
        answers = [limited.call("users", "ListUsers", {}, token) for _ in range(4)]
        assert [answer.status for answer in answers] == [200, 200, 200, 429]
        assert [answer.headers["RateLimit-Remaining"] for answer in answers[:3]] == ["2", "1", "0"]
        refused = answers[3]
        assert refused.reason == "RATE_LIMITED" and int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Limit"] == "3"
        assert limited.call("users", "GetUser", other_route, token).status == 404  # its own bucket: the module answers
        limited.eventually(lambda: limited.call("users", "ListUsers", {}, token).status == 200, "the bucket to refill")
        exposition = limited.request("GET", "/metrics").body
        assert 'mesh_gateway_rate_limited_total{method="users.v1.Users.ListUsers",module="users"}' in exposition


def _heard_from_other_gateways(gateway: Gateway) -> float:
    """The calls other gateways reported to this one, from its /metrics."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(gateway.request("GET", "/metrics").body)
        if family.name == "mesh_gateway_rate_limit_shared_calls"
        for sample in family.samples
        if sample.name == "mesh_gateway_rate_limit_shared_calls_total"
    )


def _routes_known(gateway: Gateway) -> bool:
    """Whether the gateway has the users module's routes (read without a call: no token taken)."""
    return "/api/v1/users/ListUsers" in gateway.request("GET", "/openapi.json").body.get("paths", {})


def test_two_gateways_share_a_tenants_rate_limit_through_nats(served: Gateway) -> None:
    """Two `mesh gateway` replicas, three calls a tenant and route between them (the rate all
    but nothing): the calls admitted by one come off the other's bucket, either way."""
    limit = ("--rate-limit", "0.001", "--rate-burst", "3")
    acme, globex = served.token("acme"), served.token("globex")
    with (
        gateway_for(served.mesh, served.running, *limit) as first,
        gateway_for(served.mesh, served.running, *limit) as second,
    ):
        for gateway in (first, second):
            gateway.eventually(lambda gateway=gateway: _routes_known(gateway), "the users routes to be known")
        answers = [first.call("users", "ListUsers", {}, acme) for _ in range(3)]
        assert [answer.status for answer in answers] == [200, 200, 200]
        second.eventually(lambda: _heard_from_other_gateways(second) >= 3, "the second gateway to hear of them")
        refused = second.call("users", "ListUsers", {}, acme)
        assert refused.status == 429 and refused.reason == "RATE_LIMITED"
        assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["RateLimit-Remaining"] == "0"

        # globex has not the users module: the module refuses it (403), but each call was admitted.
        assert [second.call("users", "ListUsers", {}, globex).status for _ in range(3)] == [403] * 3
        first.eventually(lambda: _heard_from_other_gateways(first) >= 3, "the first gateway to hear of them")
        assert first.call("users", "ListUsers", {}, globex).status == 429

    # `mesh up`'s own gateway shares through the embedded NATS too (its login, its permissions).
    of_up = gateway_of_up(served.mesh, served.running)
    of_up.eventually(lambda: _heard_from_other_gateways(of_up) >= 6, "mesh up's gateway to hear of all six calls")


def test_a_gateway_without_a_nats_to_share_its_limits_through_says_how_to_give_one(
    served: Gateway, tmp_path: Path
) -> None:
    """A gateway run away from the mesh's state folder has the coordinator and credentials, but
    no NATS: it refuses to start with limits it could not share, naming the ways out."""
    elsewhere = served.mesh.run_cli(
        "gateway",
        "--state-dir",
        str(tmp_path / "no-mesh-here"),
        "--coordinator",
        served.running.address,
        "--creds",
        str(served.mesh.state / "pki" / "operators" / "admin"),
    )
    assert elsewhere.returncode == 2, elsewhere.stderr
    assert "no NATS to share the rate limits" in elsewhere.stderr and "--nats-url" in elsewhere.stderr
    assert "Traceback" not in elsewhere.stderr


def test_a_tenants_plan_decides_its_limit(served: Gateway, tmp_path: Path) -> None:
    """The limits file: no limit by default, plan "free" two calls of users at once."""
    enabled = served.mesh.run_cli("tenant", "enable", "initech", "users", "--state-dir", str(served.mesh.state))
    assert enabled.returncode == 0, enabled.stderr
    limits = tmp_path / "limits.toml"
    limits.write_text(
        'rate = 0\n\n[plans.free]\nmodules.users = { rate = 0.2, burst = 2 }\n\n[tenants]\ninitech = "free"\n'
    )
    acme, initech = served.token("acme"), served.token("initech")
    with gateway_for(served.mesh, served.running, "--rate-limits", str(limits)) as limited:
        limited.eventually(lambda: limited.call("users", "ListUsers", {}, initech).status == 200, "users for initech")
        answers = [limited.call("users", "ListUsers", {}, initech) for _ in range(2)]
        assert answers[-1].status == 429 and answers[-1].headers["RateLimit-Limit"] == "2"
        assert "0.2 calls a second" in answers[-1].body["error"]["message"]
        unlimited = [limited.call("users", "ListUsers", {}, acme) for _ in range(5)]
        assert [answer.status for answer in unlimited] == [200] * 5
        assert "RateLimit-Limit" not in unlimited[0].headers

    limits.write_text('[tenants]\ninitech = "gold"\n')
    refused = served.mesh.run_cli("gateway", "--rate-limits", str(limits), "--state-dir", str(served.mesh.state))
    assert refused.returncode == 2
    assert "plan(s) gold, which [plans] does not define" in refused.stderr and refused.stderr.count("\n") == 1


def test_readyz_is_503_while_a_critical_module_is_down_and_200_again(tmp_path: Path) -> None:
    mesh = MeshDir(tmp_path)
    mesh.module("base", restart="never")  # critical: app needs it
    mesh.module("app", depends=["base"])
    with mesh.up() as running:
        before = running.wait_until_up()
        gateway = gateway_of_up(mesh, running)
        gateway.eventually(lambda: gateway.request("GET", "/readyz").status == 200, "the mesh to be ready")
        os.kill(before["base"].pid, signal.SIGKILL)
        down = gateway.eventually(
            lambda: (answer := gateway.request("GET", "/readyz")).status == 503 and answer, "/readyz to say 503"
        )
        assert down.body["status"] == "unhealthy" and down.body["modules"]["base"] == "unhealthy"
        restarted = mesh.run_cli("restart", "base", "--state-dir", str(mesh.state))
        assert restarted.returncode == 0, restarted.stderr
        gateway.eventually(lambda: gateway.request("GET", "/readyz").status == 200, "/readyz to say 200 again")
