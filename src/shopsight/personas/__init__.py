"""shopsight.personas: user profiles, segments, audiences, an HTML report and a dashboard.

Names are loaded lazily so ``shopsight --help`` (which imports the CLI commands) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shopsight.personas.core import Personas, build_personas
    from shopsight.personas.demo import demo_step
    from shopsight.personas.profile import ProfileConfig
    from shopsight.personas.segments import SegmentConfig

__all__ = ["Personas", "ProfileConfig", "SegmentConfig", "build_personas", "demo_step"]

_WHERE = {
    "Personas": "shopsight.personas.core",
    "build_personas": "shopsight.personas.core",
    "demo_step": "shopsight.personas.demo",
    "ProfileConfig": "shopsight.personas.profile",
    "SegmentConfig": "shopsight.personas.segments",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'shopsight.personas' has no attribute {name!r}")
