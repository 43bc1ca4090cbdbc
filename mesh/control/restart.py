"""When to restart a module process that exited: its restart policy, as pure logic."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from mesh.protocol.manifest import RestartSpec


@dataclass(frozen=True)
class RestartDecision:
    """Restart after `delay` seconds, or not, and why."""

    restart: bool
    delay: float
    reason: str


class RestartBudget:
    """Counts one module's restarts in a sliding window and spaces them with exponential backoff."""

    def __init__(self, spec: RestartSpec) -> None:
        self.spec = spec
        self._restarts: deque[float] = deque()

    def decide(self, exit_code: int | None, now: float) -> RestartDecision:
        """Whether to restart a process that exited with `exit_code` (None: killed by a signal)."""
        spec = self.spec
        if spec.policy == "never":
            return RestartDecision(False, 0.0, "its restart policy is 'never'")
        if spec.policy == "on-failure" and exit_code == 0:
            return RestartDecision(False, 0.0, "it exited cleanly and its restart policy is 'on-failure'")
        while self._restarts and now - self._restarts[0] > spec.window_seconds:
            self._restarts.popleft()
        if spec.max_restarts and len(self._restarts) >= spec.max_restarts:
            return RestartDecision(
                False,
                0.0,
                f"it was restarted {len(self._restarts)} times within {spec.window_seconds:g} s "
                f"(max_restarts = {spec.max_restarts}); giving up",
            )
        delay = min(spec.backoff_initial_seconds * 2 ** len(self._restarts), spec.backoff_max_seconds)
        return RestartDecision(True, delay, f"restart {len(self._restarts) + 1} in {delay:g} s")

    def record(self, now: float) -> None:
        """Count a restart made at `now`."""
        self._restarts.append(now)
