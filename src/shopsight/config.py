"""Configuration: the one reader of YAML/JSON config files and the one ``key=value`` parser."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from shopsight.errors import InputError


class ConfigError(InputError):
    """A config file or override that cannot be used (one-line message)."""


def read_mapping(
    path: str | Path,
    what: str = "config",
    error: type[InputError] = ConfigError,
) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (JSON is YAML), as ``error`` naming the file and line
    when it is missing, unreadable or not a mapping."""
    p = Path(path)
    if not p.exists():
        raise error(f"{p}: no such {what} file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{p}{where}: cannot read {what}: invalid YAML/JSON ({problem})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{p}: cannot read {what}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{p}: expected a mapping at the top level of the {what} file")
    return data


def load_yaml(path: str | Path | None, section: str | None = None) -> dict[str, Any]:
    """The mapping in a YAML file (or one top-level section of it); {} when ``path`` is None."""
    if path is None:
        return {}
    data = read_mapping(path)
    if section is not None:
        data = data.get(section, {}) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
    return data


def parse_value(text: str) -> Any:
    """A command-line value: YAML scalars and lists (``5``, ``false``, ``[1, 2]``), else text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_pairs(
    parts: Iterable[str],
    option: str = "--set",
    expected: str = "key=value",
    error: type[InputError] = ConfigError,
) -> list[tuple[str, str]]:
    """``["k=v", ...]`` -> ``[("k", "v"), ...]``; empty parts skipped, others need ``=``."""
    out = []
    for part in parts:
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise error(f"{option} {part!r}: expected {expected}")
        out.append((key.strip(), value))
    return out


def parse_overrides(
    pairs: Iterable[str] | None, option: str = "--set", error: type[InputError] = ConfigError
) -> dict[str, Any]:
    """``["k_core=5", "bots=false"]`` -> {"k_core": 5, "bots": False} (values parsed as YAML)."""
    return {k: parse_value(v.strip()) for k, v in parse_pairs(pairs or [], option, error=error)}


# Short names accepted for canonical columns in ``--map`` / ``--default``.
COLUMN_SHORT_NAMES = {
    "user": "user_id",
    "item": "item_id",
    "type": "event_type",
    "event": "event_type",
    "time": "timestamp",
    "ts": "timestamp",
    "session": "session_id",
}


def parse_column_map(spec: str | None, option: str = "--map") -> dict[str, str]:
    """``user=customer_id,item=sku`` -> canonical -> column (short names allowed)."""
    pairs = parse_pairs((spec or "").split(","), option)
    return {COLUMN_SHORT_NAMES.get(k, k): v.strip() for k, v in pairs}
