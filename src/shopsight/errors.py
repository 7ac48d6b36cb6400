"""The one exception base: front ends show a ShopsightError as a one-line message.

Anything else that escapes a command is a bug and is reported as one. The subclasses say what
kind of problem it is; each also derives from the built-in exception callers caught before the
common base existed (``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so catching those
keeps working.
"""

from __future__ import annotations

import errno
import os


class ShopsightError(Exception):
    """A problem with the user's input, data or setup, explained in one line."""


class InputError(ShopsightError, ValueError):
    """An argument, option, config value or request the user gave cannot be used."""


class DataError(ShopsightError, ValueError):
    """The data (a file, the store's tables) cannot support what was asked."""


class MissingFileError(ShopsightError, FileNotFoundError):
    """A file, folder, store or model the user named does not exist."""


class StateError(ShopsightError, RuntimeError):
    """Things were done in the wrong order (a model used before it is fitted, a store opened
    read-only for a write)."""


def machine_limit(exc: BaseException) -> str | None:
    """The one-line reason when ``exc`` is the machine running out of disk or memory (not a
    bug: DuckDB spills big joins to ``<store>.tmp`` and caps memory at
    ``SHOPSIGHT_DUCKDB_MEMORY``), else ``None``."""
    import duckdb

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    no_space = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(exc, duckdb.IOException) and "No space left" in text
    )
    if no_space:
        return f"out of disk space: {text} (free space beside the store, where DuckDB spills)"
    if isinstance(exc, (MemoryError, duckdb.OutOfMemoryException)):
        cap = os.environ.get("SHOPSIGHT_DUCKDB_MEMORY", "1500MB")
        return f"out of memory: {text} (DuckDB's cap SHOPSIGHT_DUCKDB_MEMORY is {cap})"
    return None
