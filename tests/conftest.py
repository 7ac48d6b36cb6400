"""Shared fixtures: where the public datasets live, and a skip when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def shared_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips the test with a clear reason when it is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs ../shared/data/{'/'.join(parts)} (public datasets not present)")
    return p


@pytest.fixture
def shared() -> type:
    class _S:
        path = staticmethod(shared_path)

    return _S
