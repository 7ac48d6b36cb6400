"""Merges that leave conflict markers or a broken CI script must fail here, not in CI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^(<{7}|>{7})( |$)|^={7}$", re.MULTILINE)


def _tracked() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no tracked-file list")
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / p for p in out.splitlines()]


def test_no_conflict_markers_in_tracked_text() -> None:
    hits = []
    for path in _tracked():
        if path.suffix not in {".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt", ""}:
            continue
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for m in MARKER.finditer(text)]
    assert hits == []


def test_ci_script_parses() -> None:
    res = subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
