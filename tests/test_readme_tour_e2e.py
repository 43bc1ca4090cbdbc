"""The README's tour, run exactly as printed, twice in a row, against the mesh `make run` starts
(`mesh up --modules modules`, with a state folder of the test's own so the developer's `.mesh`
is untouched); and `mesh call`'s errors and `mesh reset`, on the same mesh.

The tour's blocks are the ```sh blocks of README.md marked `<!-- tour -->`; they run in one bash
from the project folder, as a reader pastes them into one terminal. The test of `mesh reset`
stops the mesh, so it comes last in this file.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from openapi_spec_validator import validate

from conftest import PROJECT
from httpkit import ServerEvent, gateway_of_up
from meshkit import WAIT_SECONDS, MeshDir, RunningMesh

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("node") is None or not (PROJECT / "modules" / "audit" / "node_modules").exists(),
        reason="the tour calls the Node.js module audit: needs node and its node_modules (make run installs them)",
    ),
]

TOUR_MARKER = "<!-- tour -->"
TOUR_SECTION = "## A five-minute tour"
# A tour run waits for events a few times (`--wait-for`, 60 s each at most).
TOUR_SECONDS = 4 * WAIT_SECONDS
RPC_EXIT_OFFSET = 64  # grpcurl's: 64 + the gRPC status code


@dataclass
class Tour:
    """The running mesh and the environment the README's commands find it with."""

    mesh: MeshDir
    running: RunningMesh
    env: dict[str, str]

    def bash(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=PROJECT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TOUR_SECONDS,
        )

    def mesh_cli(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.mesh.mesh_command(*args),
            cwd=PROJECT,
            env={**self.env, **env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tour]:
    mesh = MeshDir(tmp_path_factory.mktemp("tour"))
    # `make run`'s modules folder itself: audit (Node.js) loads the project's .proto files from
    # where it lies. The later --modules wins over the one meshkit passes.
    with mesh.up("--modules", str(PROJECT / "modules")) as running:
        running.wait_until_up()
        env = mesh.environment(MESH_COORDINATOR=running.address, MESH_STATE_DIR=str(mesh.state))
        tour = Tour(mesh, running, env)
        # The tour begins with `mesh status` and `mesh health`, which exit 1 for a mesh that is
        # not yet whole (a module's NATS connection still coming up): a reader starts once it is.
        running.wait_for(lambda: tour.mesh_cli("health").returncode == 0, "the mesh to report healthy")
        yield tour


def tour_blocks() -> list[str]:
    text = (PROJECT / "README.md").read_text()
    return re.findall(re.escape(TOUR_MARKER) + r"\n```sh\n(.*?)```", text, re.S)


def test_every_block_of_the_tour_is_run():
    section = (PROJECT / "README.md").read_text().partition(TOUR_SECTION)[2].partition("\n## ")[0]
    assert section.count("```sh") == section.count(TOUR_MARKER + "\n```sh") == len(tour_blocks()) >= 4


def test_the_tour_works_as_printed_twice_in_a_row(tour: Tour):
    script = "".join(tour_blocks())
    orders = [check_tour_output(tour.bash(script)) for _ in range(2)]
    assert orders[0] != orders[1], "each run of the tour places an order of its own"


def check_tour_output(result: subprocess.CompletedProcess[str]) -> str:
    """The run succeeded and showed the user, the order, its quote, notification and audit
    entry; returns the order's id."""
    output = result.stdout
    assert result.returncode == 0, f"the tour failed ({result.returncode}):\n{result.stderr}\n{output}"
    assert "Traceback" not in result.stderr + output
    assert "RUNNING" in output and "order.created" in output  # mesh status, mesh events
    user = re.search(r'"id": "(u-\w+)",\s+"name": "Ada",\s+"email": "ada\.\d+@example\.org"', output)
    assert user, f"no user in\n{output}"
    order = re.search(r'"id": "(o-\w+)",\s+"user_id": "(u-\w+)",\s+"sku": "book-42",\s+"quantity": "2"', output)
    assert order and order[2] == user[1], f"no order of the user in\n{output}"
    order_id = order[1]
    assert output.count(f'"id": "{order_id}"') == 2, "mesh call and grpcurl both show the order"
    assert re.search(rf'"order_id": "{order_id}",\s+"amount": "2000",\s+"currency": "USD"', output), "no quote"
    assert f'"text": "Your order {order_id}: 2 x book-42."' in output, "no notification"
    assert re.search(rf'"event_type": "order.created",\s+"data_json": ".*{order_id}', output), "no audit entry"
    assert '"currency"' in output and "EUR" in output  # mesh config effective pricing acme
    return order_id


def test_the_tours_calls_work_over_http_through_the_gateway(tour: Tour):
    """The tour's story through the HTTP gateway `mesh up` started, with a tenant's token: a
    user, stock, an order (placed and read back by REST routes too), and the notification that
    confirms it, listed and streamed live as Server-Sent Events."""
    for module in ("orders", "notifications"):
        enabled = tour.mesh_cli("tenant", "enable", "acme", module, "--with-dependencies")
        assert enabled.returncode == 0, enabled.stderr
    token = tour.mesh_cli("token", "issue", "--tenant", "acme").stdout.strip()
    gateway = gateway_of_up(tour.mesh, tour.running)
    email = f"ada.{time.time_ns()}@example.org"
    created = gateway.eventually(
        lambda: (
            (answer := gateway.call("users", "CreateUser", {"name": "Ada", "email": email}, token)).status == 200
            and answer
        ),
        "users to serve acme",
    )
    user_id = created.body["user"]["id"]
    stocked = gateway.call("inventory", "SetStock", {"sku": "book-http", "quantity": 5}, token)
    assert stocked.status == 200, stocked.body
    placed = gateway.call("orders", "PlaceOrder", {"userId": user_id, "sku": "book-http", "quantity": 2}, token)
    assert placed.status == 200, placed.body
    order_id = placed.body["order"]["id"]
    got = gateway.call("orders", "GetOrder", {"id": order_id}, token)
    assert got.status == 200 and got.body["order"]["id"] == order_id
    gateway.eventually(
        lambda: order_id in json.dumps(gateway.call("notifications", "ListNotifications", {}, token).body),
        "the order's confirmation among acme's notifications",
    )

    rest_got = gateway.request("GET", f"/api/v1/orders/{order_id}", token=token)  # option (google.api.http)
    assert rest_got.status == 200 and rest_got.body == got.body
    placed_by_rest: dict[str, str] = {}

    def place_another_order() -> None:  # while the watch below streams
        order = {"userId": user_id, "sku": "book-http", "quantity": 1}
        answer = gateway.request("POST", "/api/v1/orders", token=token, body=json.dumps(order))
        assert answer.status == 200, answer.body
        placed_by_rest["id"] = answer.body["order"]["id"]

    def confirms_both(events: list[ServerEvent]) -> bool:
        texts = json.dumps([event.data for event in events])
        return "id" in placed_by_rest and order_id in texts and placed_by_rest["id"] in texts

    began, events = gateway.watch(
        "notifications", "WatchNotifications", {}, token, until=confirms_both, meanwhile=place_another_order
    )
    assert began.status == 200 and began.headers["Content-Type"].startswith("text/event-stream")
    assert confirms_both(events), events
    assert all(event.kind == "message" and event.data["notification"]["text"] for event in events)

    document = gateway.request("GET", "/openapi.json").body
    validate(document)
    get_order = document["paths"]["/api/v1/orders/{id}"]["get"]
    assert get_order["parameters"] == [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert "post" in document["paths"]["/api/v1/orders"]
    assert (
        "text/event-stream"
        in document["paths"]["/api/v1/notifications/WatchNotifications"]["post"]["responses"]["200"]["content"]
    )


def test_call_refuses_bad_input_in_one_line(tour: Tour):
    cases = {
        ("users", "CreateUser", "-d", '{"name": '): "-d is not a valid users.v1.CreateUserRequest: Failed to load JSON",
        ("users", "CreateUser", "-d", '{"nmae": "Ada"}'): 'has no field named "nmae"',
        ("users", "CreateUsr"): "module users has no method CreateUsr; did you mean users.v1.Users/CreateUser?",
        ("users", "users.v1.Users/Remove"): "module users has no method users.v1.Users/Remove",
        ("nope", "ListUsers"): "nope",
        ("users", "ListUsers", "-H", "no colon"): "expected 'key: value'",
        ("users", "ListUsers", "--field", "people"): "--field people: the response has no 'people'",
    }
    for args, expected in cases.items():
        result = tour.mesh_cli("call", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)


def test_call_exits_like_grpcurl_on_an_rpc_error(tour: Tour):
    missing = tour.mesh_cli("call", "pricing", "pricing.v1.Pricing/GetQuote", "-d", '{"order_id": "o-none"}')
    assert missing.returncode == RPC_EXIT_OFFSET + 5, missing.stderr  # NOT_FOUND
    assert missing.stderr.startswith("ERROR:\n  Code: NotFound\n  Message: no quote for order 'o-none'")

    refused = tour.mesh_cli("call", "users", "ListUsers", "--tenant", "nobody")
    assert refused.returncode == RPC_EXIT_OFFSET + 7, refused.stderr  # PERMISSION_DENIED
    assert "Code: PermissionDenied" in refused.stderr
    assert "Reason: MODULE_DISABLED_FOR_TENANT" in refused.stderr


def test_call_reads_the_request_from_stdin_and_reaches_audit_by_full_name(tour: Tour):
    created = tour.mesh_cli(
        "call", "users", "CreateUser", "-d", "@-", "--field", "user.email", stdin='{"name": "Bo", "email": "bo@x.org"}'
    )
    assert (created.returncode, created.stdout) == (0, "bo@x.org\n"), created.stderr
    audit = tour.mesh_cli("call", "audit", "audit.v1.Audit/ListEntries")
    assert audit.returncode == 0 and audit.stdout.startswith("{"), audit.stderr


def test_call_without_a_coordinator_exits_3(tour: Tour):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    result = tour.mesh_cli("call", "users", "ListUsers", MESH_COORDINATOR=closed)
    assert result.returncode == 3, result.stderr
    assert f"no coordinator answers at {closed}" in result.stderr


def test_reset_refuses_while_running_then_empties_the_stopped_mesh(tour: Tour):
    state = tour.mesh.state
    refused = tour.mesh_cli("reset")
    assert refused.returncode == 1 and "refused: a mesh is running" in refused.stderr, refused.stderr
    assert (state / "nats").is_dir() and (state / "state" / "users").is_dir()

    tour.running.kill_everything()  # the mesh stops as after Ctrl-C
    (state / "notes.txt").write_text("not the mesh's: reset leaves it\n")
    ca = (state / "pki" / "ca.pem").read_bytes()
    reset = tour.mesh_cli("reset")
    assert reset.returncode == 0, reset.stderr
    left = {path.name for path in state.iterdir()}
    assert left == {"pki", "coordinator.lock", "notes.txt"}, left
    assert (state / "pki" / "ca.pem").read_bytes() == ca

    everything = tour.mesh_cli("reset", "--all")
    assert everything.returncode == 0, everything.stderr
    assert {path.name for path in state.iterdir()} == {"coordinator.lock", "notes.txt"}
