"""The dependency graph of a mesh, as pure functions over manifests.

Everything here is decided from the manifests alone, before any process starts: which
modules are skipped (feature flag off, or a required dependency skipped), whether the
graph is valid (missing dependencies, unmet version constraints, cycles), the
initialization order, and who is critical. No I/O, so it is tested without processes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import nodesemver

from mesh.protocol.manifest import Manifest


@dataclass(frozen=True)
class GraphProblem:
    """One reason the graph cannot run, with its mesh.v1 error reason."""

    reason: str  # MODULE_DEPENDENCY_MISSING | VERSION_CONSTRAINT_UNMET | CIRCULAR_DEPENDENCY
    module: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What will run: the modules kept and skipped, their order, and who is critical."""

    modules: Mapping[str, Manifest]
    skipped: Mapping[str, str]  # name -> reason
    order: tuple[str, ...]  # initialization order of the kept modules
    critical: frozenset[str]
    problems: tuple[GraphProblem, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not self.problems


def flag_env_name(flag: str) -> str:
    """The environment variable of a feature flag: FEATURE_FLAG_<FLAG>, upper-cased, '-' as '_'."""
    return "FEATURE_FLAG_" + flag.upper().replace("-", "_")


def flag_is_off(value: str | bool | None) -> bool:
    """Flag values that turn a module off; anything else (or unset) leaves it on."""
    if isinstance(value, bool):
        return not value
    return value is not None and value.strip().lower() in {"false", "0", "off", "no"}


def skipped_modules(
    manifests: Mapping[str, Manifest],
    env: Mapping[str, str],
    flags: Mapping[str, bool],
) -> dict[str, str]:
    """Modules that will not run, with the reason, cascading to those that require them.

    Args:
        manifests: Every discovered module by name.
        env: The environment (FEATURE_FLAG_<FLAG> variables).
        flags: Flags from the mesh configuration; the environment wins over them.
    """
    skipped: dict[str, str] = {}
    for name, manifest in manifests.items():
        flag = manifest.feature_flag
        if flag is None:
            continue
        variable = flag_env_name(flag)
        if variable in env and flag_is_off(env[variable]):
            skipped[name] = f"feature flag '{flag}' is off ({variable}={env[variable]})"
        elif variable not in env and flag in flags and not flags[flag]:
            skipped[name] = f"feature flag '{flag}' is off (mesh configuration)"
    changed = True
    while changed:
        changed = False
        for name, manifest in manifests.items():
            if name in skipped:
                continue
            for dependency in manifest.dependencies:
                if not dependency.optional and dependency.name in skipped:
                    skipped[name] = f"requires '{dependency.name}', which is skipped"
                    changed = True
                    break
    return skipped


def satisfies(version: str, constraint: str) -> bool:
    """Whether `version` meets the npm-style range `constraint` (empty: any version)."""
    return not constraint or bool(nodesemver.satisfies(version, constraint, False))


def find_problems(manifests: Mapping[str, Manifest]) -> list[GraphProblem]:
    """Missing required dependencies, unmet version constraints and cycles."""
    problems: list[GraphProblem] = []
    for name, manifest in sorted(manifests.items()):
        for dependency in manifest.dependencies:
            target = manifests.get(dependency.name)
            if target is None:
                if not dependency.optional:
                    problems.append(
                        GraphProblem(
                            "MODULE_DEPENDENCY_MISSING",
                            name,
                            f"module '{name}' requires '{dependency.name}', which is not in the mesh; "
                            + _did_you_mean(dependency.name, [other for other in manifests if other != name])
                            + f"add the module '{dependency.name}' or mark the dependency optional",
                        )
                    )
                continue
            constraint = dependency.version
            if not satisfies(target.version, constraint):
                problems.append(
                    GraphProblem(
                        "VERSION_CONSTRAINT_UNMET",
                        name,
                        f"module '{name}' requires '{dependency.name}' {constraint}, but '{dependency.name}' "
                        f"is version {target.version}; change the constraint or the module's version",
                    )
                )
    for cycle in find_cycles(manifests):
        problems.append(
            GraphProblem(
                "CIRCULAR_DEPENDENCY",
                cycle[0],
                f"circular dependency: {' -> '.join(cycle)}; break it (an event instead of a call, "
                "or an optional dependency)",
            )
        )
    return problems


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    """ "did you mean 'x'? Otherwise " when `name` looks like a typo of a module in `known`."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{close[0]}'? Otherwise " if close else ""


def problems_on_joining(manifests: Mapping[str, Manifest], newcomer: Manifest) -> list[GraphProblem]:
    """What `newcomer` would break by joining a running graph (or replacing its namesake there).

    The same validation as at start-up, so a refused registration names the fix too; only
    the problems the graph did not have without the newcomer count.

    Args:
        manifests: The modules of the mesh now (skipped ones left out).
        newcomer: The module that asks to join.
    """
    without = {name: manifest for name, manifest in manifests.items() if name != newcomer.name}
    known = set(find_problems(without))
    return [problem for problem in find_problems({**without, newcomer.name: newcomer}) if problem not in known]


def _edges(manifest: Manifest, present: Iterable[str]) -> list[str]:
    """The dependencies of a module that are in the graph, optional ones included."""
    present = set(present)
    return [d.name for d in manifest.dependencies if d.name in present]


def find_cycles(manifests: Mapping[str, Manifest]) -> list[list[str]]:
    """Each cycle once, as a path that returns to its start: ['a', 'b', 'a'].

    Optional dependencies count: they order initialization too.
    """
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dependency in _edges(manifests[name], manifests):
            if state.get(dependency) == 1:
                cycle = [*path[path.index(dependency) :], dependency]
                key = frozenset(cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    cycles.append(cycle)
            elif dependency not in state:
                visit(dependency)
        path.pop()
        state[name] = 2

    for name in sorted(manifests):
        if name not in state:
            visit(name)
    return cycles


def initialization_order(manifests: Mapping[str, Manifest]) -> list[str]:
    """A topological order (dependencies first), ties broken by name for stable output.

    The graph must be free of cycles (see `find_cycles`).
    """
    remaining = {name: set(_edges(manifest, manifests)) for name, manifest in manifests.items()}
    order: list[str] = []
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps)
        if not ready:
            raise ValueError(f"the graph has a cycle among {sorted(remaining)}")
        for name in ready:
            order.append(name)
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return order


def dependents_of(manifests: Mapping[str, Manifest], *, required_only: bool = False) -> dict[str, list[str]]:
    """For each module, the modules that depend on it directly."""
    dependents: dict[str, list[str]] = {name: [] for name in manifests}
    for name, manifest in sorted(manifests.items()):
        for dependency in manifest.dependencies:
            if dependency.name in dependents and not (required_only and dependency.optional):
                dependents[dependency.name].append(name)
    return dependents


def critical_modules(manifests: Mapping[str, Manifest]) -> frozenset[str]:
    """Modules that others require (not merely optionally): their failure aborts start-up."""
    return frozenset(name for name, users in dependents_of(manifests, required_only=True).items() if users)


def transitive(start: str, neighbours: Mapping[str, Iterable[str]]) -> list[str]:
    """Every module reachable from `start` through `neighbours`, sorted, `start` excluded."""
    seen: set[str] = set()
    stack = list(neighbours.get(start, ()))
    while stack:
        name = stack.pop()
        if name not in seen and name != start:
            seen.add(name)
            stack.extend(neighbours.get(name, ()))
    return sorted(seen)


def required_dependencies(manifests: Mapping[str, Manifest]) -> dict[str, list[str]]:
    """For each module, its required dependencies that are in the graph."""
    return {
        name: [d.name for d in manifest.dependencies if not d.optional and d.name in manifests]
        for name, manifest in manifests.items()
    }


def depth(name: str, manifests: Mapping[str, Manifest]) -> int:
    """The length of the longest chain of required dependencies below `name`."""
    required = required_dependencies(manifests)
    memo: dict[str, int] = {}

    def longest(node: str) -> int:
        if node not in memo:
            memo[node] = 1 + max((longest(d) for d in required[node]), default=-1)
        return memo[node]

    return longest(name)


def plan(
    manifests: Mapping[str, Manifest],
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, bool] | None = None,
) -> Plan:
    """Decide what runs: skip by feature flags (cascading), validate what is left, order it."""
    skipped = skipped_modules(manifests, env or {}, flags or {})
    kept = {name: manifest for name, manifest in manifests.items() if name not in skipped}
    problems = find_problems(kept)
    order = initialization_order(kept) if not any(p.reason == "CIRCULAR_DEPENDENCY" for p in problems) else []
    return Plan(
        modules=kept,
        skipped=skipped,
        order=tuple(order),
        critical=critical_modules(kept),
        problems=tuple(problems),
    )
