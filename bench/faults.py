"""`make faults`: faults injected into the example mesh under load, and what callers saw.

The example mesh (modules/) runs under `mesh up` as a user runs it (mTLS, embedded NATS).
CLIENTS concurrent clients place orders without pause (orders calls users and inventory;
notifications is an optional dependency of orders), while, one after the other:

* `mesh restart inventory`  — the new process starts beside the old one (zero downtime);
* `mesh reload pricing`     — a reload in place;
* `kill -9` of notifications — a crash; the supervisor restarts it;
* `kill -STOP` of users     — a hung process; the liveness watch kills and restarts it;
* `kill -9` of nats-server  — the coordinator restarts it on the same port;
* SIGINT of `mesh up`, then `mesh up` again — a full stop and start.

For each fault it prints the calls made while it was injected and until the mesh was whole
again, those that failed, by status code, and how long recovery took; then whether stock
was oversold (orders placed against stock removed). A measurement, not a test: the figures
go to docs/reliability.md.

    python -m bench.faults [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from inventory.v1 import inventory_pb2, inventory_pb2_grpc
from mesh.protocol.transport import Transport
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, module_pb2
from orders.v1 import orders_pb2, orders_pb2_grpc
from sdk import State
from users.v1 import users_pb2, users_pb2_grpc

PROJECT = Path(__file__).resolve().parent.parent
STOCK = 1_000_000
SKU = "fault-sku"
UP_DEADLINE_SECONDS = 180.0
SETTLE_SECONDS = 2.0
"""Load kept on after a fault is over, so late failures are counted too."""


@dataclass
class Outcomes:
    """What the clients saw during one fault."""

    codes: Counter[str] = field(default_factory=Counter)
    recovery_seconds: float = 0.0
    examples: dict[str, str] = field(default_factory=dict)
    """The first failure's details, by code (what a user would read)."""

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    @property
    def failed(self) -> int:
        return self.calls - self.codes["OK"]


class ExampleMesh:
    """`mesh up` of the example modules in a scratch state folder."""

    def __init__(self, scratch: Path, env: dict[str, str]) -> None:
        self.state = scratch / ".mesh"
        self._env = env
        self.process: subprocess.Popen[str] | None = None

    def up(self) -> dict[str, module_pb2.ModuleStatus]:
        command = [sys.executable, "-m", "mesh.cli", "up", "--modules", str(PROJECT / "modules")]
        command += ["--state-dir", str(self.state), "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0"]
        self.process = subprocess.Popen(
            command, cwd=PROJECT, env=self._env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + UP_DEADLINE_SECONDS
        for line in self.process.stdout:
            if "mesh is up" in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the example mesh did not come up")
        else:
            raise RuntimeError(f"mesh up exited with {self.process.wait()}")
        # Its output keeps being read, so the pipe never fills and blocks it.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        return asyncio.run(self.modules())

    @property
    def info(self) -> dict[str, object]:
        return dict(json.loads((self.state / "coordinator.json").read_text()))

    @property
    def transport(self) -> Transport:
        credentials = self.info.get("credentials")
        return Transport(Path(str(credentials)) if credentials else None)

    async def modules(self) -> dict[str, module_pb2.ModuleStatus]:
        async with self.transport.channel(str(self.info["address"])) as channel:
            reply = await coordinator_pb2_grpc.CoordinatorStub(channel).ListModules(
                coordinator_pb2.ListModulesRequest(), timeout=30
            )
        return {module.name: module for module in reply.modules}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=120)


async def place_orders(
    mesh: ExampleMesh, user_id: str, clients: int, outcomes: Callable[[], Outcomes], stop: asyncio.Event
) -> int:
    """Place orders from `clients` tasks until `stop`; each outcome goes to the current fault's
    counter. Returns the orders that succeeded. A client re-reads orders' address when a call
    fails (it changes when the whole mesh is started again)."""
    placed = 0

    async def client() -> None:
        nonlocal placed
        while not stop.is_set():
            try:
                address = (await mesh.modules())["orders"].address
            except (grpc.aio.AioRpcError, OSError, ValueError, KeyError):
                address = ""
            if not address:  # the whole mesh is starting again
                await asyncio.sleep(0.1)
                continue
            async with mesh.transport.channel(address) as channel:
                stub = orders_pb2_grpc.OrdersStub(channel)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
                while not stop.is_set():
                    request = orders_pb2.PlaceOrderRequest(user_id=user_id, sku=SKU, quantity=1)
                    try:
                        await stub.PlaceOrder(request, timeout=30)
                        outcomes().codes["OK"] += 1
                        placed += 1
                    except grpc.aio.AioRpcError as error:
                        seen = outcomes()
                        seen.codes[error.code().name] += 1
                        seen.examples.setdefault(error.code().name, str(error.details())[:300])
                        break

    await asyncio.gather(*(client() for _ in range(clients)))
    return placed


