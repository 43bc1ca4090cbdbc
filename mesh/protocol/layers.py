"""Layered configuration: module defaults, then tenant, then company, merged one way by
the coordinator (effective config, validation before storing) and by each module (the
config it hands its code). Every layer is JSON: numbers are finite (NaN and Infinity have
no JSON form, so a layer holding one could be stored but never read back or sent on)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from mesh.protocol.errors import MeshError


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merge key by key; anything else in `override` replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def non_finite_path(value: Any, path: str = "") -> str | None:
    """The path (`limits.rate`, `items[2]`) of the first NaN or Infinity in a JSON-like
    value, or None when every number is finite."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(root)"
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = non_finite_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = non_finite_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def config_from_struct(struct: struct_pb2.Struct, what: str) -> dict[str, Any]:
    """A configuration received as a google.protobuf.Struct, as plain JSON data.

    Args:
        struct: The configuration as it came over gRPC.
        what: What it is, for the error, e.g. "the configuration of module orders".

    Raises:
        MeshError: INVALID_CONFIG when a number is NaN or Infinity (a Struct can carry
            them; JSON cannot).
    """
    data = {key: _plain(value) for key, value in struct.fields.items()}
    path = non_finite_path(data)
    if path is not None:
        raise MeshError(
            "INVALID_CONFIG",
            f"{what} holds NaN or Infinity at '{path}'; configuration is JSON, so use a finite number "
            "(or null, or a string)",
            metadata={"field": path},
        )
    return data


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {key: _plain(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None
