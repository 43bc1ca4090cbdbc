"""Any bytes as a module.toml: the manifest loader answers a ManifestError of short lines,
each naming the file, or a manifest; never another exception (issue #13: 173 of 1,000
fuzzed manifests gave tracebacks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.protocol.manifest import MAX_PROBLEM_LINES, ManifestError, load_manifest

MAX_LINE = 500

VALID = b"""name = "orders"
version = "1.2.0"

[[dependencies]]
name = "inventory"
version = ">=1.0.0"

[events]
publishes = ["order.created"]
subscribes = ["inventory.*"]

[restart]
policy = "always"

[run]
entry = "module:Orders"
"""


def outcome(folder: Path, data: bytes) -> list[str]:
    """The problem lines of `data` as a manifest ([] when it is valid); checks each line."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "module.toml"
    path.write_bytes(data)
    try:
        load_manifest(folder)
    except ManifestError as error:
        lines = error.lines
    else:
        return []
    assert 1 <= len(lines) <= MAX_PROBLEM_LINES + 1
    for line in lines:
        assert line.startswith(f"{path}: "), line
        assert "\n" not in line and "\r" not in line, line
        assert len(line) - len(str(path)) < MAX_LINE, line
    return lines


# --- the cases the issue names ------------------------------------------------------------

CASES = {
    "non-UTF-8 byte": (b'name = "orders\xff"\n', "not UTF-8 at line 1, column 15"),
    "latin-1 file": ('description = "caf\xe9"\n'.encode("latin-1"), "save the file as UTF-8"),
    "quoted dotted key at the top": (b'"a.b" = 1\n' + VALID, "unknown field 'a.b'; expected one of: name"),
    "quoted dotted key in a table": (VALID + b'"x.y" = 1\n', "unknown field 'x.y' in 'run'; expected one of: entry"),
    "dotted key in an array table": (
        VALID.replace(b'version = ">=1.0.0"', b'version = ">=1.0.0"\n"q.r" = 1'),
        "unknown field 'q.r' in 'dependencies[0]'",
    ),
    "bare dotted key": (VALID + b"window.size = 3\n", "unknown field 'window' in 'run'"),
    "key with a line break": (b'"a\\nb" = 1\n' + VALID, "unknown field 'a\\nb'"),
    "huge name": (VALID.replace(b'"orders"', b'"' + b"a" * 100_000 + b'"'), "(100000 chars): String should have at"),
    "huge description": (
        VALID.replace(b"[[dependencies]]", b'description = "' + b"x" * 50_000 + b'"\n[[dependencies]]'),
        "field 'description'",
    ),
    "huge list": (
        VALID.replace(b"[[dependencies]]", b"services = [" + b'"a.B",' * 20_000 + b"]\n[[dependencies]]"),
        "field 'services': List should have at most 64 items",
    ),
    "many problems": (
        VALID.replace(b"[[dependencies]]", b"services = [" + b'"x",' * 50 + b"]\n[[dependencies]]"),
        "more problems like these, not shown",
    ),
    "deeply nested arrays": (b"x = " + b"[" * 5_000 + b"]" * 5_000 + b"\n", "nested too deeply"),
    "deeply nested tables": (b"x = " + b"{a = " * 2_000 + b"1" + b"}" * 2_000 + b"\n", "nested too deeply"),
    "wrong types": (VALID.replace(b'"1.2.0"', b"[1, 2]"), "field 'version': Input should be a valid string"),
    "table where a list is": (VALID.replace(b'["order.created"]', b"{a = 1}"), "field 'events.publishes'"),
    "infinite window": (VALID.replace(b'"always"', b'"always"\nwindow_seconds = inf'), "finite number"),
    "NaN backoff": (VALID.replace(b'"always"', b'"always"\nbackoff_max_seconds = nan'), "finite number"),
    "huge integer": (
        VALID.replace(b'"always"', b'"always"\nmax_restarts = 99999999999999999999'),
        "less than or equal to 10000",
    ),
    "name with a trailing line break": (VALID.replace(b'"orders"', b'"orders\\n"'), "expected a kebab-case name"),
    "NUL byte": (b'name = "x\x00"\n', "not valid TOML"),
    "too big a file": (VALID + b"#" * 300_000, "larger than 256 KiB"),
    "empty file": (b"", "field 'name' is missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_named_bad_input_gives_short_lines_naming_the_file(tmp_path: Path, case: str) -> None:
    data, expected = CASES[case]
    lines = outcome(tmp_path / "m", data)
    assert any(expected in line for line in lines), lines


def test_a_manifest_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "m" / "module.toml").mkdir(parents=True)
    with pytest.raises(ManifestError) as raised:
        load_manifest(tmp_path / "m")
    assert len(raised.value.lines) == 1 and "cannot be read" in raised.value.lines[0]


# --- generated inputs ------------------------------------------------------------------------

FUZZ = settings(
    derandomize=True,
    deadline=None,
    # MESH_FUZZ_SCALE=10 runs ten times as many (a longer run than CI's, by hand)
    max_examples=150 * int(os.environ.get("MESH_FUZZ_SCALE", "1")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

keys = st.one_of(
    st.sampled_from(["name", "version", "run", "events", "restart", "labels", "dependencies", "services"]),
    st.text(min_size=1, max_size=12),
    st.text(alphabet="ab.", min_size=1, max_size=6),
)
scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=40),
    st.just("x" * 20_000),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


def _toml_key(key: str) -> str:
    return '"' + "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in key) + '"'


def _toml_value(value: object) -> str:
    """A TOML inline value (tomllib reads it back as `value`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return _toml_key(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


@FUZZ
@given(data=st.binary(max_size=2_000))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    outcome(tmp_path / "m", data)


@FUZZ
@given(position=st.integers(min_value=0, max_value=len(VALID)), junk=st.binary(min_size=1, max_size=8))
def test_a_valid_manifest_with_bytes_spliced_in(tmp_path: Path, position: int, junk: bytes) -> None:
    outcome(tmp_path / "m", VALID[:position] + junk + VALID[position:])


@FUZZ
@given(document=st.dictionaries(keys, values, max_size=6))
def test_generated_toml_documents(tmp_path: Path, document: dict[str, object]) -> None:
    text = "\n".join(f"{_toml_key(key)} = {_toml_value(value)}" for key, value in document.items())
    outcome(tmp_path / "m", text.encode("utf-8", errors="surrogatepass"))


@FUZZ
@given(table=st.sampled_from(["", "[run]", "[restart]", "[events]", "[[dependencies]]"]), key=keys, value=values)
def test_one_generated_field_in_a_valid_manifest(tmp_path: Path, table: str, key: str, value: object) -> None:
    line = f"{_toml_key(key)} = {_toml_value(value)}\n"
    text = VALID.decode() + (f"\n{table}\n" if table else "")
    if not table:
        text = line + text
    else:
        text += line
    outcome(tmp_path / "m", text.encode("utf-8", errors="surrogatepass"))
