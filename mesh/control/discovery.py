"""Finding the modules of a mesh: manifests under the modules folder.

Every manifest is read and every problem collected, so that one run of `mesh up` reports
all bad manifests at once instead of one per attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mesh.protocol.manifest import MANIFEST_FILE, Manifest, ManifestError, load_manifest


@dataclass(frozen=True)
class DiscoveredModule:
    """A module found on disk."""

    manifest: Manifest
    directory: Path

    @property
    def name(self) -> str:
        return self.manifest.name


class DiscoveryError(ValueError):
    """Manifests that cannot be used; `lines` holds one line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def discover(modules_dir: Path) -> dict[str, DiscoveredModule]:
    """Every module under `modules_dir` (each folder holding a module.toml), by name.

    Raises:
        DiscoveryError: a missing folder, invalid manifests or duplicate names, all at once.
    """
    if not modules_dir.is_dir():
        raise DiscoveryError([f"{modules_dir}: no such modules folder; pass --modules or set modules_dir"])
    found: dict[str, DiscoveredModule] = {}
    lines: list[str] = []
    for manifest_path in sorted(modules_dir.resolve().glob(f"*/{MANIFEST_FILE}")):
        directory = manifest_path.parent
        try:
            manifest = load_manifest(directory)
        except ManifestError as error:
            lines.extend(error.lines)
            continue
        if manifest.name in found:
            lines.append(
                f"{manifest_path}: module name '{manifest.name}' is taken by "
                f"{found[manifest.name].directory / MANIFEST_FILE}; module names are unique in a mesh"
            )
            continue
        found[manifest.name] = DiscoveredModule(manifest, directory)
    if lines:
        raise DiscoveryError(lines)
    return found
