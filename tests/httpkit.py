"""A real HTTP client (aiohttp) for the gateway's end-to-end tests: requests and their
answers, with a deadline for what happens eventually."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from meshkit import WAIT_SECONDS, MeshDir, RunningMesh


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]
    """Looked up without regard to case, as HTTP names headers."""

    @property
    def reason(self) -> str:
        return self.body["error"].get("reason", "")


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event: its kind ("message" unless named), its data (JSON), its id."""

    kind: str
    data: Any
    id: str = ""


async def server_events(response: aiohttp.ClientResponse) -> AsyncIterator[ServerEvent]:
    """The events of a text/event-stream answer as they arrive (comment lines skipped)."""
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
        elif fields:
            yield ServerEvent(fields.get("event", "message"), json.loads(fields["data"]), fields.get("id", ""))
            fields = {}


@dataclass(frozen=True)
class Gateway:
    url: str
    mesh: MeshDir
    running: RunningMesh

    def token(self, tenant: str) -> str:
        done = self.mesh.run_cli("token", "issue", "--tenant", tenant, "--state-dir", str(self.mesh.state))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def request(
        self, method: str, path: str, *, token: str = "", body: bytes | str | None = None, **headers: str
    ) -> Answer:
        sent = {key.replace("_", "-"): value for key, value in headers.items()}
        if token:
            sent["Authorization"] = f"Bearer {token}"

        async def send() -> Answer:
            timeout = aiohttp.ClientTimeout(total=WAIT_SECONDS)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.request(method, self.url + path, data=body, headers=sent) as response:
                    text = await response.text()
                    json_body = text and response.content_type == "application/json"
                    return Answer(response.status, json.loads(text) if json_body else text, response.headers.copy())

        return asyncio.run(send())

    def call(self, module: str, method: str, payload: dict[str, Any], token: str) -> Answer:
        return self.request("POST", f"/api/v1/{module}/{method}", token=token, body=json.dumps(payload))

    def watch(
        self,
        module: str,
        method: str,
        payload: dict[str, Any],
        token: str,
        *,
        until: Callable[[list[ServerEvent]], bool],
        meanwhile: Callable[[], None] = lambda: None,
    ) -> tuple[Answer, list[ServerEvent]]:
        """Call a server-streaming method and read its events until `until(events)` holds or the
        stream ends; `meanwhile` runs (in a thread) once the stream has begun."""

        async def read() -> tuple[Answer, list[ServerEvent]]:
            timeout = aiohttp.ClientTimeout(total=WAIT_SECONDS)
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(timeout=timeout) as session:
                url = f"{self.url}/api/v1/{module}/{method}"
                async with session.post(url, data=json.dumps(payload), headers=headers) as response:
                    if response.status != 200:
                        return Answer(response.status, await response.json(), response.headers.copy()), []
                    answer = Answer(response.status, None, response.headers.copy())
                    events: list[ServerEvent] = []

                    async def collect() -> None:
                        async for event in server_events(response):
                            events.append(event)
                            if until(events) or event.kind == "end":
                                return
                        raise AssertionError(f"the stream closed without an end event after {events}")

                    acting = asyncio.create_task(asyncio.to_thread(meanwhile))
                    reading = asyncio.create_task(collect())
                    done, _pending = await asyncio.wait((acting, reading), return_when=asyncio.FIRST_COMPLETED)
                    if acting in done and (acting.exception() is not None or until(events)):
                        reading.cancel()  # it failed, or what it awaited came before it was done
                        with contextlib.suppress(asyncio.CancelledError):
                            await reading
                        await acting  # its failure is the test's
                        return answer, events
                    try:
                        await reading
                    except TimeoutError:
                        raise AssertionError(f"timed out waiting for the events; got {events}") from None
                    await acting
                    return answer, events

        return asyncio.run(read())

    def eventually(self, condition: Any, what: str) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            found = condition()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


def gateway_of_up(mesh: MeshDir, running: RunningMesh) -> Gateway:
    """The gateway `mesh up` started, at the address it printed."""
    banner = running.wait_for(lambda: re.search(r"gateway: (http://127\.0\.0\.1:\d+)/api/v1/", running.text), "url")
    return Gateway(banner.group(1), mesh, running)
