"""Text forms of the mesh for the CLI: module tables, the dependency graph as a tree,
Mermaid or Graphviz dot. Tables use rich; the graph forms are plain strings so they can
be piped into other tools."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rich.table import Table

from mesh.protocol.manifest import Manifest
from mesh.protocol.states import State
from mesh.v1 import health_pb2, module_pb2, tenancy_pb2

if TYPE_CHECKING:  # only `mesh events` and `mesh dlq` load these (see events.py), for start-up speed
    from mesh.control.catalog import Catalog
    from mesh.control.dlq import DeadLetter

STATE_STYLE = {
    State.RUNNING: "green",
    State.FAILED: "bold red",
    State.SKIPPED: "dim",
    State.STOPPED: "yellow",
    State.STOPPING: "yellow",
}
HEALTH_NAME = {
    health_pb2.HEALTH_STATUS_UNSPECIFIED: "unknown",
    health_pb2.HEALTH_STATUS_HEALTHY: "healthy",
    health_pb2.HEALTH_STATUS_DEGRADED: "degraded",
    health_pb2.HEALTH_STATUS_UNHEALTHY: "unhealthy",
}
HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "bold red", "unknown": "dim"}


def state_name(value: int) -> str:
    """The name of a ModuleState value; 0 (unset) is UNSPECIFIED."""
    return State(value).name if value else "UNSPECIFIED"


def module_table(modules: Iterable[module_pb2.ModuleStatus], title: str | None = None) -> Table:
    """Name, version, state, address, pid, restarts and why, one row per module."""
    table = Table(title=title, title_justify="left")
    for column in ("module", "version", "state", "address", "pid", "restarts", "detail"):
        table.add_column(
            column, overflow="fold", no_wrap=column != "detail", min_width=8 if column == "detail" else None
        )
    for status in modules:
        state = State(status.state) if status.state else None
        style = STATE_STYLE.get(state, "") if state else ""
        table.add_row(
            status.name,
            status.version,
            f"[{style}]{state_name(status.state)}[/]" if style else state_name(status.state),
            status.address or "-",
            str(status.pid) if status.pid else "-",
            str(status.restart_count),
            status.state_reason.splitlines()[0]
            if status.state_reason and state in (State.FAILED, State.SKIPPED)
            else "",
        )
    return table


def health_table(modules: Iterable[health_pb2.ModuleHealth]) -> Table:
    table = Table()
    for column in ("module", "health", "state", "uptime", "detail"):
        table.add_column(column, overflow="fold")
    for health in modules:
        name = HEALTH_NAME.get(health.status, "unknown")
        components = ", ".join(
            f"{c.name}: {HEALTH_NAME.get(c.status, 'unknown')}" + (f" ({c.message})" if c.message else "")
            for c in health.components
        )
        message = health.message.splitlines()[0] if health.message else ""
        detail = "; ".join(part for part in (message, components) if part)
        table.add_row(
            health.name,
            f"[{HEALTH_STYLE[name]}]{name}[/]",
            state_name(health.state),
            f"{health.uptime.seconds}s" if health.uptime.seconds else "-",
            detail,
        )
    return table


def _label(manifest: Manifest, skipped: Mapping[str, str]) -> str:
    note = f"  [skipped: {skipped[manifest.name]}]" if manifest.name in skipped else ""
    return f"{manifest.name} {manifest.version}{note}"


def graph_tree(manifests: Mapping[str, Manifest], skipped: Mapping[str, str]) -> str:
    """Each module with its dependencies below it; roots are modules nothing depends on."""
    depended_on = {d.name for m in manifests.values() for d in m.dependencies}
    roots = sorted(name for name in manifests if name not in depended_on) or sorted(manifests)
    lines: list[str] = []

    def walk(name: str, prefix: str, last: bool, path: tuple[str, ...], optional: bool) -> None:
        branch = "└── " if last else "├── "
        manifest = manifests.get(name)
        text = _label(manifest, skipped) if manifest else f"{name}  [missing]"
        if optional:
            text += "  (optional)"
        if name in path:
            lines.append(f"{prefix}{branch}{name}  [cycle]")
            return
        lines.append(f"{prefix}{branch}{text}" if prefix or path else text)
        if manifest is None:
            return
        children = manifest.dependencies
        inner = prefix + ("    " if last else "│   ") if path else ""
        for index, dependency in enumerate(children):
            walk(dependency.name, inner, index == len(children) - 1, (*path, name), dependency.optional)

    for root in roots:
        walk(root, "", True, (), False)
    return "\n".join(lines)


def graph_mermaid(manifests: Mapping[str, Manifest], skipped: Mapping[str, str]) -> str:
    """A Mermaid flowchart: an arrow from each module to what it depends on."""
    lines = ["flowchart TD"]
    for name in sorted(manifests):
        lines.append(f'    {_node_id(name)}["{_label(manifests[name], skipped)}"]')
    for name in sorted(manifests):
        for dependency in manifests[name].dependencies:
            arrow = "-.->" if dependency.optional else "-->"
            lines.append(f"    {_node_id(name)} {arrow} {_node_id(dependency.name)}")
    return "\n".join(lines)


def graph_dot(manifests: Mapping[str, Manifest], skipped: Mapping[str, str]) -> str:
    """A Graphviz digraph: an edge from each module to what it depends on."""
    lines = ["digraph mesh {", "    rankdir=LR;"]
    for name in sorted(manifests):
        style = ', style="dashed"' if name in skipped else ""
        lines.append(f'    "{name}" [label="{_label(manifests[name], skipped)}"{style}];')
    for name in sorted(manifests):
        for dependency in manifests[name].dependencies:
            style = ' [style="dashed"]' if dependency.optional else ""
            lines.append(f'    "{name}" -> "{dependency.name}"{style};')
    lines.append("}")
    return "\n".join(lines)


def _node_id(name: str) -> str:
    return name.replace("-", "_")


def events_table(catalog: Catalog) -> Table:
    """One row per event type: publishers, subscribers (with their patterns), schema title."""
    table = Table()
    for column in ("event type", "publishers", "subscribers", "payload"):
        table.add_column(column, overflow="fold")
    for event_type, entry in catalog.types.items():
        subscribers = ", ".join(
            s.module + (f" ({s.pattern})" if s.pattern != event_type else "") for s in entry.subscribers
        )
        schema = entry.schema or {}
        payload = schema.get("title") or schema.get("x-protobuf-message") or ("-" if not schema else "schema")
        table.add_row(event_type, ", ".join(entry.publishers) or "[yellow]none[/]", subscribers or "-", str(payload))
    return table


def dead_letter_fields(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON-ready fields, its body bounded (`DeadLetter.shown_data`)."""
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


