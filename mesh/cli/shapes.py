"""The `--json` forms of the read commands: plain objects with snake_case keys, numbers as
numbers, states and health as the words the tables show, absent values as null.

These shapes are documented in docs/cli.md; scripts rely on them, so a field is added, never
renamed or removed. They are built here by hand rather than with protobuf's JSON mapping, which
spells keys in camelCase, writes 64-bit integers as strings and leaves out fields at their default.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2

from mesh.cli.render import HEALTH_NAME, first_line, state_name
from mesh.v1 import health_pb2, module_pb2, tenancy_pb2

if TYPE_CHECKING:  # only `mesh events` and `mesh dlq` load these (see events.py), for start-up speed
    from mesh.control.catalog import Catalog
    from mesh.control.dlq import DeadLetter


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout: no colour, so that it pipes into jq as it is."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _time(stamp: timestamp_pb2.Timestamp, present: bool) -> str | None:
    return stamp.ToDatetime().isoformat(timespec="seconds") + "Z" if present else None


def module_status(status: module_pb2.ModuleStatus) -> dict[str, Any]:
    """One module of `mesh status --json`."""
    error = (
        {"reason": status.error.reason, "message": status.error.message, "phase": status.error.phase}
        if status.HasField("error") and status.error.reason
        else None
    )
    return {
        "name": status.name,
        "version": status.version,
        "state": state_name(status.state),
        "address": status.address or None,
        "pid": status.pid or None,
        "restart_count": status.restart_count,
        "critical": status.critical,
        "dependencies": [
            {"name": d.name, "version": d.version_constraint, "optional": d.optional} for d in status.dependencies
        ],
        "dependents": list(status.dependents),
        "state_reason": status.state_reason,
        "error": error,
        "started_at": _time(status.started_at, status.HasField("started_at")),
    }


def _component(component: health_pb2.ComponentHealth) -> dict[str, Any]:
    latency = component.latency.ToTimedelta().total_seconds() * 1000 if component.HasField("latency") else None
    return {
        "name": component.name,
        "status": HEALTH_NAME.get(component.status, "unknown"),
        "latency_ms": latency,
        "message": component.message,
    }


def system_health(
    status: health_pb2.HealthStatus,
    components: Iterable[health_pb2.ComponentHealth],
    modules: Iterable[health_pb2.ModuleHealth],
) -> dict[str, Any]:
    """`mesh health --json`: the verdict, the mesh's own parts (NATS, JetStream), each module."""
    return {
        "status": HEALTH_NAME.get(status, "unknown"),
        "components": [_component(component) for component in components],
        "modules": [
            {
                "name": health.name,
                "status": HEALTH_NAME.get(health.status, "unknown"),
                "state": state_name(health.state),
                "uptime_seconds": health.uptime.seconds if health.HasField("uptime") else None,
                "message": first_line(health.message),
                "components": [_component(component) for component in health.components],
            }
            for health in modules
        ],
    }


def tenant_modules(modules: Iterable[tenancy_pb2.TenantModule]) -> list[dict[str, Any]]:
    """`mesh tenant list --json`: every module of the mesh and whether it serves the tenant."""
    return [
        {
            "module": module.module,
            "enabled": module.enabled,
            "changed_by": module.changed_by or None,
            "changed_at": _time(module.changed_at, module.HasField("changed_at")),
        }
        for module in modules
    ]


def feature_flags(flags: Iterable[tenancy_pb2.FeatureFlag]) -> list[dict[str, Any]]:
    """`mesh flags get --json`: every flag set for the tenant."""
    return [
        {
            "name": flag.name,
            "enabled": flag.enabled,
            "changed_by": flag.changed_by or None,
            "changed_at": _time(flag.changed_at, flag.HasField("changed_at")),
        }
        for flag in flags
    ]


def event_types(catalog: Catalog) -> list[dict[str, Any]]:
    """`mesh events --json`: one object per event type."""
    return [
        {
            "type": event_type,
            "publishers": entry.publishers,
            "subscribers": [
                {"module": s.module, "pattern": s.pattern, "handler": s.handler} for s in entry.subscribers
            ],
            "content_type": entry.content_type,
            "schema": entry.schema,
        }
        for event_type, entry in catalog.types.items()
    ]


def dead_letter(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter of `mesh dlq list --json`, its body bounded (`DeadLetter.shown_data`)."""
    return {
        "seq": letter.seq,
        "event_id": letter.event.id,
        "event_type": letter.event.type,
        "module": letter.module,
        "handler": letter.handler,
        "deliveries": letter.deliveries,
        "reason": letter.reason,
        "time": letter.time,
        "subject": letter.subject,
        "data": letter.shown_data(),
    }
