"""Shared fixtures: where the public datasets live, and a skip when they are absent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass
class BuiltShop:
    """A synthetic shop on disk: its generated files and the store they were ingested into."""

    root: Path
    files: Any  # shopsight.data.synthetic.ShopFiles
    store: Path


def _build_shop(
    root: Path,
    config: Any = None,
    *,
    store_name: str = "shop.duckdb",
    files: Any = None,
    pseudonymizer: Any = None,
    clean: bool = True,
) -> BuiltShop:
    """Generate (unless ``files`` are given), ingest and clean a synthetic shop under ``root``.

    ``config``: a ShopConfig (default ``ShopConfig.small(images=False)``).
    """
    from shopsight.data.clean import CleanConfig, clean_store
    from shopsight.data.ingest import ingest_files
    from shopsight.data.store import Store
    from shopsight.data.synthetic import ShopConfig, generate_shop

    root.mkdir(parents=True, exist_ok=True)
    if files is None:
        files = generate_shop(root / "files", config or ShopConfig.small(images=False))
    store = root / store_name
    with Store(store) as st:
        report = ingest_files(st, files.data_files(), pseudonymizer=pseudonymizer)
        assert report.ok, [f.error for f in report.files]
        if clean:
            clean_store(st, CleanConfig())
    return BuiltShop(root, files, store)


@pytest.fixture(scope="session")
def build_shop() -> Callable[..., BuiltShop]:
    """The one way tests build a synthetic shop (each suite keeps its own session ``shop``)."""
    return _build_shop
