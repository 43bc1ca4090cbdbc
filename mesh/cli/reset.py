"""`mesh reset`: start the next `mesh up` from empty state.

    mesh reset          module databases, the embedded NATS's JetStream data (events, dead
                        letters, tenancy), logs; the mesh's CA and keys stay
    mesh reset --all    the CA, credentials and token key too (`mesh up` makes new ones;
                        credentials issued before stop working)

Only the entries of the state folder that `mesh up` writes are removed, by name, so a wrong
`--state-dir` cannot empty another folder. The folder's lock is held meanwhile: no `mesh up` can
start half-way, and a running mesh makes the command refuse.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mesh.cli._common import EXIT_FAILED, EXIT_OK, CliError, Commands, console, state_root
from mesh.control.statedir import StateDir, StateDirLocked

STATE_FILES = ("coordinator.json",)


def register(commands: Commands) -> None:
    """Add `reset` to the `mesh` command."""
    reset = commands.add_parser(
        "reset",
        help="remove a stopped mesh's state (module data, JetStream, logs); --all the CA too",
        description="Remove what `mesh up` keeps between runs, so the next one starts empty: each module's "
        "state (databases), the embedded NATS's JetStream data (events, dead letters, tenancy), NATS users, "
        "ready files and logs. The mesh's CA, credentials and token key stay unless --all.",
    )
    reset.add_argument("--all", action="store_true", help="remove the CA, credentials and token key too")
    reset.add_argument("--state-dir", type=Path, help="the state folder (default .mesh; env MESH_STATE_DIR)")
    reset.set_defaults(run=_reset)


def _reset(args: argparse.Namespace) -> int:
    root = state_root(args)
    if not root.is_dir():
        console.print(f"mesh reset: nothing to reset: {root} does not exist", markup=False)
        return EXIT_OK
    state_dir = StateDir(root)
    # Listed before the lock is taken, so the report names only what was there.
    present = [
        path.name + ("/" if path.is_dir() else "")
        for path in _runtime_entries(state_dir, including_pki=args.all)
        if path.exists()
    ]
    try:
        state_dir.lock()
    except StateDirLocked:
        owner = state_dir.read_info() or {}
        raise CliError(
            f"refused: a mesh is running with the state folder {root} (pid {owner.get('pid', '?')}, "
            f"{owner.get('address', '?')}); stop it first (`mesh down` or Ctrl-C), then reset",
            EXIT_FAILED,
        ) from None
    try:
        _remove(_runtime_entries(state_dir, including_pki=args.all))
    finally:
        state_dir.unlock()
    what = ", ".join(present)
    kept = "" if args.all else "; kept pki/ (the CA, credentials and token key; --all removes it too)"
    console.print(f"mesh reset: removed from {root}: {what or 'nothing (it was empty)'}{kept}", markup=False)
    return EXIT_OK


def _runtime_entries(state_dir: StateDir, *, including_pki: bool) -> list[Path]:
    """What `mesh up` writes into the state folder, the lock file excepted."""
    folders = [state_dir.state, state_dir.nats, state_dir.nats_access, state_dir.run, state_dir.logs]
    files = [state_dir.root / name for name in STATE_FILES]
    return folders + files + ([state_dir.pki] if including_pki else [])


def _remove(paths: list[Path]) -> None:
    """Remove each path that exists.

    Raises:
        CliError: one cannot be removed (exit 1), naming it and why.
    """
    for path in paths:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        except OSError as error:
            raise CliError(f"cannot remove {path}: {error.strerror or error}") from None
