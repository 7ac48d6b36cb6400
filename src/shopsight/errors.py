"""The one exception base: front ends show a ShopsightError as a one-line message.

Anything else that escapes a command is a bug and is reported as one.
"""

from __future__ import annotations


class ShopsightError(Exception):
    """A problem with the user's input, data or setup, explained in one line."""
