"""`mesh tenant`, `mesh flags` and `mesh config`: per-tenant modules, feature flags and
layered configuration, through the coordinator's Tenancy service."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable

from google.protobuf import json_format

from mesh.cli import render, shapes
from mesh.cli._common import (
    EXIT_OK,
    Commands,
    MeshStubs,
    call_mesh,
    call_tenancy,
    console,
    coordinator_address,
    coordinator_option,
    did_you_mean,
    error_console,
    json_struct,
)
from mesh.protocol.states import State
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc, tenancy_pb2


def register(commands: Commands) -> None:
    """Add `tenant`, `flags` and `config` (each with its actions) to the `mesh` command."""
    actor = os.environ.get("USER", "cli")

    tenant = commands.add_parser("tenant", help="which modules serve a tenant: enable, disable, list")
    tenant_actions = tenant.add_subparsers(dest="tenant_action", metavar="ACTION", required=True)
    for action, extra, summary in (
        ("enable", "--with-dependencies", "let a module serve a tenant (its dependencies must serve it already)"),
        ("disable", "--cascade", "stop a module serving a tenant (its dependents must not serve it)"),
    ):
        sub = tenant_actions.add_parser(action, help=summary)
        coordinator_option(sub)
        sub.add_argument("tenant", help="the tenant's id, e.g. acme")
        sub.add_argument("module", help="the module's name")
        sub.add_argument(
            extra,
            action="store_true",
            help="also enable the dependencies" if action == "enable" else "also disable the dependents",
        )
        sub.add_argument("--actor", default=actor, help="who asks, for the audit trail (default: $USER)")
        sub.set_defaults(run=_tenant_enable if action == "enable" else _tenant_disable)
    listing = tenant_actions.add_parser("list", help="every module of the mesh and whether it serves the tenant")
    coordinator_option(listing)
    listing.add_argument("tenant", help="the tenant's id, e.g. acme")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    listing.set_defaults(run=_tenant_list)

    flags = commands.add_parser("flags", help="feature flags of a tenant: set, get")
    flag_actions = flags.add_subparsers(dest="flag_action", metavar="ACTION", required=True)
    setting = flag_actions.add_parser("set", help="turn a feature flag on or off for a tenant")
    coordinator_option(setting)
    setting.add_argument("tenant", help="the tenant's id, e.g. acme")
    setting.add_argument("flag", help="the flag's name, as a module declares it")
    setting.add_argument("value", choices=("on", "off"))
    setting.add_argument("--actor", default=actor, help="who asks, for the audit trail (default: $USER)")
    setting.set_defaults(run=_flags_set)
    getting = flag_actions.add_parser("get", help="the feature flags set for a tenant")
    coordinator_option(getting)
    getting.add_argument("tenant", help="the tenant's id, e.g. acme")
    getting.add_argument("--json", action="store_true", help="print a JSON list of flags")
    getting.set_defaults(run=_flags_get)

    config = commands.add_parser("config", help="layered configuration: set, get, effective")
    config_actions = config.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    for action, summary in (
        ("set", "store a tenant's (or company's) override, validated against the module's schema first"),
        ("get", "the override stored for a tenant (or company), as JSON"),
        ("effective", "every value the module sees for a tenant, with the layer it comes from"),
    ):
        sub = config_actions.add_parser(action, help=summary)
        coordinator_option(sub)
        sub.add_argument("module", help="the module's name")
        sub.add_argument("tenant", help="the tenant's id, e.g. acme")
        sub.add_argument("--company", default="", help="the company level (default: the tenant level)")
        if action == "set":
            sub.add_argument("json", help='the override, a JSON object, e.g. \'{"currency": "EUR"}\'')
            sub.add_argument("--actor", default=actor, help="who asks, for the audit trail (default: $USER)")
        else:
            sub.add_argument("--json", action="store_true", help="print JSON (as a list of values for effective)")
        sub.set_defaults(run=CONFIG_ACTIONS[action])


def _tenant_list(args: argparse.Namespace) -> int:
    reply: tenancy_pb2.ListTenantModulesResponse = call_tenancy(
        coordinator_address(args),
        lambda t: t.ListTenantModules(tenancy_pb2.ListTenantModulesRequest(tenant=args.tenant)),
    )
    if args.json:
        shapes.print_json(shapes.tenant_modules(reply.modules))
    else:
        console.print(render.tenant_table(args.tenant, reply.modules))
    return EXIT_OK


def _tenant_enable(args: argparse.Namespace) -> int:
    request = tenancy_pb2.EnableModuleRequest(
        tenant=args.tenant, module=args.module, with_dependencies=args.with_dependencies, actor=args.actor
    )

    async def enable(stubs: MeshStubs) -> tuple[tenancy_pb2.EnableModuleResponse, coordinator_pb2.GetModuleResponse]:
        reply = await stubs.tenancy.EnableModule(request)
        module = await stubs.coordinator.GetModule(coordinator_pb2.GetModuleRequest(name=args.module), timeout=10)
        return reply, module

    reply, module = call_mesh(coordinator_address(args), enable)
    code = _print_changed(args, reply.changed)
    if module.status.state == State.SKIPPED.value:
        _warn(
            args,
            f"module {args.module} is skipped in this mesh ({module.status.state_reason}), so it serves no "
            "tenant: turn the flag on (FEATURE_FLAG_<FLAG>=true, or [flags] in mesh.toml) and restart the mesh",
        )
    return code


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
    console.print(f"mesh tenant {args.tenant_action}: {args.tenant}: {names}", markup=False)
    return EXIT_OK


def _warn(args: argparse.Namespace, message: str) -> None:
    """A warning of a command that succeeded: the user may have meant something else."""
    error_console.print(f"mesh {args.command_path}: warning: {message}", markup=False)


def _flags_set(args: argparse.Namespace) -> int:
    request = tenancy_pb2.SetFeatureFlagRequest(
        tenant=args.tenant, flag=args.flag, enabled=args.value == "on", actor=args.actor
    )

    async def set_flag(stubs: MeshStubs) -> tuple[tenancy_pb2.SetFeatureFlagResponse, set[str]]:
        reply = await stubs.tenancy.SetFeatureFlag(request)
        return reply, await _declared_flags(stubs.coordinator)

    reply, declared = call_mesh(coordinator_address(args), set_flag)
    console.print(
        f"mesh flags: {args.tenant}: {reply.flag.name} is {'on' if reply.flag.enabled else 'off'}", markup=False
    )
    if args.flag not in declared:
        known = ", ".join(sorted(declared)) or "none"
        _warn(
            args,
            f"no module's manifest declares feature flag {args.flag!r} (declared: {known})"
            f"{did_you_mean(args.flag, declared)}; it is set, but only code that asks for exactly this name "
            "(@sdk.requires_flag) reads it",
        )
    return EXIT_OK


async def _declared_flags(coordinator: coordinator_pb2_grpc.CoordinatorStub) -> set[str]:
    """The feature flags the manifests of the mesh's modules declare."""
    listed = await coordinator.ListModules(coordinator_pb2.ListModulesRequest(), timeout=10)
    declared = set()
    for module in listed.modules:
        detail = await coordinator.GetModule(coordinator_pb2.GetModuleRequest(name=module.name), timeout=10)
        if detail.manifest.feature_flag:
            declared.add(detail.manifest.feature_flag)
    return declared


