"""CLI commands of shopsight.personas (registered on the main app by shopsight.cli)."""

from __future__ import annotations