def dead_letter_table(letters: Iterable[DeadLetter]) -> Table:
    table = Table()
    for column in ("seq", "time", "module", "handler", "event type", "event id", "deliveries", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.seq),
            letter.time[:19],
            letter.module,
            letter.handler,
            letter.event.type,
            letter.event.id,
            letter.deliveries,
            letter.reason.splitlines()[0] if letter.reason else "",
        )
    return table


def tenant_table(tenant: str, modules: Iterable[tenancy_pb2.TenantModule]) -> Table:
    table = Table(title=f"tenant {tenant}", title_justify="left")
    for column in ("module", "enabled", "changed by", "changed at"):
        table.add_column(column)
    for module in modules:
        changed_at = (
            module.changed_at.ToDatetime().isoformat(timespec="seconds") if module.HasField("changed_at") else "-"
        )
        table.add_row(module.module, "[green]yes[/]" if module.enabled else "no", module.changed_by or "-", changed_at)
    return table


def config_table(config: Mapping[str, Any], sources: Iterable[tenancy_pb2.ConfigValueSource]) -> Table:
    """Each leaf value of an effective configuration with the layer it came from."""
    layer_names = {1: "module default", 2: "mesh", 3: "tenant", 4: "company"}
    table = Table()
    for column in ("path", "value", "from"):
        table.add_column(column, overflow="fold")
    for source in sources:
        value: Any = config
        for part in source.path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        table.add_row(source.path, json.dumps(value), layer_names.get(source.layer, "?"))
    return table
