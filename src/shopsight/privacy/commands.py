"""CLI commands of shopsight.privacy (registered on the main app by shopsight.cli)."""

from __future__ import annotations
