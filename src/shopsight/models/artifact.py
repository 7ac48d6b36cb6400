"""A trained model as shipped: weights + config + the id maps + how it was made.

``Recommender.save`` stores learned state by index. To answer "what should user ``u123`` see"
later (CLI, serving), the raw ids behind those indices travel with it, as does what is needed to
rerun the training exactly: the data fingerprint, the seed, the parameters and the split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shopsight.errors import MissingFileError
from shopsight.models.base import Recommender

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset


@dataclass
class ModelArtifact:
    model: Recommender
    user_ids: np.ndarray
    item_ids: np.ndarray
    info: dict[str, Any]

    def __post_init__(self) -> None:
        self._user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self._item_index = {t: i for i, t in enumerate(self.item_ids.tolist())}

    @property
    def privacy(self) -> dict[str, Any] | None:
        """The budget a private model spent (epsilon, delta, unit...); None for other models."""
        p = getattr(self.model, "privacy_", None)
        if not isinstance(p, dict):
            return None
        keys = ("private", "unit", "epsilon", "delta", "accountant")
        return {k: p.get(k, "interaction" if k == "unit" else None) for k in keys}

    def user_index(self, user_id: str) -> int:
        """Index of a raw user id; -1 for a user the model never saw (a cold user)."""
        return self._user_index.get(user_id, -1)

    def item_index(self, item_id: str) -> int:
        return self._item_index.get(item_id, -1)

    def recommend(
        self, user_id: str, k: int = 10, exclude_seen: bool = True
    ) -> list[dict[str, Any]]:
        idx, scores = self.model.recommend([self.user_index(user_id)], k, exclude_seen)
        return [
            {"item_id": str(self.item_ids[i]), "score": float(s)}
            for i, s in zip(idx[0].tolist(), scores[0].tolist(), strict=True)
            if np.isfinite(s)
        ]

    def similar(self, item_id: str, k: int = 10) -> list[dict[str, Any]]:
        i = self.item_index(item_id)
        if i < 0:
            raise KeyError(f"unknown item id {item_id!r}")
        idx, scores = self.model.similar_items([i], k)
        return [
            {"item_id": str(self.item_ids[j]), "score": float(s)}
            for j, s in zip(idx[0].tolist(), scores[0].tolist(), strict=True)
            if np.isfinite(s)
        ]


def privacy_line(privacy: dict[str, Any] | None) -> str | None:
    """One line on a model's privacy budget (None when the model makes no claim)."""
    if privacy is None:
        return None
    if not privacy.get("private"):
        return "not private: trained without noise"
    return (
        f"differentially private ({privacy.get('unit')} level): epsilon "
        f"{float(privacy['epsilon']):.3g}, delta {float(privacy['delta']):.2g}"
        + (f" ({privacy['accountant']} accountant)" if privacy.get("accountant") else "")
    )


def save_artifact(
    model: Recommender,
    dataset: Dataset,
    path: str | Path,
    *,
    seed: int | None = None,
    split: dict[str, Any] | None = None,
    store_fingerprint: str | None = None,
    metrics: dict[str, Any] | None = None,
    distributed: dict[str, Any] | None = None,
) -> Path:
    """Save the model, its id maps (``users.parquet``, ``items.parquet``) and how it was made
    (``distributed``: world size, backend and how the fit was split, for a torchrun run)."""
    d = Path(path)
    info = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset_fingerprint": dataset.fingerprint,
        "store_fingerprint": store_fingerprint,
        "seed": seed,
        "split": split,
        "metrics": metrics or {},
        "distributed": distributed or {"world_size": 1},
    }
    model.save(d, extra={"training": info})
    pq.write_table(
        pa.table({"user_id": pa.array(dataset.user_ids.tolist(), pa.string())}), d / "users.parquet"
    )
    pq.write_table(
        pa.table({"item_id": pa.array(dataset.item_ids.tolist(), pa.string())}), d / "items.parquet"
    )
    return d


def load_artifact(path: str | Path) -> ModelArtifact:
    d = Path(path)
    if not (d / "config.json").exists():
        raise MissingFileError(f"{d}: not a trained model folder (no config.json)")
    model = Recommender.load(d)
    users = pq.read_table(d / "users.parquet").column("user_id").to_numpy(zero_copy_only=False)
    items = pq.read_table(d / "items.parquet").column("item_id").to_numpy(zero_copy_only=False)
    info = json.loads((d / "config.json").read_text()).get("training", {})
    return ModelArtifact(model=model, user_ids=users, item_ids=items, info=info)
