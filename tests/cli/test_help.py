"""Every command's --help renders as written: rich turns ``:name:`` into emoji (``START:END:``
became "START🔚"), so help text must not contain emoji shortcodes."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from shopsight.cli import app


def _paths(cmd: Any, prefix: list[str]) -> list[list[str]]:
    out = [prefix]
    for name, sub in getattr(cmd, "commands", {}).items():
        out += _paths(sub, [*prefix, name])
    return out


def test_every_help_renders_without_emoji() -> None:
    root = typer.main.get_command(app)
    paths = _paths(root, [])
    assert len(paths) > 20
    runner = CliRunner()
    bad = []
    for path in paths:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (path, res.output)
        emoji = sorted({ch for ch in res.output if ord(ch) >= 0x1F000})
        if emoji:
            bad.append((" ".join(path), emoji))
    assert bad == []
