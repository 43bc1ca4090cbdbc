"""`mesh tenant`, `mesh flags` and `mesh config`: per-tenant modules, feature flags and
layered configuration, through the coordinator's Tenancy service."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable

from google.protobuf import json_format

from mesh.cli import render
from mesh.cli._common import (
    EXIT_OK,
    Commands,
    call_tenancy,
    console,
    coordinator_address,
    coordinator_option,
    json_struct,
)
from mesh.v1 import tenancy_pb2


def register(commands: Commands) -> None:
    """Add `tenant`, `flags` and `config` (each with its actions) to the `mesh` command."""
    actor = os.environ.get("USER", "cli")

    tenant = commands.add_parser("tenant", help="which modules serve a tenant: enable, disable, list")
    tenant_actions = tenant.add_subparsers(dest="tenant_action", metavar="ACTION", required=True)
    for action, extra in (("enable", "--with-dependencies"), ("disable", "--cascade")):
        sub = tenant_actions.add_parser(action)
        coordinator_option(sub)
        sub.add_argument("tenant")
        sub.add_argument("module")
        sub.add_argument(
            extra,
            action="store_true",
            help="also enable the dependencies" if action == "enable" else "also disable the dependents",
        )
        sub.add_argument("--actor", default=actor, help="who asks, for the audit trail")
        sub.set_defaults(run=_tenant_enable if action == "enable" else _tenant_disable)
    listing = tenant_actions.add_parser("list")
    coordinator_option(listing)
    listing.add_argument("tenant")
    listing.set_defaults(run=_tenant_list)

    flags = commands.add_parser("flags", help="feature flags of a tenant: set, get")
    flag_actions = flags.add_subparsers(dest="flag_action", metavar="ACTION", required=True)
    setting = flag_actions.add_parser("set")
    coordinator_option(setting)
    setting.add_argument("tenant")
    setting.add_argument("flag")
    setting.add_argument("value", choices=("on", "off"))
    setting.add_argument("--actor", default=actor)
    setting.set_defaults(run=_flags_set)
    getting = flag_actions.add_parser("get")
    coordinator_option(getting)
    getting.add_argument("tenant")
    getting.set_defaults(run=_flags_get)

    config = commands.add_parser("config", help="layered configuration: set, get, effective")
    config_actions = config.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    for action in ("set", "get", "effective"):
        sub = config_actions.add_parser(action)
        coordinator_option(sub)
        sub.add_argument("module")
        sub.add_argument("tenant")
        sub.add_argument("--company", default="", help="the company level (default: the tenant level)")
        if action == "set":
            sub.add_argument("json", help='the override, a JSON object, e.g. \'{"currency": "EUR"}\'')
            sub.add_argument("--actor", default=actor)
        sub.set_defaults(run=CONFIG_ACTIONS[action])


def _tenant_list(args: argparse.Namespace) -> int:
    reply: tenancy_pb2.ListTenantModulesResponse = call_tenancy(
        coordinator_address(args),
        lambda t: t.ListTenantModules(tenancy_pb2.ListTenantModulesRequest(tenant=args.tenant)),
    )
    console.print(render.tenant_table(args.tenant, reply.modules))
    return EXIT_OK


def _tenant_enable(args: argparse.Namespace) -> int:
    request = tenancy_pb2.EnableModuleRequest(
        tenant=args.tenant, module=args.module, with_dependencies=args.with_dependencies, actor=args.actor
    )
    reply: tenancy_pb2.EnableModuleResponse = call_tenancy(coordinator_address(args), lambda t: t.EnableModule(request))
    return _print_changed(args, reply.changed)


def _tenant_disable(args: argparse.Namespace) -> int:
    request = tenancy_pb2.DisableModuleRequest(
        tenant=args.tenant, module=args.module, cascade=args.cascade, actor=args.actor
    )
    reply: tenancy_pb2.DisableModuleResponse = call_tenancy(
        coordinator_address(args), lambda t: t.DisableModule(request)
    )
    return _print_changed(args, reply.changed)


def _print_changed(args: argparse.Namespace, changed: Iterable[tenancy_pb2.TenantModule]) -> int:
    names = ", ".join(m.module for m in changed) or "nothing (already so)"
    console.print(f"mesh tenant {args.tenant_action}: {args.tenant}: {names}")
    return EXIT_OK


def _flags_set(args: argparse.Namespace) -> int:
    request = tenancy_pb2.SetFeatureFlagRequest(
        tenant=args.tenant, flag=args.flag, enabled=args.value == "on", actor=args.actor
    )
    reply: tenancy_pb2.SetFeatureFlagResponse = call_tenancy(
        coordinator_address(args), lambda t: t.SetFeatureFlag(request)
    )
    console.print(f"mesh flags: {args.tenant}: {reply.flag.name} is {'on' if reply.flag.enabled else 'off'}")
    return EXIT_OK


def _flags_get(args: argparse.Namespace) -> int:
    reply: tenancy_pb2.GetFeatureFlagsResponse = call_tenancy(
        coordinator_address(args),
        lambda t: t.GetFeatureFlags(tenancy_pb2.GetFeatureFlagsRequest(tenant=args.tenant)),
    )
    for flag in reply.flags:
        console.print(f"{flag.name}\t{'on' if flag.enabled else 'off'}\t{flag.changed_by}")
    return EXIT_OK


def _config_set(args: argparse.Namespace) -> int:
    address = coordinator_address(args)
    request = tenancy_pb2.SetConfigRequest(
        module=args.module,
        tenant=args.tenant,
        company=args.company,
        config=json_struct(args.json, "the override", '{"currency": "EUR"}'),
        actor=args.actor,
    )
    reply: tenancy_pb2.SetConfigResponse = call_tenancy(address, lambda t: t.SetConfig(request))
    console.print_json(json_format.MessageToJson(reply.effective))
    return EXIT_OK


def _config_get(args: argparse.Namespace) -> int:
    request = tenancy_pb2.GetConfigRequest(module=args.module, tenant=args.tenant, company=args.company)
    reply: tenancy_pb2.GetConfigResponse = call_tenancy(coordinator_address(args), lambda t: t.GetConfig(request))
    console.print_json(json_format.MessageToJson(reply.config))
    return EXIT_OK


def _config_effective(args: argparse.Namespace) -> int:
    request = tenancy_pb2.GetEffectiveConfigRequest(module=args.module, tenant=args.tenant, company=args.company)
    reply: tenancy_pb2.GetEffectiveConfigResponse = call_tenancy(
        coordinator_address(args), lambda t: t.GetEffectiveConfig(request)
    )
    console.print(render.config_table(json_format.MessageToDict(reply.config), reply.sources))
    return EXIT_OK


CONFIG_ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "set": _config_set,
    "get": _config_get,
    "effective": _config_effective,
}
