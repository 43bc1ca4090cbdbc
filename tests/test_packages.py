"""Module packages: a folder packs to the same bytes every time; a package is unpacked only
when its digest and its publisher's signature hold and every entry is a plain file inside it;
anything else is refused, naming what, before a file is written."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PROJECT
from mesh.protocol.manifest import ManifestError
from mesh.protocol.packages import (
    PackageRefused,
    PublisherKey,
    pack,
    unpack,
    verify_package,
)


@pytest.fixture
def greeter(tmp_path: Path) -> Path:
    folder = tmp_path / "greeter"
    shutil.copytree(PROJECT / "modules" / "greeter", folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_the_same_folder_packs_to_the_same_bytes_whenever_and_by_whomever(greeter: Path, tmp_path: Path) -> None:
    first = pack(greeter)
    copy = tmp_path / "later" / "greeter"
    shutil.copytree(greeter, copy)
    for path in copy.rglob("*"):
        os.utime(path, (1, 1))  # other times
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"cache")  # left out
    again = pack(copy)
    assert again.archive == first.archive and again.digest == first.digest
    assert "module.toml" in first.files and not any("__pycache__" in name for name in first.files)
    assert first.manifest.name == "greeter"


def test_a_package_unpacks_to_the_files_it_was_packed_from(greeter: Path, tmp_path: Path) -> None:
    packed = pack(greeter)
    into = tmp_path / "installed" / "greeter-1.0.0"
    manifest = unpack(packed.archive, into)
    assert manifest == packed.manifest
    for name in packed.files:
        source, written = greeter / name, into / name
        assert written.is_dir() if source.is_dir() else written.read_bytes() == source.read_bytes()


def test_a_signed_package_verifies_and_a_changed_byte_or_another_key_does_not(greeter: Path, tmp_path: Path) -> None:
    key = PublisherKey.load_or_create(tmp_path / "keys" / "publisher.pem")
    assert (tmp_path / "keys" / "publisher.pem").stat().st_mode & 0o777 == 0o600
    packed = pack(greeter)
    signature = key.sign(packed.identity)
    name, version = packed.manifest.name, packed.manifest.version
    verify_package(packed.archive, packed.digest, signature, key.public_pem, name, version)

    tampered = bytearray(packed.archive)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(PackageRefused, match=f"SHA256 [0-9a-f]{{64}}, but {packed.digest} was published"):
        verify_package(bytes(tampered), packed.digest, signature, key.public_pem, name, version)
    other = PublisherKey.load_or_create(tmp_path / "keys" / "other.pem")
    with pytest.raises(PackageRefused, match="the signature is not its publisher's"):
        verify_package(packed.archive, packed.digest, signature, other.public_pem, name, version)
    with pytest.raises(PackageRefused, match="the signature is not its publisher's"):
        verify_package(packed.archive, packed.digest, signature, key.public_pem, name, "9.9.9")  # moved
    with pytest.raises(PackageRefused, match="the signature is not its publisher's"):
        verify_package(packed.archive, packed.digest, b"", key.public_pem, name, version)  # unsigned
    assert PublisherKey.load_or_create(tmp_path / "keys" / "publisher.pem").public_pem == key.public_pem


def test_a_folder_with_a_link_or_an_invalid_manifest_is_not_packed(greeter: Path) -> None:
    (greeter / "secrets").symlink_to("/etc/passwd")
    with pytest.raises(PackageRefused, match="secrets: a symbolic link"):
        pack(greeter)
    (greeter / "secrets").unlink()
    (greeter / "module.toml").write_text('name = "Bad_Name"\nversion = "one"\n')
    with pytest.raises(ManifestError) as raised:
        pack(greeter)
    assert len(raised.value.lines) >= 2, "every problem at once"


def test_a_package_over_the_size_limit_is_refused(greeter: Path) -> None:
    (greeter / "blob.bin").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(PackageRefused, match="over the limit of 10000"):
        pack(greeter, max_bytes=10_000)


def _archive_of(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info, data in entries:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return raw.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


MANIFEST = _file("module.toml", b'name = "evil"\nversion = "1.0.0"\n')


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([MANIFEST, _file("../outside.py")], "'../outside.py': a path outside the package's folder"),
        ([MANIFEST, _file("/etc/cron.d/evil")], "'/etc/cron.d/evil': a path outside"),
        ([MANIFEST, _link("module.py", "/etc/passwd")], "'module.py': a link or special file"),
        ([MANIFEST, _link("hard", "module.toml", tarfile.LNKTYPE)], "'hard': a link or special file"),
        ([MANIFEST, _link("fifo", "", tarfile.FIFOTYPE)], "'fifo': a link or special file"),
        ([_file("module.py")], "no module.toml at its top"),
    ],
)
def test_an_unsafe_package_is_refused_and_nothing_is_written(
    tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], problem: str
) -> None:
    into = tmp_path / "installed" / "evil"
    with pytest.raises(PackageRefused, match=problem.replace("(", r"\(").replace(")", r"\)")):
        unpack(_archive_of(entries), into)
    assert not into.exists() and not (tmp_path / "outside.py").exists()
    assert not list((tmp_path / "installed").glob("*")) if (tmp_path / "installed").exists() else True


def test_a_package_that_unpacks_into_a_flood_is_refused(tmp_path: Path) -> None:
    bomb = _archive_of([MANIFEST, _file("zeros", bytes(2_000_000))])
    assert len(bomb) < 10_000
    with pytest.raises(PackageRefused, match="unpacks to 2000032 bytes, over the limit of 1000000"):
        unpack(bomb, tmp_path / "evil", max_unpacked_bytes=1_000_000)
    assert not (tmp_path / "evil").exists()


def test_a_package_with_an_invalid_manifest_leaves_nothing(tmp_path: Path) -> None:
    into = tmp_path / "installed" / "evil"
    with pytest.raises(ManifestError):
        unpack(_archive_of([_file("module.toml", b'name = "Bad_Name"\n')]), into)
    assert not into.exists() and list((tmp_path / "installed").iterdir()) == []


def test_a_package_is_not_unpacked_over_files(greeter: Path, tmp_path: Path) -> None:
    into = tmp_path / "taken"
    into.mkdir()
    (into / "mine.txt").write_text("keep me")
    with pytest.raises(PackageRefused, match="not an empty folder"):
        unpack(pack(greeter).archive, into)
    assert (into / "mine.txt").read_text() == "keep me"


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_any_bytes_are_a_package_or_refused_with_a_reason(tmp_path: Path, data: bytes) -> None:
    into = tmp_path / "fuzz" / "module"
    shutil.rmtree(tmp_path / "fuzz", ignore_errors=True)
    with pytest.raises((PackageRefused, ManifestError)):
        unpack(data, into)
    assert not into.exists()


def _valid_tar() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in (MANIFEST, _file("module.py", b"class Module: ...\n"), _file("v1/api.proto", b"x")):
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


VALID_TAR = _valid_tar()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.integers(0, len(VALID_TAR) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_a_package_changed_inside_its_compression_unpacks_safely_or_is_refused(
    tmp_path: Path, changes: list[tuple[int, int]]
) -> None:
    """Bytes of the tar changed, then compressed again (so that gzip's check passes and the tar
    reader meets them): the package is refused with a reason, or what it writes stays inside."""
    import gzip

    tar = bytearray(VALID_TAR)
    for offset, value in changes:
        tar[offset] = value
    into = tmp_path / "fuzz" / "module"
    shutil.rmtree(tmp_path / "fuzz", ignore_errors=True)
    try:
        unpack(gzip.compress(bytes(tar)), into)
    except (PackageRefused, ManifestError):
        assert not into.exists()
        return
    for path in into.rglob("*"):
        assert not path.is_symlink() and path.resolve().is_relative_to(into.resolve()), path
    assert sorted(path.name for path in (tmp_path / "fuzz").iterdir()) == ["module"]
