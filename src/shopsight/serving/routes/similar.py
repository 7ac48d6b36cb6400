"""``GET /similar/{item_id}``."""

from __future__ import annotations

from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import KQ, ItemP, ReadAuth, links
from shopsight.serving.runtime import AUTH_ERRORS, RT, items_out
from shopsight.serving.state import Ranked

router = APIRouter(tags=["recommend"], dependencies=ReadAuth, responses=AUTH_ERRORS)


@router.get(
    "/similar/{item_id}",
    response_model=S.SimilarOut,
    responses=links(next=("similar", {"item_id": "$response.body#/items/0/item_id"})),
)
def similar(
    rt: RT,
    item_id: ItemP,
    k: KQ = 10,
    modality: Literal["behaviour", "text", "image", "fused"] = "behaviour",
) -> S.SimilarOut:
    """Items most similar to one item: by the model's item embeddings (behaviour) or by the
    feature cache's text / image vectors or their fusion (``shopsight featurize``)."""
    dep = rt.deployment
    if modality == "behaviour":
        i = dep.artifact.item_index(item_id)
        if i < 0:
            raise HTTPException(404, f"item_id: unknown item {item_id!r}")
        try:
            idx, vals = dep.model.similar_items([i], k)
        except NotImplementedError:
            raise HTTPException(
                409,
                f"modality behaviour: model {dep.model.name} has no item embeddings "
                "(try modality=text)",
            ) from None
        ok = np.isfinite(vals[0])
        ranked = Ranked(idx[0][ok], vals[0][ok], "model")
        rt.log_served("similar", None, dep, ranked)
        return S.SimilarOut.model_validate(
            {
                "item_id": item_id,
                "modality": modality,
                "model_version": dep.version,
                "items": items_out(dep, ranked),
            }
        )
    content = dep.content
    if content is None:
        raise HTTPException(
            409, f"modality {modality}: not computed for this store ({dep.content_error})"
        )
    if modality not in content.vectors:
        raise HTTPException(
            409,
            f"modality {modality}: not computed for this store (run `shopsight featurize` "
            "with images)",
        )
    if item_id not in content.row:
        raise HTTPException(404, f"item_id: no {modality} features for item {item_id!r}")
    try:
        found = content.similar(item_id, modality, k)
    except LookupError as exc:
        raise HTTPException(409, f"modality {modality}: {exc}") from None
    ids = np.array([f["item_id"] for f in found], dtype=object)
    rt.log_served(
        "similar",
        None,
        dep,
        Ranked(np.arange(len(ids)), np.zeros(len(ids), np.float32), modality),
        ids,
    )
    cat = dep.catalogue
    items = []
    for f in found:
        j = dep.artifact.item_index(f["item_id"])
        items.append(
            S.ScoredItem(
                item_id=f["item_id"],
                score=f["score"],
                title=cat.titles[j] if j >= 0 else None,
                category=cat.categories[j] if j >= 0 else None,
                price=None if j < 0 or np.isnan(cat.prices[j]) else float(cat.prices[j]),
            )
        )
    return S.SimilarOut(item_id=item_id, modality=modality, model_version=dep.version, items=items)
