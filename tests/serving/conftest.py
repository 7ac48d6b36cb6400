"""Fixtures: a small synthetic shop, ALS models trained on it, and ``shopsight serve`` running."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_support import TOKEN, Shop, WordHashEncoder, free_port, wait_ready


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory, build_shop: Any) -> Shop:
    from shopsight.data.dataset import Dataset
    from shopsight.data.store import Store
    from shopsight.data.synthetic import ShopConfig
    from shopsight.features.pipeline import featurize
    from shopsight.models.artifact import save_artifact
    from shopsight.models.registry import create_model

    root = tmp_path_factory.mktemp("serving")
    store = build_shop(root, ShopConfig.small(images=False)).store
    with Store(store, read_only=True) as st:
        ds = Dataset.from_store(st)
        fp = st.fingerprint()
    model = create_model("als", factors=16, iterations=8, seed=0).fit(ds)
    save_artifact(model, ds, root / "model", seed=0, store_fingerprint=fp)
    model2 = create_model("als", factors=16, iterations=8, seed=1).fit(ds)
    save_artifact(model2, ds, root / "model2", seed=1, store_fingerprint=fp)
    featurize(store, text_encoder=WordHashEncoder(), with_images=False)
    return Shop(store=store, model=root / "model", model2=root / "model2", root=root)


@pytest.fixture(scope="session")
def served(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``shopsight serve`` as a subprocess on a copy of the shop's store."""
    import shutil

    d = tmp_path_factory.mktemp("served")
    store = d / "shop.duckdb"
    shutil.copy(shop.store, store)
    shutil.copytree(Path(str(shop.store) + ".features"), Path(str(store) + ".features"))
    token_file = d / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SHOPSIGHT_API_TOKEN", None)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("shopsight")),
            "serve",
            "--store",
            str(store),
            "--model",
            str(shop.model),
            "--port",
            str(port),
            "--token-file",
            str(token_file),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
