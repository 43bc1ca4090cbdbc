"""A module's configuration, validated against its config model the one way the runtime and
the unit test tier both use: every problem named by field, and unknown keys refused."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mesh.protocol.errors import MeshError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def validated_config(model: type[ConfigT], data: dict[str, Any], module: str) -> ConfigT:
    """`data` as an instance of `model`.

    Raises:
        MeshError: INVALID_CONFIG naming the first bad or unknown field.
    """
    _refuse_unknown_keys(model, data, module)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in problem['loc']) or '(root)'}' has "
            f"{problem.get('input')!r}: {problem['msg']}"
            for problem in error.errors()
        )
        raise MeshError(
            "INVALID_CONFIG",
            f"configuration of module {module} is invalid: {problems}",
            metadata={"module": module, "field": ".".join(str(p) for p in error.errors()[0]["loc"])},
        ) from None


def _refuse_unknown_keys(model: type[BaseModel], data: dict[str, Any], module: str) -> None:
    """A misspelt key must not be ignored silently: pydantic's default ('ignore') would.

    A model that sets `extra` itself ("allow" or "forbid") decides on its own.
    """
    if model.model_config.get("extra") is not None:
        return
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MeshError(
            "INVALID_CONFIG",
            f"configuration of module {module} has unknown field '{unknown[0]}'; "
            f"expected one of: {', '.join(sorted(model.model_fields)) or 'none (it takes no configuration)'}",
            metadata={"module": module, "field": unknown[0]},
        )
