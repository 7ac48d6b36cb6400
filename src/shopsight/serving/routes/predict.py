"""``POST /predict``."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, HTTPException

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import ReadAuth, links
from shopsight.serving.runtime import AUTH_ERRORS, RT

router = APIRouter(tags=["predict"], dependencies=ReadAuth, responses=AUTH_ERRORS)


@router.post(
    "/predict",
    response_model=S.PredictOut,
    responses=links(
        user=("recommend_user", {"user_id": "$response.body#/predictions/0/user_id"}),
        item=("similar", {"item_id": "$response.body#/predictions/0/item_id"}),
    ),
)
def predict(rt: RT, body: S.PredictIn) -> S.PredictOut:
    """Click / add-to-cart / purchase probabilities for user-item pairs (at most 1,000).

    The pairs' features are read on a connection of their own and scored without the store
    lock: a large request does not hold up events, reloads or forget."""
    dep = rt.deployment
    if dep.predictor is None:
        raise HTTPException(
            404,
            f"no predictor is deployed (train one into {dep.model_dir / 'predictor'})",
        )
    users = [p.user_id for p in body.pairs]
    items = [p.item_id for p in body.pairs]
    with rt.read_view() as store:  # its own connection: events and forget are not blocked
        prepared = dep.predictor.prepare(store, users, items)
    out = dep.predictor.predict_examples(prepared)
    cols = {}
    for key in ("click", "add_to_cart", "purchase"):
        arr = np.asarray(out[key], np.float64)
        if arr.shape != (len(users),):
            raise RuntimeError(f"predictor returned {arr.shape} for {key}")
        cols[key] = np.nan_to_num(arr, nan=0.0).tolist()
    preds = [
        S.Prediction(
            user_id=u,
            item_id=i,
            click=cols["click"][n],
            add_to_cart=cols["add_to_cart"][n],
            purchase=cols["purchase"][n],
        )
        for n, (u, i) in enumerate(zip(users, items, strict=True))
    ]
    return S.PredictOut(model_version=dep.version, predictions=preds)
