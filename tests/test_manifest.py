"""Manifest files: what a valid one gives, and one clear line for each kind of mistake."""

from __future__ import annotations

import pytest

from mesh.protocol.manifest import ManifestError, load_manifest, manifest_from_proto
from mesh.v1 import module_pb2

VALID = """
name = "orders"
version = "1.2.0"
description = "Takes orders."

[[dependencies]]
name = "inventory"
version = ">=1.0.0 <2.0.0"

[[dependencies]]
name = "notifications"
optional = true

[events]
publishes = ["order.created"]
subscribes = ["inventory.updated", "user.*"]

[restart]
policy = "always"
max_restarts = 3

[run]
entry = "module:Orders"
"""


def write(tmp_path, text: str):
    folder = tmp_path / "orders"
    folder.mkdir(exist_ok=True)
    (folder / "module.toml").write_text(text)
    return folder


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(ManifestError) as raised:
        load_manifest(write(tmp_path, text))
    return raised.value.lines


def test_a_valid_manifest_and_its_wire_form(tmp_path):
    manifest = load_manifest(write(tmp_path, VALID))
    assert manifest.name == "orders"
    assert [d.name for d in manifest.dependencies] == ["inventory", "notifications"]
    assert manifest.dependency("notifications").optional
    wire = manifest.to_proto()
    assert wire.dependencies[0].version_constraint == ">=1.0.0 <2.0.0"
    assert list(wire.subscribes) == ["inventory.updated", "user.*"]
    assert wire.restart_policy.mode == module_pb2.RESTART_MODE_ALWAYS
    assert wire.restart_policy.window.seconds == 60
    assert wire.run.entry == "module:Orders"
    assert list(wire.public_methods) == []


def test_the_public_methods_reach_the_wire_form(tmp_path):
    text = VALID.replace("[run]", '[gateway]\npublic = ["GetOrder"]\n\n[run]')
    assert list(load_manifest(write(tmp_path, text)).to_proto().public_methods) == ["GetOrder"]


EVERY_SECTION = """
name = "orders"
version = "1.2.0"
description = "Takes orders."
display_name = "Orders"
author = "Module Mesh"
category = "examples"
labels = { team = "shop" }
services = ["orders.v1.Orders"]
feature_flag = "orders-beta"
requires_tenant = true

[[dependencies]]
name = "inventory"
version = ">=1.0.0 <2.0.0"
optional = true

[events]
publishes = ["order.created"]
subscribes = ["user.*"]

[gateway]
public = ["GetOrder"]

[restart]
policy = "never"
max_restarts = 2
window_seconds = 30
backoff_initial_seconds = 0.25
backoff_max_seconds = 4

[run]
entry = "module:Orders"
"""


def test_a_registered_module_is_known_by_the_same_manifest_as_its_file(tmp_path):
    """RegisterModule carries the manifest as mesh.v1.Manifest: read back, every section is
    as the file said (the gateway's public methods once were lost on the way)."""
    manifest = load_manifest(write(tmp_path, EVERY_SECTION))
    assert manifest_from_proto(manifest.to_proto(), "a module at 10.0.0.5:7000") == manifest


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('name = "orders"\n', ""), "field 'name' is missing; it is required"),
        (
            ('name = "orders"', 'name = "Orders_Service"'),
            "field 'name' has 'Orders_Service': expected a kebab-case name",
        ),
        (
            ('version = "1.2.0"', 'version = "1.2"'),
            "field 'version' has '1.2': expected a semver version MAJOR.MINOR.PATCH",
        ),
        (
            ('description = "Takes orders."', 'descripton = "Takes orders."'),
            "unknown field 'descripton'; expected one of: name, version, description",
        ),
        (
            ('version = ">=1.0.0 <2.0.0"', 'version = ">>1.0"'),
            "field 'dependencies[0].version' has '>>1.0': expected an npm-style semver range",
        ),
        (
            ('publishes = ["order.created"]', 'publishes = ["OrderCreated"]'),
            "field 'events.publishes[0]' has 'OrderCreated': expected an event type 'entity.action'",
        ),
        (('"user.*"', '"user.*.x"'), "field 'events.subscribes[1]' has 'user.*.x': expected an event type or pattern"),
        (
            ('policy = "always"', 'policy = "sometimes"'),
            "field 'restart.policy' has 'sometimes': expected one of 'never', 'on-failure' or 'always'",
        ),
        (
            ("max_restarts = 3", "max_restarts = 3\nbackof = 2"),
            "unknown field 'backof' in 'restart'; expected one of: policy, max_restarts",
        ),
        (
            ('entry = "module:Orders"', 'entry = "module.Orders"'),
            "field 'run.entry' has 'module.Orders': expected 'python_module:ClassName'",
        ),
        (('name = "notifications"', 'name = "inventory"'), "dependencies list inventory more than once"),
        (
            ("[run]", '[gateway]\npublic = ["Get Order"]\n\n[run]'),
            "field 'gateway.public[0]' has 'Get Order': expected a method's name, e.g. 'SayHello'",
        ),
        (
            ("[run]", '[gateway]\npublic = ["orders.v1.Billing/Charge"]\n\n[run]'),
            "[gateway] public names 'orders.v1.Billing/Charge', but 'orders.v1.Billing' is not among the "
            "module's services (none)",
        ),
        # a module's certificate says "module:<name>" and X.509 allows 64 characters there
        (('name = "orders"', f'name = "{"o" * 58}"'), "field 'name' has 'oooo"),
        (('name = "orders"', f'name = "{"o" * 58}"'), "should have at most 57 characters"),
    ],
)
def test_each_mistake_gives_one_line_naming_file_and_field(tmp_path, change, expected):
    old, new = change
    assert old in VALID
    lines = problems(tmp_path, VALID.replace(old, new, 1))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path / 'orders' / 'module.toml'}: ")
    assert expected in lines[0]


def test_several_mistakes_give_one_line_each(tmp_path):
    text = VALID.replace('version = "1.2.0"', 'version = "one"').replace('"order.created"', '"order"')
    lines = problems(tmp_path, text)
    assert len(lines) == 2
    assert "field 'version'" in lines[0] and "field 'events.publishes[0]'" in lines[1]


def test_not_toml_and_no_file(tmp_path):
    assert "not valid TOML" in problems(tmp_path, 'name = "orders\n')[0]
    with pytest.raises(ManifestError) as raised:
        load_manifest(tmp_path / "nowhere")
    assert raised.value.lines == [
        f"{tmp_path / 'nowhere' / 'module.toml'}: no manifest here; every module folder needs a module.toml"
    ]


def test_run_needs_exactly_one_of_entry_and_command(tmp_path):
    both = VALID.replace('entry = "module:Orders"', 'entry = "module:Orders"\ncommand = ["node", "index.js"]')
    assert "expected exactly one of 'entry'" in problems(tmp_path, both)[0]
    command_only = VALID.replace('entry = "module:Orders"', 'command = ["node", "index.js"]')
    assert load_manifest(write(tmp_path, command_only)).run.command == ["node", "index.js"]
