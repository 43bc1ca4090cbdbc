"""A Reload that only moves dependencies: when a dependency restarts at a new address, its
dependents are reloaded with settings that differ from their own in the dependencies'
addresses alone. Such a Reload must not re-run hooks or close anything (a full one would close
databases under running handlers): the module stays as it is, and the channels its stubs use
switch to the new addresses.
"""

from __future__ import annotations

from mesh.v1 import lifecycle_pb2


def endpoints_only(new: lifecycle_pb2.ModuleSettings, old: lifecycle_pb2.ModuleSettings | None) -> bool:
    """Whether `new` differs from `old` only in addresses of the same dependencies (same names,
    same availability): a change the module can follow without re-initializing."""
    if old is None:
        return False
    return _without_addresses(new) == _without_addresses(old) and _addresses(new) != _addresses(old)


def _without_addresses(settings: lifecycle_pb2.ModuleSettings) -> bytes:
    copy = lifecycle_pb2.ModuleSettings()
    copy.CopyFrom(settings)
    for endpoint in copy.dependencies:
        endpoint.address = ""
    return copy.SerializeToString(deterministic=True)


def _addresses(settings: lifecycle_pb2.ModuleSettings) -> list[str]:
    return [endpoint.address for endpoint in settings.dependencies]
