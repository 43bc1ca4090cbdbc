"""Where an exception came from in a module author's code, for error messages that point at
the line to fix rather than at the SDK that called it."""

from __future__ import annotations

import traceback
from pathlib import Path


def code_location(error: BaseException, directory: Path) -> str:
    """ "FILE:LINE" of the innermost frame of `error`'s traceback inside `directory` (the
    module's folder), else of the innermost frame at all; the file and line a SyntaxError
    names; "" when there is no traceback.

    Args:
        error: The exception, with its traceback.
        directory: The module's folder: frames there are the author's code.
    """
    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        return f"{error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    inside = str(directory.resolve()) + "/"
    own = [frame for frame in frames if frame.filename.startswith(inside)]
    frame = (own or frames)[-1]
    return f"{frame.filename}:{frame.lineno}"


def located(error: BaseException, directory: Path) -> str:
    """ " (at FILE:LINE)" for `error` (see `code_location`), or "" without a location."""
    where = code_location(error, directory)
    return f" (at {where})" if where else ""
