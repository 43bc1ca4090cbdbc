"""Text forms of the mesh for the CLI: tables of modules, health, events, dead letters,
tenants and configuration, and the dependency graph as a tree, Mermaid or Graphviz dot.

Tables fit the terminal by cutting cells with "…" (a wrapped word reads as two values), and a
table without rows is one line saying "none" (an empty box reads as a broken command). The
graph forms are plain strings so they can be piped into other tools."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

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
CONFIG_LAYER_NAME = {1: "module default", 2: "mesh", 3: "tenant", 4: "company"}

EXACT_INTEGERS = 2**53
"""Beyond this a double no longer holds every integer, so it is not shown as one."""
FLEXIBLE_FLOOR = 8
"""The narrowest a free-text column is cut to before the other columns are cut too."""
FIXED_FLOOR = 4


def plain_numbers(value: Any) -> Any:
    """`value` with every integral float as an int, nested values included.

    A protobuf Struct holds every number as a double, so `5` set on the command line comes
    back as `5.0`; the user wrote `5` and should read `5`.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < EXACT_INTEGERS:
        return int(value)
    if isinstance(value, Mapping):
        return {key: plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_numbers(item) for item in value]
    return value


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


class Grid:
    """A table whose cells are cut with "…" to fit the width it is drawn at, and which says
    "none" in one line when it has no rows.

    Free-text columns (`flexible`) are cut first, down to a few characters, so that names and
    states stay whole; only then are the others cut. Cells are plain text (or `Text` with a
    style): a value such as "[b]" from a module or a user is shown as it is, never read as markup.
    """

    def __init__(
        self, columns: Sequence[str], *, empty: str, flexible: Collection[str] = (), title: str | None = None
    ) -> None:
        unknown = set(flexible) - set(columns)
        if unknown:
            raise ValueError(f"flexible columns {sorted(unknown)} are not among {list(columns)}")
        self.columns = list(columns)
        self.flexible = [column in flexible for column in columns]
        self.title = title
        self.empty = empty
        self.rows: list[list[Text]] = []

    def add_row(self, *cells: str | Text) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([cell if isinstance(cell, Text) else Text(cell) for cell in cells])

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.rows:
            yield Text(f"{self.title}: {self.empty}" if self.title else self.empty)
            return
        borders_and_padding = 3 * len(self.columns) + 1
        widths = self.widths(options.max_width - borders_and_padding)
        table = Table(title=self.title, title_justify="left")
        for column, width in zip(self.columns, widths, strict=True):
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=width)
        for row in self.rows:
            table.add_row(*row)
        yield table

    def widths(self, available: int) -> list[int]:
        """The width of each column so that together they take at most `available` characters
        (as far as the floors allow): the widest flexible column is cut first, then the widest
        of any."""
        natural = [
            max(len(column), *(row[index].cell_len for row in self.rows)) for index, column in enumerate(self.columns)
        ]
        floors = [
            min(width, max(len(column), FLEXIBLE_FLOOR if flexible else FIXED_FLOOR))
            for width, column, flexible in zip(natural, self.columns, self.flexible, strict=True)
        ]
        widths = list(natural)
        excess = sum(widths) - available
        flexible_ones = [index for index, flexible in enumerate(self.flexible) if flexible]
        for group in (flexible_ones, list(range(len(widths)))):
            while excess > 0:
                cuttable = [index for index in group if widths[index] > floors[index]]
                if not cuttable:
                    break
                widest = max(cuttable, key=lambda index: widths[index])
                next_widest = max((widths[index] for index in cuttable if index != widest), default=0)
                cut = min(excess, widths[widest] - max(floors[widest], next_widest)) or 1
                widths[widest] -= cut
                excess -= cut
        return widths


def state_name(value: int) -> str:
    """The name of a ModuleState value; 0 (unset) is UNSPECIFIED."""
    return State(value).name if value else "UNSPECIFIED"


def styled_state(value: int) -> Text:
    state = State(value) if value else None
    return Text(state_name(value), style=STATE_STYLE.get(state, "") if state else "")


