"""The module manifest (`module.toml`): the graph facts of one module, validated.

The manifest is the single source of truth for a module's name, version, dependencies,
events, feature flag, restart policy and how to run it. The coordinator validates the
whole graph from these files before any process starts; the SDK cross-checks a module's
code against its own. Every problem is reported as one line naming the file, the field,
the bad value and what is expected; any byte sequence gives such lines, never another
exception: the file's size, every string, list and number have caps, and a bad value is
quoted as a short excerpt.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import nodesemver
from google.protobuf import duration_pb2
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from mesh.protocol.errors import excerpt
from mesh.protocol.identity import module_identity
from mesh.v1 import module_pb2

MANIFEST_FILE = "module.toml"
MAX_MANIFEST_BYTES = 256 * 1024
"""A manifest holds graph facts, not data: a bigger file is refused before it is parsed."""
MAX_PROBLEM_LINES = 20
"""The most problem lines reported for one manifest (then one line counting the rest)."""
MAX_LINE_CHARS = 400
"""The most characters of one problem line after the file's name."""

# Matched with fullmatch: `$` also matches before a final newline.
_KEBAB = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_EVENT_TOKEN = re.compile(r"[a-z][a-z0-9_-]*")
_FLAG = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_SERVICE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_METHOD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ManifestError(ValueError):
    """A manifest that cannot be used. `lines` holds one self-contained line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _kebab_name(value: str) -> str:
    if not _KEBAB.fullmatch(value):
        raise ValueError("expected a kebab-case name: lowercase letters, digits and single '-', e.g. 'pricing-engine'")
    return value


def _semver(value: str) -> str:
    parsed = nodesemver.valid(value, False)
    # node-semver accepts "v1.0.0" too; a manifest must hold the plain form.
    if parsed is None or value.startswith(("v", "=")):
        raise ValueError("expected a semver version MAJOR.MINOR.PATCH, e.g. '1.0.0' or '2.1.0-rc.1'")
    return value


def _version_range(value: str) -> str:
    if value and nodesemver.valid_range(value, False) is None:
        raise ValueError("expected an npm-style semver range, e.g. '>=1.2.0 <2.0.0', '^1.2' or '1.x'")
    return value


MAX_EVENT_TYPE_CHARS = 255
"""An event type is part of a NATS subject, whose control line the server caps."""


def validate_event_type(value: str) -> str:
    """`value` when it is an event type `entity.action`; ValueError otherwise."""
    if len(value) > MAX_EVENT_TYPE_CHARS:
        raise ValueError(f"expected an event type 'entity.action' of at most {MAX_EVENT_TYPE_CHARS} characters")
    tokens = value.split(".")
    if len(tokens) != 2 or not all(_EVENT_TOKEN.fullmatch(token) for token in tokens):
        raise ValueError("expected an event type 'entity.action' in lowercase, e.g. 'order.created'")
    return value


def _event_pattern(value: str) -> str:
    tokens = value.split(".")
    valid = (
        len(tokens) <= 2
        and all(
            t == "*" or _EVENT_TOKEN.fullmatch(t) or (t == ">" and i == len(tokens) - 1) for i, t in enumerate(tokens)
        )
        and (len(tokens) == 2 or tokens == [">"])
    )
    if not valid:
        raise ValueError("expected an event type or pattern: 'order.created', 'order.*', '*.created', 'order.>' or '>'")
    return value


def _flag(value: str) -> str:
    if not _FLAG.fullmatch(value):
        raise ValueError("expected a flag name of letters, digits, '-' and '_', e.g. 'enable-shipping'")
    return value


def _service(value: str) -> str:
    if not _SERVICE.fullmatch(value):
        raise ValueError("expected a fully-qualified gRPC service name, e.g. 'greeter.v1.Greeter'")
    return value


def _public_method(value: str) -> str:
    service, slash, method = value.rpartition("/")
    if not _METHOD.fullmatch(method) or (slash and not _SERVICE.fullmatch(service)):
        raise ValueError(
            "expected a method's name, e.g. 'SayHello', or its full name, e.g. 'greeter.v1.Greeter/SayHello'"
        )
    return value


def _entry(value: str) -> str:
    if not _ENTRY.fullmatch(value):
        raise ValueError("expected 'python_module:ClassName' inside the module's folder, e.g. 'module:Greeter'")
    return value


# Names end up in NATS subjects, consumer names, bucket keys and certificates: short caps.
# A module's certificate names it "module:<name>" in its common name, which X.509 caps at 64.
MAX_MODULE_NAME_CHARS = 64 - len(module_identity("").common_name)
KebabName = Annotated[str, StringConstraints(max_length=MAX_MODULE_NAME_CHARS), AfterValidator(_kebab_name)]
SemVer = Annotated[str, StringConstraints(max_length=128), AfterValidator(_semver)]
VersionRange = Annotated[str, StringConstraints(max_length=256), AfterValidator(_version_range)]
EventType = Annotated[str, StringConstraints(max_length=MAX_EVENT_TYPE_CHARS), AfterValidator(validate_event_type)]
EventPattern = Annotated[str, StringConstraints(max_length=MAX_EVENT_TYPE_CHARS), AfterValidator(_event_pattern)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
EventList = Annotated[list[EventType], Field(max_length=256)]
PatternList = Annotated[list[EventPattern], Field(max_length=256)]


class _Strict(BaseModel):
    # str_max_length: no text field holds more than this, whatever its own cap;
    # allow_inf_nan: a duration of `inf` or `nan` is no duration.
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=4096, allow_inf_nan=False)


class DependencySpec(_Strict):
    """One `[[dependencies]]` entry."""

    name: KebabName
    version: VersionRange = ""
    optional: bool = False


HandlerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class EventsSpec(_Strict):
    """The `[events]` table: what the module publishes and what it handles."""

    publishes: EventList = Field(default_factory=list)
    subscribes: PatternList = Field(default_factory=list)
    consumers: dict[HandlerName, PatternList] = Field(default_factory=dict, max_length=64)
    """A module in another language: its durable consumers, handler name -> the patterns it
    reads (a Python module's come from its `@on` handlers). Read before the module runs, by
    `mesh nats users` / `mesh nats permissions`, to grant its NATS user exactly these."""

    @model_validator(mode="after")
    def _consumers_read_what_is_subscribed(self) -> EventsSpec:
        for handler, patterns in self.consumers.items():
            undeclared = sorted(set(patterns) - set(self.subscribes))
            if undeclared or not patterns:
                raise ValueError(
                    f"consumer '{handler}' reads {', '.join(undeclared) or 'nothing'}; list patterns of "
                    "'subscribes' there"
                )
        return self


class RestartSpec(_Strict):
    """The `[restart]` table: how the coordinator restarts the module's process."""

    policy: Literal["never", "on-failure", "always"] = "on-failure"
    max_restarts: int = Field(default=5, ge=0, le=10_000)
    window_seconds: float = Field(default=60.0, gt=0, le=7 * 86_400)
    backoff_initial_seconds: float = Field(default=0.5, gt=0, le=86_400)
    backoff_max_seconds: float = Field(default=30.0, gt=0, le=86_400)


class GatewaySpec(_Strict):
    """The `[gateway]` table: how the HTTP gateway serves the module."""

    public: list[Annotated[str, StringConstraints(max_length=320), AfterValidator(_public_method)]] = Field(
        default_factory=list, max_length=256
    )
    """The methods the gateway calls without a bearer token (by name, or full name when two of
    the module's services share one); the module still decides what such a call may do."""


class RunSpec(_Strict):
    """The `[run]` table: a Python entry served by the SDK, or a command in any language."""

    entry: Annotated[str, StringConstraints(max_length=256), AfterValidator(_entry)] | None = None
    command: list[str] = Field(default_factory=list, max_length=256)
    env: dict[ShortText, str] = Field(default_factory=dict, max_length=256)

    @model_validator(mode="after")
    def _one_way_to_run(self) -> RunSpec:
        if (self.entry is None) == (not self.command):
            raise ValueError("expected exactly one of 'entry' (a Python module) or 'command' (any language)")
        return self


class Manifest(_Strict):
    """A module's manifest, as written in its `module.toml`."""

    name: KebabName
    version: SemVer
    description: str = ""
    display_name: ShortText = ""
    author: ShortText = ""
    category: ShortText = ""
    labels: dict[Annotated[str, StringConstraints(max_length=64)], ShortText] = Field(
        default_factory=dict, max_length=64
    )
    dependencies: list[DependencySpec] = Field(default_factory=list, max_length=256)
    events: EventsSpec = Field(default_factory=EventsSpec)
    feature_flag: Annotated[str, StringConstraints(max_length=64), AfterValidator(_flag)] | None = None
    requires_tenant: bool = False
    services: list[Annotated[str, StringConstraints(max_length=256), AfterValidator(_service)]] = Field(
        default_factory=list, max_length=64
    )
    restart: RestartSpec = Field(default_factory=RestartSpec)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    run: RunSpec

    @model_validator(mode="after")
    def _consumers_only_for_other_languages(self) -> Manifest:
        if self.events.consumers and self.run.entry is not None:
            raise ValueError(
                "[events] consumers is for a module in another language; a Python module's consumers come "
                "from its @on handlers, so remove it"
            )
        return self

    @model_validator(mode="after")
    def _public_methods_of_its_services(self) -> Manifest:
        for method in self.gateway.public:
            service = method.rpartition("/")[0]
            if service and service not in self.services:
                raise ValueError(
                    f"[gateway] public names {method!r}, but {service!r} is not among the module's services "
                    f"({', '.join(self.services) or 'none'}); add it to services or correct the name"
                )
        return self

    @model_validator(mode="after")
    def _distinct_dependencies(self) -> Manifest:
        names = [dependency.name for dependency in self.dependencies]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"dependencies list {', '.join(repeated)} more than once; list each module once")
        if self.name in names:
            raise ValueError(f"the module depends on itself ('{self.name}'); remove that dependency")
        return self

    def dependency(self, name: str) -> DependencySpec | None:
        """The declared dependency called `name`, or None."""
        return next((dep for dep in self.dependencies if dep.name == name), None)

    def to_proto(self, config_schema_json: str = "") -> module_pb2.Manifest:
        """The manifest as the mesh.v1 message (the wire form other languages read)."""
        mode = {
            "never": module_pb2.RESTART_MODE_NEVER,
            "on-failure": module_pb2.RESTART_MODE_ON_FAILURE,
            "always": module_pb2.RESTART_MODE_ALWAYS,
        }[self.restart.policy]
        return module_pb2.Manifest(
            name=self.name,
            version=self.version,
            description=self.description,
            display_name=self.display_name,
            author=self.author,
            category=self.category,
            labels=self.labels,
            dependencies=[
                module_pb2.Dependency(name=d.name, version_constraint=d.version, optional=d.optional)
                for d in self.dependencies
            ],
            publishes=self.events.publishes,
            subscribes=self.events.subscribes,
            feature_flag=self.feature_flag or "",
            config_schema_json=config_schema_json,
            services=self.services,
            requires_tenant=self.requires_tenant,
            public_methods=self.gateway.public,
            restart_policy=module_pb2.RestartPolicy(
                mode=mode,
                max_restarts=self.restart.max_restarts,
                window=_duration(self.restart.window_seconds),
                initial_backoff=_duration(self.restart.backoff_initial_seconds),
                max_backoff=_duration(self.restart.backoff_max_seconds),
            ),
            run=module_pb2.RunSpec(entry=self.run.entry or "", command=self.run.command, env=self.run.env),
        )


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def parse_manifest(data: dict[str, Any], source: str) -> Manifest:
    """Validate manifest data read from `source` (a path, for the error lines).

    Raises:
        ManifestError: one line per problem (at most MAX_PROBLEM_LINES, then a count).
    """
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        problems = error.errors()
        lines = [_describe(source, problem) for problem in problems[:MAX_PROBLEM_LINES]]
        if len(problems) > MAX_PROBLEM_LINES:
            lines.append(f"{source}: {len(problems) - MAX_PROBLEM_LINES} more problems like these, not shown")
        raise ManifestError(lines) from None
    except RecursionError:  # a value nested too deeply for the validator
        raise ManifestError([f"{source}: values are nested too deeply; a manifest holds flat tables"]) from None


