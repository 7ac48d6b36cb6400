"""Shared fixtures: where the public datasets live, and a skip when they are absent."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch and one BLAS thread for a module: small problems run faster and repeatably."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
