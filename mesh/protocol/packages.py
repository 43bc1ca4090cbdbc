"""Module packages: a module folder as one deterministic archive, the SHA256 of that archive,
and an ed25519 signature by its publisher; and the checks that refuse a package before any
file of it is written.

    packed = pack(Path("modules/greeter"))            # manifest validated, files gathered
    signature = PublisherKey.load_or_create(key_file).sign(packed.identity)
    verify_package(archive, digest, signature, public_pem)   # raises PackageRefused
    unpack(archive, into)                             # a safe archive only, into an empty folder

The archive is a gzipped tar of the folder's files at their relative paths (module.toml at the
top), entries sorted, every time, owner and permission normalised (0644, 0755 for what was
executable), gzip without a name or time: the same folder gives the same bytes, so the same
digest, on one toolchain. Caches and local state are left out (EXCLUDED). A link, a device or
a pipe in the folder is refused, not followed: a package holds regular files only.

The signature covers the package's identity, "module-mesh-package/1 NAME VERSION SHA256", so
it cannot be moved to another archive, nor the archive to another name or version.

Written here on `tarfile`, `gzip` and `cryptography` rather than taken from a packaging
library: wheels and npm tarballs carry their own metadata formats, and none signs with a key
the mesh's roles control.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mesh.protocol.manifest import MANIFEST_FILE, Manifest, load_manifest

MAX_PACKAGE_BYTES = 16 * 1024 * 1024
"""The largest archive taken (compressed); a module's code and protos are far smaller."""
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
"""The most its files may hold once unpacked: a small archive may not unpack into a flood."""
MAX_FILES = 5_000
"""The most files (and folders) a package may hold."""
EXCLUDED = frozenset({"__pycache__", ".git", ".mesh", ".venv", "node_modules", ".pytest_cache", ".mypy_cache"})
"""Folders never packed: caches, local state and installed dependencies (they are rebuilt)."""
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
SIGNATURE_CONTEXT = "module-mesh-package/1"
"""What a signature is of: this, the name, the version and the digest (see `PackedModule.identity`)."""


class PackageRefused(ValueError):
    """A folder that cannot be packed, or a package that may not be unpacked: one line per
    problem, each naming the file and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def package_identity(name: str, version: str, digest: str) -> bytes:
    """The bytes a publisher signs: the package's name, version and archive digest together."""
    return f"{SIGNATURE_CONTEXT} {name} {version} {digest}".encode()


@dataclass(frozen=True)
class PackedModule:
    """A module folder packed: the archive, its digest, and the manifest it holds."""

    archive: bytes
    manifest: Manifest
    files: tuple[str, ...]
    """The files packed, by relative path."""

    @property
    def digest(self) -> str:
        """The archive's SHA256, hex."""
        return hashlib.sha256(self.archive).hexdigest()

    @property
    def identity(self) -> bytes:
        """What the publisher signs."""
        return package_identity(self.manifest.name, self.manifest.version, self.digest)


def pack(folder: Path, max_bytes: int = MAX_PACKAGE_BYTES) -> PackedModule:
    """The package of the module in `folder`, its manifest validated first.

    Raises:
        ManifestError: the manifest is missing or invalid (every problem, one line each).
        PackageRefused: a link or special file in the folder, too many files, or an archive
            larger than `max_bytes`.
    """
    manifest = load_manifest(folder)
    paths, problems = _gather(folder)
    if len(paths) > MAX_FILES:
        problems.append(f"{folder}: {len(paths)} files; a package holds at most {MAX_FILES}")
    if problems:
        raise PackageRefused(problems)
    archive = _archive(folder, paths)
    if len(archive) > max_bytes:
        raise PackageRefused(
            [
                f"{folder}: the package is {len(archive)} bytes compressed, over the limit of {max_bytes}; "
                "leave data and build output out of the module folder"
            ]
        )
    return PackedModule(archive, manifest, tuple(path.as_posix() for path in paths))


def _gather(folder: Path) -> tuple[list[PurePosixPath], list[str]]:
    """Every file and folder to pack, sorted, relative to `folder`; and what cannot be packed."""
    found: list[PurePosixPath] = []
    problems: list[str] = []

    def unreadable(error: OSError) -> None:
        problems.append(f"{error.filename}: cannot be read ({error.strerror}); make it readable or remove it")

    for root, folders, files in os.walk(folder, onerror=unreadable, followlinks=False):
        folders[:] = sorted(name for name in folders if name not in EXCLUDED)
        base = Path(root)
        for name in [*folders, *sorted(files)]:
            path = base / name
            relative = PurePosixPath(path.relative_to(folder).as_posix())
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                problems.append(f"{path}: a symbolic link; a package holds regular files only (copy the file in)")
            elif stat.S_ISDIR(mode):
                found.append(relative)
            elif not stat.S_ISREG(mode):
                problems.append(f"{path}: not a regular file (a device, pipe or socket); remove it from the folder")
            elif not name.endswith(EXCLUDED_SUFFIXES):
                found.append(relative)
    return sorted(found), problems


