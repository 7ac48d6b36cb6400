"""CLI commands of shopsight.explain (registered on the main app by shopsight.cli)."""

from __future__ import annotations
