"""Before anything starts: find the modules (the folder and the remote ones of the mesh
configuration), validate the graph, and turn the plan into module records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mesh.control import graph
from mesh.control.config import MeshConfig, RemoteModule
from mesh.control.discovery import DiscoveryError, discover
from mesh.control.failures import ValidationFailed
from mesh.control.module_client import ModuleClient
from mesh.control.registry import ModuleRecord
from mesh.control.restart import RestartBudget
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest, manifest_from_proto
from mesh.protocol.transport import Transport
from mesh.v1 import module_pb2

RemoteManifests = Mapping[str, tuple[Manifest, str]]
"""Modules running elsewhere: name -> (manifest, address)."""


@dataclass(frozen=True)
class ValidatedMesh:
    """What will run: the plan, and a record per module in order, the skipped ones (still
    REGISTERED; `plan.skipped` says why) last."""

    plan: graph.Plan
    records: list[ModuleRecord]


async def describe_remote_modules(
    remotes: Iterable[RemoteModule], transport: Transport
) -> dict[str, tuple[Manifest, str]]:
    """Ask each statically listed remote module for its manifest (as the coordinator).

    Raises:
        ValidationFailed: MODULE_UNAVAILABLE, one line per module that did not answer or
            answered with an invalid manifest.
    """
    found: dict[str, tuple[Manifest, str]] = {}
    lines: list[str] = []
    for remote in remotes:
        client = ModuleClient("remote", remote.address, transport)
        try:
            described = await client.describe()
            manifest = manifest_from_proto(described.manifest, f"remote module at {remote.address}")
            found[manifest.name] = (manifest, remote.address)
        except MeshError as error:
            lines.append(f"remote module at {remote.address}: {error.message}")
        except ValueError as error:
            lines.append(str(error))
        finally:
            await client.close()
    if lines:
        raise ValidationFailed(lines, "MODULE_UNAVAILABLE")
    return found


def validate(config: MeshConfig, env: Mapping[str, str], remote: RemoteManifests) -> ValidatedMesh:
    """Discover the modules of the folder and decide what runs.

    Args:
        config: The mesh configuration (modules folder, feature flags).
        env: The environment (FEATURE_FLAG_* variables).
        remote: The remote modules of the mesh configuration, already described.

    Raises:
        ValidationFailed: invalid manifests, a name taken twice, or an invalid graph; the
            lines say how to fix each problem.
    """
    try:
        discovered = discover(config.modules_dir)
    except DiscoveryError as error:
        raise ValidationFailed(error.lines, "INVALID_MANIFEST") from None
    manifests = {name: module.manifest for name, module in discovered.items()}
    lines: list[str] = []
    for name, (manifest, address) in remote.items():
        if name in manifests:
            lines.append(f"remote module '{name}' at {address} has the name of {discovered[name].directory}")
        manifests[name] = manifest
    if lines:
        raise ValidationFailed(lines, "MODULE_ALREADY_REGISTERED")
    plan = graph.plan(manifests, env=env, flags=config.flags)
    if plan.problems:
        raise ValidationFailed([problem.message for problem in plan.problems], plan.problems[0].reason)
    dependents = graph.dependents_of(plan.modules)
    records = []
    for name in plan.order:
        elsewhere = remote.get(name)
        records.append(
            ModuleRecord(
                manifest=manifests[name],
                origin=module_pb2.MODULE_ORIGIN_STATIC if elsewhere else module_pb2.MODULE_ORIGIN_LOCAL,
                directory=None if elsewhere else discovered[name].directory,
                address=elsewhere[1] if elsewhere else "",
                critical=name in plan.critical,
                dependents=dependents[name],
                budget=RestartBudget(manifests[name].restart),
            )
        )
    for name in sorted(plan.skipped):
        records.append(
            ModuleRecord(
                manifest=manifests[name],
                origin=module_pb2.MODULE_ORIGIN_LOCAL,
                directory=discovered[name].directory if name in discovered else None,
            )
        )
    return ValidatedMesh(plan=plan, records=records)
