"""Loading a module's code from its folder, as its manifest's `[run] entry` names it.

The modules folder is a Python import root: `modules/greeter/module.py` is imported as
`greeter.module`, and the module's generated API (`modules/greeter/v1/greeter_pb2.py`,
proto package `greeter.v1`) as `greeter.v1.greeter_pb2`, in every process alike.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from mesh.protocol.manifest import MANIFEST_FILE, Manifest, ManifestError, load_manifest
from sdk._module import Module


@dataclass(frozen=True)
class LoadedModule:
    """A module's manifest and class, ready to serve."""

    directory: Path
    manifest: Manifest
    module_class: type[Module]

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_FILE


class ModuleLoadError(RuntimeError):
    """The module's code cannot be imported or is not a module class; the message says why."""


def load_module(directory: Path | str) -> LoadedModule:
    """Read the manifest in `directory` and import the class its `[run] entry` names.

    Raises:
        ManifestError: the manifest is invalid.
        ModuleLoadError: the code cannot be imported or is not an `sdk.Module`.
    """
    directory = Path(directory).resolve()
    manifest = load_manifest(directory)
    manifest_path = directory / MANIFEST_FILE
    if manifest.run.entry is None:
        raise ModuleLoadError(
            f"{manifest_path}: [run] has a 'command', not an 'entry'; a module in another "
            "language is started by its command, not by the Python SDK"
        )
    package = directory.name
    if not package.isidentifier():
        raise ManifestError(
            [
                f"{directory}: the folder name '{package}' is not a Python identifier; name the folder "
                f"after the module with '_' for '-', e.g. '{package.replace('-', '_')}'"
            ]
        )
    if package in sys.stdlib_module_names:
        raise ManifestError(
            [
                f"{directory}: the folder name '{package}' shadows Python's standard module of that "
                "name; rename the folder"
            ]
        )
    import_root = str(directory.parent)
    if import_root not in sys.path:
        sys.path.insert(0, import_root)
    module_path, _, class_name = manifest.run.entry.partition(":")
    qualified = f"{package}.{module_path}"
    try:
        python_module = importlib.import_module(qualified)
    except Exception as error:
        raise ModuleLoadError(
            f"{manifest_path}: [run] entry '{manifest.run.entry}': importing {qualified} failed: "
            f"{type(error).__name__}: {error}"
        ) from error
    module_class = getattr(python_module, class_name, None)
    if not (isinstance(module_class, type) and issubclass(module_class, Module)):
        raise ModuleLoadError(
            f"{manifest_path}: [run] entry '{manifest.run.entry}': {qualified} has no class "
            f"'{class_name}' that subclasses sdk.Module"
        )
    return LoadedModule(directory=directory, manifest=manifest, module_class=module_class)
