"""A module class's events as data: its `@on` handlers with their payload codecs, and the
checks of them (and of its `event_models`) against the manifest, made before it serves."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from sdk.events._event import Event
from sdk.events._options import HANDLER_ATTRIBUTE, Durable, Ephemeral, HandlerOptions
from sdk.events._payloads import PayloadCodec, codec_for, is_model_class


@dataclass(frozen=True)
class HandlerBinding:
    """One handler method of a module class, with its payload codec."""

    method_name: str
    options: HandlerOptions
    codec: PayloadCodec
    wants_envelope: bool

    @property
    def durable(self) -> Durable | None:
        """The handler's durable settings, or None for an ephemeral handler."""
        delivery = self.options.delivery
        return delivery if isinstance(delivery, Durable) else None

    @property
    def ephemeral(self) -> Ephemeral | None:
        """The handler's ephemeral settings, or None for a durable handler."""
        delivery = self.options.delivery
        return delivery if isinstance(delivery, Ephemeral) else None


def handler_bindings(module_class: type) -> list[HandlerBinding]:
    """The `@on` handlers of a module class, with payload types from their annotations.

    Raises:
        TypeError: a handler does not take exactly one parameter.
    """
    bindings = []
    for name, method in inspect.getmembers(module_class, inspect.isfunction):
        options = getattr(method, HANDLER_ATTRIBUTE, None)
        if not isinstance(options, HandlerOptions):
            continue
        parameters = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
        if len(parameters) != 1:
            raise TypeError(
                f"{module_class.__name__}.{name}: an event handler takes one parameter "
                f"(the payload, or sdk.Event[Payload]); found {len(parameters)}"
            )
        hint = typing.get_type_hints(method).get(parameters[0].name, Any)
        wants_envelope = typing.get_origin(hint) is Event or hint is Event
        payload_type = (typing.get_args(hint) or (Any,))[0] if wants_envelope else hint
        bindings.append(HandlerBinding(name, options, codec_for(payload_type), wants_envelope))
    return bindings


def check_declared_events(
    module_class: type, bindings: list[HandlerBinding], manifest: Manifest, manifest_path: str
) -> None:
    """Refuse, before the module serves, code that disagrees with its manifest: a handler of
    a type not under [events] subscribes, an `event_models` entry for a type not under
    [events] publishes, or an `event_models` value that is no payload class.

    Raises:
        MeshError: UNDECLARED_EVENT for a type the manifest does not declare; INVALID_EVENT
            for an `event_models` value that is not a pydantic model or protobuf message class.
    """
    for binding in bindings:
        if binding.options.pattern not in manifest.events.subscribes:
            raise MeshError(
                "UNDECLARED_EVENT",
                f"handler {binding.method_name} of module {manifest.name} handles "
                f"'{binding.options.pattern}', which {manifest_path} does not declare; add it to "
                "[events] subscribes",
                metadata={"module": manifest.name, "event_type": binding.options.pattern},
            )
    models: Mapping[str, Any] = getattr(module_class, "event_models", {})
    for event_type, model in models.items():
        if event_type not in manifest.events.publishes:
            raise MeshError(
                "UNDECLARED_EVENT",
                f"{module_class.__name__}.event_models names '{event_type}', which {manifest_path} does not "
                "declare; add it to [events] publishes, or remove it from event_models",
                metadata={"module": manifest.name, "event_type": event_type},
            )
        if not is_model_class(model):
            raise MeshError(
                "INVALID_EVENT",
                f"{module_class.__name__}.event_models['{event_type}'] is {model!r}; use a pydantic model "
                "class or a protobuf message class (the payload type of that event)",
                metadata={"module": manifest.name, "event_type": event_type},
            )