def _archive(folder: Path, paths: list[PurePosixPath]) -> bytes:
    """The gzipped tar of `paths`, with nothing in it that depends on when or by whom."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative in paths:
            path = folder / relative
            info = tarfile.TarInfo(relative.as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=compressed, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


class PublisherKey:
    """A publisher's ed25519 key, kept in a PEM file only its owner can read."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def load_or_create(cls, path: Path) -> PublisherKey:
        """The key in `path`, made (0600) when there is none.

        Raises:
            PackageRefused: the file is there but holds no ed25519 private key.
        """
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
            return cls(key)
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise PackageRefused([f"{path}: cannot read a publisher key: {error}"]) from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise PackageRefused([f"{path}: not an ed25519 key; publisher keys are ed25519"])
        return cls(loaded)

    @property
    def public_pem(self) -> bytes:
        """The public half, for whoever verifies this publisher's packages."""
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, identity: bytes) -> bytes:
        """The signature of a package's identity (`PackedModule.identity`)."""
        return self._private.sign(identity)


def verify_package(archive: bytes, digest: str, signature: bytes, public_pem: bytes, name: str, version: str) -> None:
    """Check a package before anything of it is used: its bytes have the digest recorded for
    it, and the publisher's key signed that digest for that name and version.

    Raises:
        PackageRefused: naming what differed (the digest found and the one expected; or that
            the signature is not the publisher's for this package).
    """
    found = hashlib.sha256(archive).hexdigest()
    if found != digest:
        raise PackageRefused(
            [
                f"package {name}@{version}: its archive has SHA256 {found}, but {digest} was published; "
                "it was changed after publishing: do not install it, publish it again"
            ]
        )
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError as error:
        raise PackageRefused([f"package {name}@{version}: the publisher key cannot be read: {error}"]) from None
    if not isinstance(key, Ed25519PublicKey):
        raise PackageRefused([f"package {name}@{version}: the publisher key is not an ed25519 key"])
    try:
        key.verify(signature, package_identity(name, version, digest))
    except InvalidSignature:
        raise PackageRefused(
            [
                f"package {name}@{version}: the signature is not its publisher's for this name, version and "
                "archive; do not install it"
            ]
        ) from None


def unpack(archive: bytes, into: Path, max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> Manifest:
    """Write a package's files into the empty folder `into`, after checking every entry: a
    relative path inside the package, a regular file or folder, within the limits; a module
    manifest at the top. Nothing is written when any check fails.

    Raises:
        PackageRefused: one line per entry refused, or the archive is no package.
        ManifestError: the manifest in it is invalid.
        OSError: the folder cannot be written.
    """
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise PackageRefused([f"{into}: not an empty folder; a package is unpacked into a folder of its own"])
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members = tar.getmembers()
            problems = _unsafe_members(members, max_unpacked_bytes)
            if not any(member.name == MANIFEST_FILE and member.isreg() for member in members):
                problems.append(f"the package has no {MANIFEST_FILE} at its top: it is no module package")
            if problems:
                raise PackageRefused(problems)
            # Into a folder beside it first: `into` appears whole, with a valid manifest, or not at all.
            into.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=f".{into.name}-", dir=into.parent))
            try:
                tar.extractall(partial, filter="data")  # the standard library's checks, behind ours
                manifest = load_manifest(partial)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise PackageRefused([f"the archive cannot be read as a package (a gzipped tar): {error}"]) from None
    if into.exists():
        into.rmdir()  # empty, checked above
    partial.rename(into)
    return manifest


def _unsafe_members(members: list[tarfile.TarInfo], max_unpacked_bytes: int) -> list[str]:
    """What in the archive may not be unpacked, one line each."""
    problems: list[str] = []
    if len(members) > MAX_FILES:
        problems.append(f"the package holds {len(members)} entries; at most {MAX_FILES} are taken")
    total = 0
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or "\\" in member.name or not member.name.strip("/"):
            problems.append(f"{member.name!r}: a path outside the package's folder")
        elif not (member.isreg() or member.isdir()):
            problems.append(f"{member.name!r}: a link or special file; a package holds regular files only")
        total += max(0, member.size)
        if len(problems) >= 20:
            problems.append("more entries like these, not shown")
            return problems
    if total > max_unpacked_bytes:
        problems.append(f"the package unpacks to {total} bytes, over the limit of {max_unpacked_bytes}")
    return problems
