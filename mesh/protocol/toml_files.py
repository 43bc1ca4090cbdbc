"""Reading a TOML file a user wrote (the mesh configuration, the gateway's limits file), with
each way it can be unreadable said in one line naming the file. (Manifests have their own
reader, which also bounds their size and points at the bad byte: mesh.protocol.manifest.)"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class TomlFileError(ValueError):
    """The file cannot be read as TOML: one line naming the file and what is wrong."""


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The tables of the TOML file at `path`, `what` it is ("mesh configuration file") naming
    it when it is not there.

    Raises:
        TomlFileError: the file is missing, unreadable, not UTF-8 or not TOML.
    """
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TomlFileError(f"{path}: no such {what}") from None
    except UnicodeDecodeError as error:
        raise TomlFileError(f"{path}: not UTF-8 at byte {error.start}; save the file as UTF-8") from None
    except OSError as error:
        raise TomlFileError(f"{path}: cannot be read ({error.strerror or type(error).__name__})") from None
    except tomllib.TOMLDecodeError as error:
        raise TomlFileError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:
        raise TomlFileError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