def manifest_from_proto(message: module_pb2.Manifest, source: str) -> Manifest:
    """Validate a manifest received over gRPC (e.g. RegisterModule) by the same rules as a file.

    Args:
        message: The mesh.v1 manifest.
        source: Where it came from, for the error lines, e.g. "module at 10.0.0.5:7000".
    """
    policy = {
        module_pb2.RESTART_MODE_NEVER: "never",
        module_pb2.RESTART_MODE_ALWAYS: "always",
    }.get(message.restart_policy.mode, "on-failure")
    restart: dict[str, Any] = {"policy": policy, "max_restarts": message.restart_policy.max_restarts}
    for field_name, key in (
        ("window", "window_seconds"),
        ("initial_backoff", "backoff_initial_seconds"),
        ("max_backoff", "backoff_max_seconds"),
    ):
        if message.restart_policy.HasField(field_name):
            restart[key] = getattr(message.restart_policy, field_name).ToNanoseconds() / 1e9
    run: dict[str, Any] = {"env": dict(message.run.env)}
    if message.run.command:
        run["command"] = list(message.run.command)
    else:
        run["entry"] = message.run.entry or "module:Module"
    data: dict[str, Any] = {
        "name": message.name,
        "version": message.version,
        "description": message.description,
        "display_name": message.display_name,
        "author": message.author,
        "category": message.category,
        "labels": dict(message.labels),
        "dependencies": [
            {"name": d.name, "version": d.version_constraint, "optional": d.optional} for d in message.dependencies
        ],
        "events": {"publishes": list(message.publishes), "subscribes": list(message.subscribes)},
        "feature_flag": message.feature_flag or None,
        "requires_tenant": message.requires_tenant,
        "services": list(message.services),
        "gateway": {"public": list(message.public_methods)},
        "restart": restart,
        "run": run,
    }
    return parse_manifest(data, source)


