"""Typed configuration loaded from YAML, with ``key=value`` overrides from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used (one-line message)."""


def load_yaml(path: str | Path | None, section: str | None = None) -> dict[str, Any]:
    """The mapping in a YAML file (or one top-level section of it); {} when ``path`` is None."""
    if path is None:
        return {}
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    if section is not None:
        data = data.get(section, {}) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: section {section!r} must be a mapping")
    return data


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["k_core=5", "bots=false"]`` -> {"k_core": 5, "bots": False} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        k, v = pair.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair!r}: cannot parse value ({exc})") from exc
    return out
