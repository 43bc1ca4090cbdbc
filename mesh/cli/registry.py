"""`mesh registry`: module packages. So far `validate`, the dry run of publishing: the module
folder's manifest checked (every problem at once), its files packed as a package would be
(mesh.protocol.packages: no links, within the size limit), and the package's digest shown.

    mesh registry validate modules/greeter [--json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mesh.cli._common import EXIT_OK, EXIT_USAGE, CliError, Commands, console
from mesh.cli.shapes import print_json
from mesh.protocol.manifest import ManifestError
from mesh.protocol.packages import MAX_PACKAGE_BYTES, PackageRefused, pack


def register(commands: Commands) -> None:
    """Add `registry` to the `mesh` command."""
    registry = commands.add_parser("registry", help="module packages: validate a module folder as a package")
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = actions.add_parser(
        "validate",
        help="check a module folder as publishing would (manifest, files, size) and show its package's digest",
        description="Check a module folder as `mesh registry publish` will: the manifest (every problem at "
        "once), the files (regular files only, no links), the package's size; then show what the package holds "
        "and its SHA256. Nothing is uploaded.",
    )
    validate.add_argument("folder", type=Path, metavar="DIR", help="the module's folder (its module.toml)")
    validate.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_PACKAGE_BYTES,
        help=f"the largest package taken, compressed (default {MAX_PACKAGE_BYTES})",
    )
    validate.add_argument("--json", action="store_true", help="the result as JSON")
    validate.set_defaults(run=_validate)


def _validate(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        raise CliError(f"{args.folder}: no such folder; give a module's folder (the one with module.toml)", EXIT_USAGE)
    if args.max_bytes < 1:
        raise CliError(f"--max-bytes must be at least 1, not {args.max_bytes}", EXIT_USAGE)
    try:
        packed = pack(args.folder, args.max_bytes)
    except (ManifestError, PackageRefused) as error:
        raise CliError(str(error), EXIT_USAGE) from None
    manifest = packed.manifest
    files = [name for name in packed.files if not (args.folder / name).is_dir()]
    if args.json:
        print_json(
            {
                "name": manifest.name,
                "version": manifest.version,
                "sha256": packed.digest,
                "bytes": len(packed.archive),
                "files": files,
            }
        )
        return EXIT_OK
    console.print(
        f"{manifest.name}@{manifest.version}: a valid package of {len(files)} files, {len(packed.archive)} bytes "
        f"compressed\nsha256 {packed.digest}",
        markup=False,
        highlight=False,
    )
    return EXIT_OK