def module_table(modules: Iterable[module_pb2.ModuleStatus], title: str | None = None) -> Grid:
    """Name, version, state, address, pid, restarts and why, one row per module."""
    grid = Grid(
        ("module", "version", "state", "address", "pid", "restarts", "detail"),
        empty="no modules",
        flexible={"detail"},
        title=title,
    )
    for status in modules:
        shows_reason = status.state in (State.FAILED.value, State.SKIPPED.value)
        grid.add_row(
            status.name,
            status.version,
            styled_state(status.state),
            status.address or "-",
            str(status.pid) if status.pid else "-",
            str(status.restart_count),
            first_line(status.state_reason) if shows_reason else "",
        )
    return grid


def health_table(modules: Iterable[health_pb2.ModuleHealth]) -> Grid:
    grid = Grid(("module", "health", "state", "uptime", "detail"), empty="modules: none", flexible={"detail"})
    for health in modules:
        name = HEALTH_NAME.get(health.status, "unknown")
        components = ", ".join(
            f"{c.name}: {HEALTH_NAME.get(c.status, 'unknown')}" + (f" ({c.message})" if c.message else "")
            for c in health.components
        )
        detail = "; ".join(part for part in (first_line(health.message), components) if part)
        grid.add_row(
            health.name,
            Text(name, style=HEALTH_STYLE[name]),
            state_name(health.state),
            f"{health.uptime.seconds}s" if health.uptime.seconds else "-",
            detail,
        )
    return grid


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


def events_table(catalog: Catalog) -> Grid:
    """One row per event type: publishers, subscribers (with their patterns), schema title."""
    grid = Grid(
        ("event type", "publishers", "subscribers", "payload"),
        empty="event types: none (no module declares [events] in its manifest)",
        flexible={"publishers", "subscribers", "payload"},
    )
    for event_type, entry in catalog.types.items():
        subscribers = ", ".join(
            s.module + (f" ({s.pattern})" if s.pattern != event_type else "") for s in entry.subscribers
        )
        schema = entry.schema or {}
        payload = schema.get("title") or schema.get("x-protobuf-message") or ("-" if not schema else "schema")
        publishers = Text(", ".join(entry.publishers)) if entry.publishers else Text("none", style="yellow")
        grid.add_row(event_type, publishers, subscribers or "-", str(payload))
    return grid


def dead_letter_table(letters: Iterable[DeadLetter]) -> Grid:
    grid = Grid(
        ("seq", "time", "module", "handler", "event type", "event id", "deliveries", "reason"),
        empty="dead letters: none",
        flexible={"event id", "reason", "handler"},
    )
    for letter in letters:
        grid.add_row(
            str(letter.seq),
            letter.time[:19],
            letter.module,
            letter.handler,
            letter.event.type,
            letter.event.id,
            letter.deliveries,
            first_line(letter.reason),
        )
    return grid


def tenant_table(tenant: str, modules: Iterable[tenancy_pb2.TenantModule]) -> Grid:
    grid = Grid(
        ("module", "enabled", "changed by", "changed at"),
        empty="no modules in this mesh",
        flexible={"changed by"},
        title=f"tenant {tenant}",
    )
    for module in modules:
        changed_at = (
            module.changed_at.ToDatetime().isoformat(timespec="seconds") if module.HasField("changed_at") else "-"
        )
        enabled = Text("yes", style="green") if module.enabled else Text("no")
        grid.add_row(module.module, enabled, module.changed_by or "-", changed_at)
    return grid


def config_leaves(config: Mapping[str, Any], sources: Iterable[tenancy_pb2.ConfigValueSource]) -> list[dict[str, Any]]:
    """Each leaf value of an effective configuration with the layer it came from, as
    `{"path", "value", "layer"}` (what `mesh config effective` shows, as a table or JSON)."""
    leaves = []
    for source in sources:
        value: Any = config
        for part in source.path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        leaves.append(
            {"path": source.path, "value": plain_numbers(value), "layer": CONFIG_LAYER_NAME.get(source.layer, "?")}
        )
    return leaves


def config_table(leaves: Iterable[Mapping[str, Any]]) -> Grid:
    """The leaves of `config_leaves`: path, value (as JSON) and the layer it came from."""
    grid = Grid(("path", "value", "from"), empty="configuration: none (the module takes none)", flexible={"value"})
    for leaf in leaves:
        grid.add_row(leaf["path"], json.dumps(leaf["value"]), leaf["layer"])
    return grid