def _flags_get(args: argparse.Namespace) -> int:
    reply: tenancy_pb2.GetFeatureFlagsResponse = call_tenancy(
        coordinator_address(args),
        lambda t: t.GetFeatureFlags(tenancy_pb2.GetFeatureFlagsRequest(tenant=args.tenant)),
    )
    if args.json:
        shapes.print_json(shapes.feature_flags(reply.flags))
        return EXIT_OK
    if not reply.flags:
        console.print(f"flags of tenant {args.tenant}: none", markup=False)
    for flag in reply.flags:
        console.print(f"{flag.name}\t{'on' if flag.enabled else 'off'}\t{flag.changed_by}", markup=False)
    return EXIT_OK


def _config_set(args: argparse.Namespace) -> int:
    request = tenancy_pb2.SetConfigRequest(
        module=args.module,
        tenant=args.tenant,
        company=args.company,
        config=json_struct(args.json, "the override", '{"currency": "EUR"}'),
        actor=args.actor,
    )

    async def set_config(stubs: MeshStubs) -> tuple[tenancy_pb2.SetConfigResponse, bool]:
        reply = await stubs.tenancy.SetConfig(request)
        listed = await stubs.tenancy.ListTenantModules(tenancy_pb2.ListTenantModulesRequest(tenant=args.tenant))
        return reply, any(m.module == args.module and m.enabled for m in listed.modules)

    reply, enabled = call_mesh(coordinator_address(args), set_config)
    shapes.print_json(render.plain_numbers(json_format.MessageToDict(reply.effective)))
    if not enabled:
        _warn(
            args,
            f"module {args.module} is not enabled for tenant {args.tenant}: the override is stored and applies "
            f"once it is (mesh tenant enable {args.tenant} {args.module})",
        )
    return EXIT_OK


def _config_get(args: argparse.Namespace) -> int:
    """The stored override is JSON either way; --json is accepted so that every read command takes it."""
    request = tenancy_pb2.GetConfigRequest(module=args.module, tenant=args.tenant, company=args.company)
    reply: tenancy_pb2.GetConfigResponse = call_tenancy(coordinator_address(args), lambda t: t.GetConfig(request))
    shapes.print_json(render.plain_numbers(json_format.MessageToDict(reply.config)))
    return EXIT_OK


def _config_effective(args: argparse.Namespace) -> int:
    request = tenancy_pb2.GetEffectiveConfigRequest(module=args.module, tenant=args.tenant, company=args.company)
    reply: tenancy_pb2.GetEffectiveConfigResponse = call_tenancy(
        coordinator_address(args), lambda t: t.GetEffectiveConfig(request)
    )
    leaves = render.config_leaves(json_format.MessageToDict(reply.config), reply.sources)
    if args.json:
        shapes.print_json(leaves)
    else:
        console.print(render.config_table(leaves))
    return EXIT_OK


CONFIG_ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "set": _config_set,
    "get": _config_get,
    "effective": _config_effective,
}
