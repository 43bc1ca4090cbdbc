"""The two ways `mesh up` fails before the mesh runs, as exceptions the CLI turns into exit codes."""

from __future__ import annotations


class ValidationFailed(Exception):
    """The mesh cannot start: bad manifests or graph. `lines` holds one line per problem."""

    def __init__(self, lines: list[str], reason: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.reason = reason


class StartupFailed(Exception):
    """A critical module failed; everything that had started was stopped again."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
