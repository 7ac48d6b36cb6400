"""The approximate (HNSW) top-k: exact scores, measured recall, filters inside the search."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from serving_support import Shop, ThreadServer, copy_store

from shopsight.models.artifact import load_artifact
from shopsight.serving.ann import AnnIndex, AnnUnsupported, dot_product_factors, recall_at_k
from shopsight.serving.app import create_app


def test_recall_against_exact_top_k(shop: Shop) -> None:
    model = load_artifact(shop.model).model
    ann = AnnIndex.build(model)
    users = np.arange(model.n_users_)
    assert recall_at_k(model, ann, users, k=10) >= 0.95
    u, v = dot_product_factors(model)
    assert np.allclose(u[:5] @ v.T, model.score(np.arange(5)), atol=1e-4)


def test_filters_apply_inside_the_search_and_seen_items_are_excluded(shop: Shop) -> None:
    model = load_artifact(shop.model).model
    ann = AnnIndex.build(model)
    rng = np.random.default_rng(0)
    allowed = rng.random(model.n_items_) < 0.3
    for user in range(0, 40, 7):
        seen = model.seen_.indices[model.seen_.indptr[user] : model.seen_.indptr[user + 1]]
        idx, scores = ann.query(user, 5, exclude=seen.astype(np.int64), allowed=allowed)
        assert len(idx) == 5
        assert allowed[idx].all() and not np.isin(idx, seen).any()
        assert np.all(np.diff(scores) <= 1e-6)
        exact = model.score([user])[0]
        exact[~allowed] = -np.inf
        exact[seen] = -np.inf
        assert np.allclose(scores, exact[idx], atol=1e-4)


def test_models_without_inner_product_scores_are_refused(shop: Shop) -> None:
    from shopsight.data.dataset import Dataset
    from shopsight.data.store import Store
    from shopsight.models.registry import create_model

    with Store(shop.store, read_only=True) as st:
        ds = Dataset.from_store(st)
    with pytest.raises(AnnUnsupported):
        AnnIndex.build(create_model("itemknn").fit(ds))


def test_server_with_ann_answers_known_users_through_the_index(shop: Shop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    art = load_artifact(shop.model)
    app = create_app(copy_store(shop, tmp_path), shop.model, ann=True)
    with ThreadServer(app) as srv:
        user = str(art.user_ids[2])
        r = httpx.get(f"{srv.url}/recommend/{user}", params={"k": 10}).json()
        assert r["source"] == "ann"
        exact = [x["item_id"] for x in art.recommend(user, 10)]
        assert len(set(exact) & {it["item_id"] for it in r["items"]}) >= 8
        cold = httpx.get(f"{srv.url}/recommend/nobody", params={"k": 3}).json()
        assert cold["source"] == "fallback"
