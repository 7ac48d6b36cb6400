"""The one exception base: front ends show a ShopsightError as a one-line message.

Anything else that escapes a command is a bug and is reported as one. The subclasses say what
kind of problem it is; each also derives from the built-in exception callers caught before the
common base existed (``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so catching those
keeps working.
"""

from __future__ import annotations


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
