"""A new module's service in docker-compose.yml, added as text beside the example modules'.

The file is edited as text, never loaded and dumped again: a YAML library's round trip drops
the comments (the file's header is its documentation) and rewrites the anchors and the flow
style. The service takes the example modules' shape: the shared `x-module` and `x-module-env`
anchors, MESH_MODULE and MESH_ADVERTISE_HOST, and the module's credentials as the secret
`<name>-tls` mounted at /run/secrets/mesh-tls, declared under the top-level `secrets:` as
`./secrets/<name>` (the folder the header's `mesh creds issue` loop writes)."""

from __future__ import annotations

import re
from pathlib import Path

COMPOSE_FILE = "docker-compose.yml"
WIDTH = 100
_ANCHORS = ("&module", "&module-env")
_YAML_NON_STRINGS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
"""Names YAML 1.1 reads as a boolean or null unless quoted."""


class ComposeShapeError(ValueError):
    """The compose file lacks what a module's service builds on; the message says what."""


class ServiceExists(ValueError):
    """The compose file has a service (or secret) of the module's name already."""


def service_block(name: str) -> str:
    """The module's entry under `services:`."""
    scalar, secret = _scalar(name), f"{name}-tls"
    secrets = f"    secrets: [{{source: {secret}, target: /run/secrets/mesh-tls}}]\n"
    if len(secrets) - 1 > WIDTH:
        secrets = f"    secrets:\n      - source: {secret}\n        target: /run/secrets/mesh-tls\n"
    return (
        f"  {scalar}:\n"
        "    <<: *module\n"
        "    environment:\n"
        "      <<: *module-env\n"
        f"      MESH_MODULE: {scalar}\n"
        f"      MESH_ADVERTISE_HOST: {scalar}\n"
        f"{secrets}"
    )


def secret_block(name: str) -> str:
    """The module's credentials under the top-level `secrets:`."""
    return f"  {name}-tls:\n    file: ./secrets/{name}\n"


def with_service(text: str, name: str) -> str:
    """`text` with the module's service appended to `services:` and its secret to `secrets:`
    (each after the section's last entry, before the blank lines that end it).

    Raises:
        ComposeShapeError: No top-level `services:`, or no module anchors.
        ServiceExists: A service or secret of that name is there already.
    """
    lines = (text if text.endswith("\n") else text + "\n").splitlines(keepends=True)
    missing = [anchor for anchor in _ANCHORS if not re.search(rf"{re.escape(anchor)}\s*$", text, re.MULTILINE)]
    if missing:
        raise ComposeShapeError(f"it has no {' or '.join(missing)} anchor, the shape of a module's service")
    services, secrets = _section(lines, "services"), _section(lines, "secrets")
    if services is None:
        raise ComposeShapeError("it has no top-level 'services:'")
    for section, entry in ((services, name), (secrets, f"{name}-tls")):
        if section is not None and _has_entry(lines[section[0] : section[1]], entry):
            raise ServiceExists(f"it has '{entry}' already")
    if secrets is None:
        lines[services[1] : services[1]] = [service_block(name)]
        return "".join(lines) + "\nsecrets:\n" + secret_block(name)
    for at, block in sorted([(services[1], service_block(name)), (secrets[1], secret_block(name))], reverse=True):
        lines[at:at] = [block]
    return "".join(lines)


def _scalar(value: str) -> str:
    return f'"{value}"' if value in _YAML_NON_STRINGS else value


def _section(lines: list[str], key: str) -> tuple[int, int] | None:
    """(index of the top-level `key:` line, index where a new last entry goes), or None."""
    start = next((i for i, line in enumerate(lines) if re.match(rf"{key}:\s*(#.*)?$", line)), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"[^\s#]", lines[i])), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end


def _has_entry(section: list[str], entry: str) -> bool:
    spellings = "|".join(re.escape(spelling) for spelling in (entry, f'"{entry}"', f"'{entry}'"))
    return any(re.match(rf"  ({spellings}):\s*(#.*)?$", line) for line in section)


def add_service(compose: Path, name: str) -> str:
    """Add the module's service to the compose file; returns what was done, for the user.

    Raises:
        ComposeShapeError, ServiceExists: see `with_service`; nothing was written.
    """
    compose.write_text(with_service(compose.read_text(), name))
    return f"added the service '{name}' and its secret '{name}-tls' to {compose}"
