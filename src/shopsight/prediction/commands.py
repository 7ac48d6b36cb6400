"""CLI commands of shopsight.prediction (registered on the main app by shopsight.cli)."""

from __future__ import annotations
