"""The catalogue of event types: who publishes each, who handles it, and its JSON Schema,
derived from the manifests (and, for Python modules, from their payload models); and its
AsyncAPI 3.0 form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message as ProtoMessage
from pydantic import BaseModel, TypeAdapter

from mesh.control.discovery import DiscoveredModule
from mesh.protocol.names import EVENT_SUBJECT_PREFIX, matches
from sdk import handler_bindings, load_module

CLOUDEVENTS_HEADERS = {
    "type": "object",
    "required": ["ce-id", "ce-source", "ce-type", "ce-specversion"],
    "properties": {
        "ce-id": {"type": "string", "description": "unique id of the event; also Nats-Msg-Id"},
        "ce-source": {"type": "string", "description": "the publishing module, mesh://<module>"},
        "ce-type": {"type": "string", "description": "the event type, entity.action"},
        "ce-specversion": {"type": "string", "const": "1.0"},
        "ce-time": {"type": "string", "format": "date-time"},
        "ce-subject": {"type": "string", "description": "what the event is about"},
        "ce-tenant": {"type": "string", "description": "the tenant (also in the subject)"},
        "ce-company": {"type": "string", "description": "the company within the tenant"},
        "content-type": {"type": "string"},
        "traceparent": {"type": "string", "description": "W3C trace context of the producer"},
        "tracestate": {"type": "string"},
    },
}


@dataclass
class Subscriber:
    module: str
    pattern: str
    handler: str = ""


@dataclass
class EventTypeEntry:
    """One event type of the mesh."""

    type: str
    publishers: list[str] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)
    schema: dict[str, Any] | None = None
    content_type: str = "application/json"


@dataclass
class Catalog:
    types: dict[str, EventTypeEntry]
    warnings: list[str]


def schema_of(payload_type: Any) -> tuple[dict[str, Any] | None, str]:
    """The JSON Schema and content type of a payload type (None when it says nothing)."""
    if isinstance(payload_type, type) and issubclass(payload_type, BaseModel):
        return payload_type.model_json_schema(), "application/json"
    if isinstance(payload_type, type) and issubclass(payload_type, ProtoMessage):
        name = payload_type.DESCRIPTOR.full_name
        return {"type": "string", "contentEncoding": "binary", "x-protobuf-message": name}, "application/protobuf"
    if payload_type is bytes:
        return {"type": "string", "contentEncoding": "binary"}, "application/octet-stream"
    if payload_type is Any:
        return None, "application/json"
    return TypeAdapter(payload_type).json_schema(), "application/json"


def build_catalog(modules: Mapping[str, DiscoveredModule]) -> Catalog:
    """Every published or subscribed event type, with its publishers, subscribers and schema."""
    types: dict[str, EventTypeEntry] = {}
    warnings: list[str] = []
    handler_names: dict[tuple[str, str], str] = {}
    handler_schemas: dict[tuple[str, str], tuple[dict[str, Any] | None, str]] = {}
    for name, module in sorted(modules.items()):
        manifest = module.manifest
        for event_type in manifest.events.publishes:
            types.setdefault(event_type, EventTypeEntry(event_type)).publishers.append(name)
        if manifest.run.entry is None:
            continue  # another language: the manifest is all there is
        try:
            module_class = load_module(module.directory).module_class
        except Exception as error:  # a catalogue still helps with one module broken
            warnings.append(f"module {name}: cannot load its code for payload schemas: {error}")
            continue
        for event_type, model in getattr(module_class, "event_models", {}).items():
            entry = types.setdefault(event_type, EventTypeEntry(event_type))
            entry.schema, entry.content_type = schema_of(model)
        for binding in handler_bindings(module_class):
            handler_names[(name, binding.options.pattern)] = binding.method_name
            handler_schemas[(name, binding.options.pattern)] = schema_of(binding.codec.payload_type)
    for name, module in sorted(modules.items()):
        for pattern in module.manifest.events.subscribes:
            matched = [entry for event_type, entry in types.items() if matches(pattern, event_type)]
            if "*" not in pattern and ">" not in pattern and not matched:
                matched = [types.setdefault(pattern, EventTypeEntry(pattern))]
            if not any(entry.publishers for entry in matched):
                warnings.append(f"module {name} subscribes to '{pattern}', which no module publishes")
            for entry in matched:
                entry.subscribers.append(Subscriber(name, pattern, handler_names.get((name, pattern), "")))
                schema, content_type = handler_schemas.get((name, pattern), (None, ""))
                if entry.schema is None and schema is not None and pattern == entry.type:
                    entry.schema, entry.content_type = schema, content_type
    return Catalog(dict(sorted(types.items())), warnings)


def _key(event_type: str) -> str:
    """AsyncAPI component keys allow letters, digits, '-' and '_' only."""
    return event_type.replace(".", "_")


def asyncapi(catalog: Catalog, *, title: str = "Module Mesh events", version: str = "1.0.0") -> dict[str, Any]:
    """The catalogue as an AsyncAPI 3.0 document."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, entry in catalog.types.items():
        key = _key(event_type)
        message: dict[str, Any] = {
            "name": event_type,
            "title": event_type,
            "contentType": entry.content_type,
            "headers": CLOUDEVENTS_HEADERS,
        }
        if entry.schema is not None:
            message["payload"] = entry.schema
        messages[key] = message
        channels[key] = {
            "address": f"{EVENT_SUBJECT_PREFIX}.{{tenant}}.{event_type}",
            "title": event_type,
            "parameters": {"tenant": {"description": "the tenant's id, '_' for events without one"}},
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        reference = {"$ref": f"#/channels/{key}/messages/{key}"}
        for publisher in entry.publishers:
            operations[f"{_key(publisher)}__send__{key}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{key}"},
                "title": f"{publisher} publishes {event_type}",
                "messages": [reference],
            }
        for subscriber in entry.subscribers:
            handler = subscriber.handler or _key(subscriber.pattern.replace("*", "any").replace(">", "all"))
            operations[f"{_key(subscriber.module)}__{handler}__receive__{key}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{key}"},
                "title": f"{subscriber.module} handles {event_type}"
                + (f" ({subscriber.handler}, pattern '{subscriber.pattern}')" if subscriber.handler else ""),
                "messages": [reference],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": version,
            "description": "CloudEvents in the NATS binding's binary mode: attributes in ce- headers, "
            "the payload as the body. Durable consumers read the JetStream stream MESH_EVENTS.",
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": "127.0.0.1:4222", "protocol": "nats", "description": "the mesh's NATS"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
