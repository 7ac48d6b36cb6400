"""CLI commands of shopsight.serving (registered on the main app by shopsight.cli)."""

from __future__ import annotations
