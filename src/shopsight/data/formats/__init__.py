"""Input formats: each knows how to recognise a file and turn it into staged rows.

A format is registered under a name (``--format NAME``). Auto-detection asks each registered
format, in priority order, whether it recognises the file from its name and first bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shopsight.data.formats._util import is_binary, looks_binary, read_head
from shopsight.data.staging import FormatError, StagedSource


@dataclass(frozen=True)
class ReadOptions:
    """Options every reader accepts.

    ``mapping``: canonical column -> column name in the file (``--map user_id=customer_id``).
    ``target``: for generic formats, which table the file fills (events/items/reviews/users);
    guessed from the file name and columns when not given.
    ``defaults``: constant values for canonical columns missing from the file
    (e.g. ``event_type=purchase`` for an orders export).
    """

    mapping: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)


class Format(Protocol):
    name: str
    description: str
    # Lower runs earlier in auto-detection; specific formats before generic ones.
    priority: int

    def sniff(self, path: Path, head: bytes) -> bool:
        """True when the file looks like this format (name and first bytes only)."""
        ...

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        """Staged rows for the file. Raise FormatError when it cannot be read at all."""
        ...


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def _load_builtin_formats() -> None:
    # Importing the modules registers their formats.
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def get_format(name: str) -> Format:
    _load_builtin_formats()
    if name not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise FormatError(f"unknown format {name!r} (known: {known})")
    return FORMATS[name]


def detect_format(path: Path) -> Format:
    """The first registered format (by priority) that recognises ``path``."""
    _load_builtin_formats()
    head = read_head(path)
    ordered = sorted(FORMATS.values(), key=lambda f: (f.priority, f.name))
    for fmt in ordered:  # binary formats (Parquet) recognise themselves by magic bytes
        if getattr(fmt, "binary", False) and fmt.sniff(path, head):
            return fmt
    if is_binary(head):
        raise FormatError(f"{path}: binary data, not a text format shopsight reads")
    for fmt in ordered:
        if not getattr(fmt, "binary", False) and fmt.sniff(path, head):
            return fmt
    raise FormatError(
        f"{path}: cannot tell the format from its name and first lines; pass --format "
        f"(one of: {', '.join(sorted(FORMATS))})"
    )


__all__ = [
    "FORMATS",
    "Format",
    "FormatError",
    "ReadOptions",
    "StagedSource",
    "detect_format",
    "get_format",
    "looks_binary",
    "read_head",
    "register",
]