def load_manifest(module_dir: Path | str) -> Manifest:
    """Read and validate `<module_dir>/module.toml`.

    Raises:
        ManifestError: with one line per problem, each naming the file and field.
    """
    path = Path(module_dir) / MANIFEST_FILE
    return parse_manifest(_read_toml(path), str(path))


def _read_toml(path: Path) -> dict[str, Any]:
    """The TOML tables of `path`; any file that is not a small UTF-8 TOML file is one line."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError([f"{path}: no manifest here; every module folder needs a {MANIFEST_FILE}"]) from None
    except OSError as error:
        raise ManifestError([f"{path}: cannot be read ({error.strerror or type(error).__name__})"]) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError([f"{path}: larger than {MAX_MANIFEST_BYTES // 1024} KiB; a manifest holds graph facts"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        bad = excerpt(raw[error.start : error.start + 4])
        raise ManifestError(
            [f"{path}: not UTF-8 at line {line}, column {column} (bytes {bad}); save the file as UTF-8"]
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ManifestError([_line(str(path), f"not valid TOML: {error}")]) from None
    except RecursionError:
        raise ManifestError([f"{path}: not valid TOML: arrays or tables nested too deeply"]) from None


def _line(source: str, text: str) -> str:
    """One problem line: `source: text`, control characters escaped, `text` cut to
    MAX_LINE_CHARS (its end says what is expected, so the middle goes)."""
    printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(printable) > MAX_LINE_CHARS:
        half = MAX_LINE_CHARS // 2
        printable = f"{printable[:half]} … {printable[-half:]}"
    return f"{source}: {printable}"


def _describe(source: str, problem: Any) -> str:
    """One line for one pydantic problem: file, field, bad value, what is expected."""
    loc = tuple(problem["loc"])
    location = _field_path(loc)
    kind = problem["type"]
    value = problem.get("input")
    if kind == "missing":
        return _line(source, f"field '{location}' is missing; it is required")
    if kind == "extra_forbidden":
        parent = loc[:-1]
        field = loc[-1] if loc else ""
        known = _known_fields(parent)
        where = f" in '{_field_path(parent)}'" if parent else ""
        expected = f"; expected one of: {', '.join(known)}" if known else ""
        return _line(source, f"unknown field {excerpt(field)}{where}{expected}")
    message = str(problem["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        message = "expected " + message.removeprefix("Input should be ")
        message = message.replace("expected '", "expected one of '", 1)
    if not location:
        return _line(source, message)
    if isinstance(value, dict | list):
        return _line(source, f"field '{location}': {message}")
    return _line(source, f"field '{location}' has {excerpt(value)}: {message}")


def _field_path(loc: tuple[Any, ...]) -> str:
    """`events.publishes[0]`, `labels["a.b"]`: a key that is no plain name is quoted, so a
    dotted TOML key reads as one key."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-after") or part in {"str", "list[str]", "constrained-str"}:
            continue
        elif part == "[key]":
            path += " (the key)"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{excerpt(part)}]"
    return path


def _known_fields(parent: tuple[Any, ...]) -> list[str]:
    """The fields of the table at `parent` (a pydantic location), or [] when it is no table
    of the manifest's own."""
    model: type[BaseModel] = Manifest
    for part in parent:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = getattr(field.annotation, "__args__", (field.annotation,)) if field else ()
        found = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if found is None:
            return []
        model = found
    return list(model.model_fields)
