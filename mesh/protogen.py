"""Generate the Python code of every .proto file in the project.

`make proto` runs this over the working tree; a test runs it into a temporary folder and
compares, so the committed code in mesh/v1/ (and in each module's v1/ folder) never drifts
from the contracts. Two source roots exist:

* `proto/` holds `mesh.v1`, generated into `mesh/v1/`;
* `modules/` holds each module's own API as `modules/<module>/v1/*.proto` (proto package
  `<module>.v1`), generated beside it, since the modules folder is a Python import root.

grpcio-tools is a dev dependency, so it is imported only when generating.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GENERATED_INIT = '"""Generated from the .proto files beside it by `make proto`; do not edit."""\n'
SKIPPED_DIRS = {"node_modules", ".venv", "__pycache__"}


@dataclass(frozen=True)
class ProtoRoot:
    """One source root: its .proto files are generated into `output` (relative to the project)."""

    source: str
    output: str


ROOTS = (ProtoRoot(source="proto", output="."), ProtoRoot(source="modules", output="modules"))


class ProtoGenerationError(RuntimeError):
    """protoc rejected a .proto file; the message holds protoc's own report."""


def find_protos(source_dir: Path) -> list[Path]:
    """Every .proto file below `source_dir`, outside vendored dependency folders."""
    return sorted(
        path
        for path in source_dir.rglob("*.proto")
        if not SKIPPED_DIRS.intersection(path.relative_to(source_dir).parts)
    )


def generate(project: Path, out: Path) -> list[Path]:
    """Generate messages, services and .pyi stubs for every root of `project` into `out`.

    Args:
        project: The project folder holding `proto/` and `modules/`.
        out: Where to write; the project itself for `make proto`, a scratch folder in tests.

    Returns:
        The generated files, relative to `out`.
    """
    include_paths = [project / root.source for root in ROOTS]
    written: set[Path] = set()
    for root in ROOTS:
        source_dir = project / root.source
        produced = generate_tree(source_dir, out / root.output, include_paths)
        written |= {path.relative_to(out) for path in produced}
    return sorted(written)


def generate_tree(source_dir: Path, target: Path, include_paths: Iterable[Path] = ()) -> set[Path]:
    """Generate the code of every .proto file below `source_dir` into `target` (same layout).

    Returns:
        The files written (absolute), `__init__.py` files of the generated packages included.
    """
    # Imported only here: slow to import, and only `make proto` and `mesh new` need it.
    from grpc_tools import protoc  # type: ignore[import-untyped]

    protos = find_protos(source_dir) if source_dir.is_dir() else []
    if not protos:
        return set()
    includes = [source_dir, *(path for path in include_paths if path.is_dir() and path != source_dir)]
    target.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        *(f"-I{path}" for path in includes),
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"-I{googleapis_protos()}",
        f"--python_out={target}",
        f"--pyi_out={target}",
        f"--grpc_python_out={target}",
        *(str(path.relative_to(source_dir)) for path in protos),
    ]
    code = protoc.main(args)
    if code != 0:
        raise ProtoGenerationError(f"protoc failed with exit code {code} on {source_dir}")
    produced = _generated_for(protos, source_dir, target)
    for package_dir in {path.parent for path in produced}:
        init = package_dir / "__init__.py"
        init.write_text(GENERATED_INIT)
        produced.add(init)
    return produced


def googleapis_protos() -> Path:
    """The folder holding google/api/annotations.proto and http.proto, as installed with
    googleapis-common-protos: a module's .proto may import them for the gateway's REST routes
    (`option (google.api.http)`), and the generated code imports that package's modules, so
    the code is generated against the very files it runs with. (buf reads the same files from
    third_party/googleapis/, which a test keeps equal to these.)"""
    from google.api import annotations_pb2

    return Path(annotations_pb2.__file__).parent.parent.parent


def _generated_for(protos: Iterable[Path], source_dir: Path, target: Path) -> set[Path]:
    """The files protoc writes for `protos` (it rewrites existing ones in place)."""
    files: set[Path] = set()
    for proto in protos:
        stem = target / proto.relative_to(source_dir).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            candidate = stem.with_name(stem.name + suffix)
            if candidate.exists():
                files.add(candidate)
    return files


def main() -> int:
    """Regenerate the project's code in place (the `make proto` target)."""
    project = Path.cwd()
    try:
        files = generate(project, project)
    except ProtoGenerationError as error:
        print(f"make proto: {error}", file=sys.stderr)
        return 1
    print(f"generated {len(files)} files from the .proto files under proto/ and modules/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
