"""The machine a benchmark ran on, recorded beside its results (shared by the bench scripts)."""

from __future__ import annotations

import importlib
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _version(name: str) -> str | None:
    # The installed distribution's version: no import (torch takes seconds to import).
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        try:
            return str(importlib.import_module(name).__version__)
        except (ImportError, AttributeError):
            return None


def machine(*packages: str) -> dict[str, Any]:
    """Platform, CPU, cores, memory, load average and date, plus the version of each named
    package (None when it is not installed)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    for name in packages:
        info[name] = _version(name)
    info["load_average"] = list(os.getloadavg())
    info["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    return info
