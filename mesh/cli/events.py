"""`mesh events` and `mesh dlq`: the event catalogue of a modules folder, and the dead
letters of a running mesh."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from mesh.cli import render, shapes
from mesh.cli._common import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    Commands,
    config_options,
    console,
    discovered_modules,
    error_console,
    nats_url,
    state_root,
    write_file,
)
from mesh.control.statedir import StateDir

NATS_RETRY_SECONDS = 0.2


def register(commands: Commands) -> None:
    """Add `events` and `dlq` to the `mesh` command."""
    events = commands.add_parser("events", help="the event types with publishers, subscribers and JSON Schemas")
    config_options(events)
    form = events.add_mutually_exclusive_group()
    form.add_argument("--asyncapi", type=Path, metavar="FILE", help="write an AsyncAPI 3.0 document (JSON) there")
    form.add_argument("--json", action="store_true", help="print the catalogue as a JSON list of event types")
    events.set_defaults(run=_events)

    dlq = commands.add_parser("dlq", help="dead letters: list, show, replay")
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the dead letters, oldest first")
    listing.add_argument("--module", help="only this module's dead letters")
    listing.add_argument("--json", action="store_true", help="print a JSON list of dead letters")
    showing = actions.add_parser("show", help="one dead letter as JSON: the event, its headers, why it failed")
    showing.add_argument("seq", type=int, help="the dead letter's sequence number (see `mesh dlq list`)")
    showing.add_argument("--json", action="store_true", help="the same JSON (accepted as on every read command)")
    replaying = actions.add_parser("replay", help="deliver dead letters to their handler again")
    chosen = replaying.add_mutually_exclusive_group(required=True)
    chosen.add_argument("seq", nargs="?", type=int, help="the dead letter's sequence number (see `mesh dlq list`)")
    chosen.add_argument("--all", action="store_true", help="replay every dead letter (of --module, if given)")
    replaying.add_argument("--module", help="with --all: only this module's dead letters")
    replaying.add_argument("--keep", action="store_true", help="keep the dead letter after replaying it")
    for action in (listing, showing, replaying):
        action.add_argument("--nats-url", help="the mesh's NATS (default: env NATS_URL, then the running mesh's)")
        action.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)
        action.set_defaults(run=_dlq)


def _events(args: argparse.Namespace) -> int:
    # The catalogue loads module code through the SDK, which only this command needs.
    from mesh.control.catalog import asyncapi, build_catalog

    discovered = discovered_modules(args)
    catalog = build_catalog(discovered)
    if args.asyncapi:
        write_file(args.asyncapi, json.dumps(asyncapi(catalog), indent=2) + "\n", "the AsyncAPI document")
        console.print(
            f"mesh events: wrote an AsyncAPI 3.0 document of {len(catalog.types)} event types to {args.asyncapi}",
            markup=False,
        )
    elif args.json:
        shapes.print_json(shapes.event_types(catalog))
    else:
        console.print(render.events_table(catalog))
    for warning in catalog.warnings:
        error_console.print(f"mesh events: warning: {warning}", markup=False)
    return EXIT_OK


def _dlq(args: argparse.Namespace) -> int:
    if args.action == "replay" and args.module and not args.all:
        raise CliError("--module chooses among all dead letters: add --all, or give one SEQ alone", EXIT_USAGE)
    url = nats_url(args)
    if url is None:
        raise CliError(
            f"no running mesh in {state_root(args)} to take the NATS URL from; pass --nats-url or set NATS_URL",
            EXIT_USAGE,
        )
    return asyncio.run(_dlq_action(args, url))


async def _dlq_action(args: argparse.Namespace, url: str) -> int:
    # The NATS client is needed by `dlq` alone; imported here, it does not slow down other commands.
    import nats

    from mesh.control import dlq
    from mesh.control.nats_identities import admin_login

    login = admin_login(StateDir(state_root(args)).nats_access).connect_options()

    async def quiet(error: Exception) -> None:
        """nats-py logs each failure with a traceback; the one that matters is raised below."""

    try:
        # nats-py (2.16) retries the first connection without end when max_reconnect_attempts is 0:
        # one more try each, then NoServersError.
        client = await nats.connect(
            url.split(","),
            connect_timeout=5,
            max_reconnect_attempts=1,
            reconnect_time_wait=NATS_RETRY_SECONDS,
            error_cb=quiet,
            **login,
        )
    except Exception as error:
        raise CliError(f"cannot reach NATS at {url}: {error}", EXIT_UNREACHABLE) from None
    try:
        if args.action == "list":
            letters = await dlq.list_dead_letters(client, module=args.module)
            if args.json:
                shapes.print_json([shapes.dead_letter(letter) for letter in letters])
            else:
                console.print(render.dead_letter_table(letters))
        elif args.action == "show":
            letter = await dlq.show(client, args.seq)
            shapes.print_json({**shapes.dead_letter(letter), "headers": letter.shown_headers()})
        elif args.all:
            letters = await dlq.list_dead_letters(client, module=args.module)
            for letter in letters:
                await dlq.replay(client, letter.seq, keep=args.keep)
            console.print(f"mesh dlq: replayed {len(letters)} dead letters", markup=False)
        else:
            letter = await dlq.replay(client, args.seq, keep=args.keep)
            console.print(
                f"mesh dlq: replayed {letter.seq} (event {letter.event.id}) to {letter.consumer}", markup=False
            )
    except dlq.DeadLetterNotFound as error:
        raise CliError(str(error), EXIT_USAGE) from None
    finally:
        await client.close()
    return EXIT_OK