async def until(condition: Callable[[], Awaitable[bool]], what: str, deadline_seconds: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def running_again(mesh: ExampleMesh, name: str, old_pid: int) -> bool:
    try:
        module = (await mesh.modules())[name]
    except (grpc.aio.AioRpcError, KeyError):
        return False
    return module.pid != old_pid and module.state == State.RUNNING.value


def nats_server_pid(mesh: ExampleMesh) -> int:
    assert mesh.process is not None
    for child in psutil.Process(mesh.process.pid).children(recursive=True):
        if "nats-server" in child.name():
            return child.pid
    raise RuntimeError("no embedded nats-server below mesh up")


async def run(clients: int) -> list[tuple[str, Outcomes]]:
    with tempfile.TemporaryDirectory() as scratch_name:
        env = {**os.environ, "MESH_LIVENESS_INTERVAL_SECONDS": "1", "MESH_LIVENESS_TIMEOUT_SECONDS": "2"}
        mesh = ExampleMesh(Path(scratch_name), env)
        modules = await asyncio.to_thread(mesh.up)
        try:
            return await inject_faults(mesh, modules, clients)
        finally:
            await asyncio.to_thread(mesh.stop)


async def inject_faults(
    mesh: ExampleMesh, modules: dict[str, module_pb2.ModuleStatus], clients: int
) -> list[tuple[str, Outcomes]]:
    transport = mesh.transport
    async with transport.channel(modules["users"].address) as channel:
        users = users_pb2_grpc.UsersStub(channel)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
        created = await users.CreateUser(users_pb2.CreateUserRequest(name="Load", email="load@example.org"), timeout=30)
    async with transport.channel(modules["inventory"].address) as channel:
        inventory = inventory_pb2_grpc.InventoryStub(channel)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
        await inventory.SetStock(inventory_pb2.SetStockRequest(sku=SKU, quantity=STOCK), timeout=30)
    results: list[tuple[str, Outcomes]] = [("no fault (baseline)", Outcomes())]
    stop = asyncio.Event()
    load = asyncio.create_task(place_orders(mesh, created.user.id, clients, lambda: results[-1][1], stop))

    async def fault(name: str, inject: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(SETTLE_SECONDS)
        results.append((name, Outcomes()))
        started = time.monotonic()
        await inject()
        results[-1][1].recovery_seconds = time.monotonic() - started
        await asyncio.sleep(SETTLE_SECONDS)
        print(f"{name}: {dict(results[-1][1].codes)} {results[-1][1].examples}", flush=True)

    async def control(call: Callable[[coordinator_pb2_grpc.CoordinatorStub], Awaitable[object]]) -> None:
        async with transport.channel(str(mesh.info["address"])) as channel:
            await call(coordinator_pb2_grpc.CoordinatorStub(channel))

    async def crash(name: str, signum: int) -> None:
        pid = (await mesh.modules())[name].pid
        os.kill(pid, signum)
        await until(lambda: running_again(mesh, name, pid), f"{name} to run again")
        if signum == signal.SIGSTOP:
            with contextlib.suppress(ProcessLookupError):  # the liveness watch killed it already
                os.kill(pid, signal.SIGKILL)

    async def kill_nats() -> None:
        pid = nats_server_pid(mesh)
        os.kill(pid, signal.SIGKILL)
        await until(lambda: _replaced(mesh, pid), "nats-server to be restarted")

    async def stop_and_start() -> None:
        await asyncio.to_thread(mesh.stop)
        await asyncio.to_thread(mesh.up)

    await fault(
        "mesh restart inventory",
        lambda: control(lambda s: s.RestartModule(coordinator_pb2.RestartModuleRequest(name="inventory"), timeout=120)),
    )
    await fault(
        "mesh reload pricing",
        lambda: control(lambda s: s.ReloadModule(coordinator_pb2.ReloadModuleRequest(name="pricing"), timeout=120)),
    )
    await fault("kill -9 notifications", lambda: crash("notifications", signal.SIGKILL))
    await fault("kill -STOP users", lambda: crash("users", signal.SIGSTOP))
    await fault("kill -9 nats-server", kill_nats)
    await fault("SIGINT of mesh up, then mesh up", stop_and_start)
    stop.set()
    placed = await load
    async with mesh.transport.channel((await mesh.modules())["inventory"].address) as channel:
        inventory = inventory_pb2_grpc.InventoryStub(channel)  # type: ignore[no-untyped-call]  # protoc's generated *_pb2_grpc.py carries no annotations
        left = await inventory.GetStock(inventory_pb2.GetStockRequest(sku=SKU), timeout=30)
    removed = STOCK - left.quantity
    print(f"orders placed: {placed}; stock removed: {removed} (sold without stock removed: {max(placed - removed, 0)})")
    return results


async def _replaced(mesh: ExampleMesh, old_pid: int) -> bool:
    try:
        return nats_server_pid(mesh) != old_pid
    except RuntimeError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    results = asyncio.run(run(args.clients))
    print(f"\n{args.clients} clients placing orders without pause\n")
    print("| fault | calls | failed | failures by code | recovered in |")
    print("|---|---:|---:|---|---:|")
    for name, outcomes in results:
        failures = ", ".join(f"{code} {n}" for code, n in sorted(outcomes.codes.items()) if code != "OK") or "—"
        recovered = f"{outcomes.recovery_seconds:.1f} s" if outcomes.recovery_seconds else "—"
        print(f"| {name} | {outcomes.calls} | {outcomes.failed} | {failures} | {recovered} |")


if __name__ == "__main__":
    main()
