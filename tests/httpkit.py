"""A real HTTP client (aiohttp) for the gateway's end-to-end tests: requests and their
answers, with a deadline for what happens eventually."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
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
