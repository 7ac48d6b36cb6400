"""The machine a benchmark ran on, recorded beside its results (shared by the bench scripts)."""

from __future__ import annotations

import importlib
import os
import platform
from datetime import UTC, datetime
from typing import Any


def machine(*packages: str) -> dict[str, Any]:
    """Platform, cores, load average and date, plus the version of each named package."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    for name in packages:
        info[name] = importlib.import_module(name).__version__
    info["load_average"] = list(os.getloadavg())
    info["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    return info
