"""Rating prediction from biases plus review text and item content (LightGBM regressor).

Each (user, item) rating is predicted from:

- *bias features* (always): the user's and the item's shrunk mean rating and counts;
- *text features* (``use_text=True``): the item's content vector (TF-IDF + LSA of its catalogue
  text), the user's taste vector (content of the items they rated, weighted by how far each
  rating was above or below their mean) and its cosine with the item, and the mean embedding of
  the user's and the item's *other* review texts (their tone: "disappointed", "perfect gift").

Review text of the rating being predicted is never used (it arrives with the rating). Training
rows get every user / item statistic out of fold (K folds: a row's statistics come from the
other folds only), so the regressor learns from the same kind of estimate it gets at test
time; test rows get statistics from the whole training set. Text encoders are fitted on
training texts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shopsight.errors import DataError

if TYPE_CHECKING:
    from shopsight.data.store import Store


def load_ratings(store: Store) -> tuple[pd.DataFrame, dict[str, str]]:
    """``(ratings, item_text)``: one row per rated (user, item) with its review text if any."""
    from shopsight.features.text import compose_item_text

    def src(t: str) -> str:
        return f"{t}_clean" if store.has_table(f"{t}_clean") else t

    reviews = store.conn.execute(
        f"""SELECT user_id, item_id, rating, "timestamp" AS ts,
                   concat_ws('. ', nullif(summary, ''), nullif(text, '')) AS text
            FROM "{src("reviews")}" WHERE rating IS NOT NULL"""
    ).df()
    rates = store.conn.execute(
        f"""SELECT user_id, item_id, value AS rating, "timestamp" AS ts, NULL AS text
            FROM "{src("events")}" WHERE event_type = 'rate' AND value IS NOT NULL
              AND item_id IS NOT NULL"""
    ).df()
    df = pd.concat([reviews, rates], ignore_index=True)
    # A rating stored both as a review and as an event counts once (the review keeps its text).
    df = df.drop_duplicates(["user_id", "item_id"], keep="first").reset_index(drop=True)
    df["user_id"] = df["user_id"].astype(str)
    df["item_id"] = df["item_id"].astype(str)
    df["text"] = df["text"].fillna("").astype(str)
    items = store.conn.execute(
        f"""SELECT item_id, any_value(title), any_value(description), any_value(brand),
                   any_value(category) FROM "{src("items")}" GROUP BY item_id"""
    ).fetchall()
    item_text = {str(r[0]): compose_item_text(r[1], r[2], r[3], r[4]) for r in items}
    return df, item_text


def _encode(texts: list[str], dim: int, fit_on: list[str], seed: int) -> np.ndarray:
    from shopsight.features.text import TfidfEncoder

    if not any(t.strip() for t in fit_on):
        return np.zeros((len(texts), dim), dtype=np.float32)
    enc = TfidfEncoder(dim=dim, min_df=2 if len(fit_on) > 200 else 1, seed=seed).fit(fit_on)
    res = enc.encode(texts)
    return np.where(res.mask[:, None], res.vectors, 0.0).astype(np.float32)


@dataclass
class _Stats:
    """Per-user and per-item sums from a set of training rows."""

    n_u: np.ndarray
    s_u: np.ndarray
    n_i: np.ndarray
    s_i: np.ndarray
    taste: np.ndarray  # (n_users, d): sum of (r - user mean) * item content
    u_txt: np.ndarray  # (n_users, d): sum of review-text vectors
    i_txt: np.ndarray  # (n_items, d)
    n_u_txt: np.ndarray
    n_i_txt: np.ndarray


class TextRatingModel:
    """LightGBM on bias features, optionally plus text/content features (see module doc)."""

    def __init__(
        self,
        use_text: bool = True,
        *,
        dim: int = 32,
        folds: int = 5,
        shrink: float = 5.0,
        n_estimators: int = 600,
        learning_rate: float = 0.03,
        num_leaves: int = 31,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        self.use_text = use_text
        self.dim = dim
        self.folds = folds
        self.shrink = shrink
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.threads = threads
        self.seed = seed
        self.model_: Any = None

    def _stats(self, u: np.ndarray, i: np.ndarray, r: np.ndarray, rows: np.ndarray) -> _Stats:
        nu, ni, d = self.n_users_, self.n_items_, self.dim
        n_u = np.bincount(u[rows], minlength=nu).astype(np.float64)
        s_u = np.bincount(u[rows], weights=r[rows], minlength=nu)
        n_i = np.bincount(i[rows], minlength=ni).astype(np.float64)
        s_i = np.bincount(i[rows], weights=r[rows], minlength=ni)
        taste = np.zeros((nu, d))
        u_txt = np.zeros((nu, d))
        i_txt = np.zeros((ni, d))
        has_txt = self.review_vec_[rows].any(axis=1)
        if self.use_text:
            u_mean = (s_u + self.shrink * self.mu_) / (n_u + self.shrink)
            dev = r[rows] - u_mean[u[rows]]
            np.add.at(taste, u[rows], dev[:, None] * self.item_vec_[i[rows]])
            np.add.at(u_txt, u[rows], self.review_vec_[rows])
            np.add.at(i_txt, i[rows], self.review_vec_[rows])
        return _Stats(
            n_u,
            s_u,
            n_i,
            s_i,
            taste,
            u_txt,
            i_txt,
            np.bincount(u[rows], weights=has_txt, minlength=nu),
            np.bincount(i[rows], weights=has_txt, minlength=ni),
        )

    def _features(self, st: _Stats, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        k, mu = self.shrink, self.mu_
        cols = [
            (st.s_u[u] + k * mu) / (st.n_u[u] + k),
            (st.s_i[i] + k * mu) / (st.n_i[i] + k),
            np.log1p(st.n_u[u]),
            np.log1p(st.n_i[i]),
        ]
        if not self.use_text:
            return np.column_stack(cols).astype(np.float32)
        item_vec = self.item_vec_[i]
        taste = st.taste[u] / np.maximum(st.n_u[u], 1.0)[:, None]
        num = (taste * item_vec).sum(axis=1)
        den = np.linalg.norm(taste, axis=1) * np.linalg.norm(item_vec, axis=1)
        cos = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
        u_txt = st.u_txt[u] / np.maximum(st.n_u_txt[u], 1.0)[:, None]
        i_txt = st.i_txt[i] / np.maximum(st.n_i_txt[i], 1.0)[:, None]
        blocks = [np.column_stack([*cols, cos, num]), item_vec, taste]
        if self.has_reviews_:
            blocks += [u_txt, i_txt]
        return np.column_stack(blocks).astype(np.float32)

    def fit(self, train: pd.DataFrame, item_text: dict[str, str]) -> TextRatingModel:
        import lightgbm as lgb

        if len(train) < 10:
            raise DataError(f"too few ratings to fit ({len(train)})")
        self.users_ = {x: j for j, x in enumerate(pd.unique(train["user_id"]))}
        self.items_ = {x: j for j, x in enumerate(pd.unique(train["item_id"]))}
        self.n_users_, self.n_items_ = len(self.users_) + 1, len(self.items_) + 1
        u = train["user_id"].map(self.users_).to_numpy(dtype=np.int64)
        i = train["item_id"].map(self.items_).to_numpy(dtype=np.int64)
        r = train["rating"].to_numpy(dtype=np.float64)
        self.mu_ = float(r.mean())
        self.item_text_ = item_text
        texts = train["text"].tolist()
        self.has_reviews_ = bool(self.use_text and any(t.strip() for t in texts))
        if self.use_text:
            # Item content for every item id the model may meet (unknown ids: the last row).
            ids = list(self.items_)
            docs = [item_text.get(x, "") for x in ids]
            self.item_vec_ = np.vstack(
                [_encode(docs, self.dim, docs, self.seed), np.zeros((1, self.dim))]
            )
            self.review_vec_ = _encode(texts, self.dim, texts, self.seed)
        else:
            self.item_vec_ = np.zeros((self.n_items_, self.dim))
            self.review_vec_ = np.zeros((len(train), self.dim), dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        fold = rng.integers(0, self.folds, len(train))
        x = np.zeros((len(train), 0), dtype=np.float32)
        parts = []
        for k in range(self.folds):
            rows = np.flatnonzero(fold == k)
            st = self._stats(u, i, r, np.flatnonzero(fold != k))
            parts.append((rows, self._features(st, u[rows], i[rows])))
        x = np.zeros((len(train), parts[0][1].shape[1]), dtype=np.float32)
        for rows, f in parts:
            x[rows] = f
        self.full_ = self._stats(u, i, r, np.arange(len(train)))
        self.model_ = lgb.LGBMRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=20,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            n_jobs=self.threads,
            random_state=self.seed,
            verbose=-1,
        ).fit(x, r)
        self.range_ = (float(r.min()), float(r.max()))
        return self

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        if self.model_ is None:
            raise ValueError("TextRatingModel is not fitted")
        u = np.fromiter(
            (self.users_.get(x, self.n_users_ - 1) for x in df["user_id"]), np.int64, len(df)
        )
        i = np.fromiter(
            (self.items_.get(x, self.n_items_ - 1) for x in df["item_id"]), np.int64, len(df)
        )
        if self.use_text:
            # Items unseen in training still have catalogue text: embed it on the fly.
            unseen = sorted({x for x in df["item_id"] if x not in self.items_})
            if unseen:
                self._add_items(unseen)
                i = np.fromiter(
                    (self.items_.get(x, self.n_items_ - 1) for x in df["item_id"]),
                    np.int64,
                    len(df),
                )
        pred: np.ndarray = self.model_.predict(self._features(self.full_, u, i))
        return np.clip(pred, *self.range_)

    def _add_items(self, ids: list[str]) -> None:
        known = list(self.items_)
        docs = [self.item_text_.get(x, "") for x in known]
        new = [self.item_text_.get(x, "") for x in ids]
        vec = _encode(docs + new, self.dim, docs, self.seed)
        base = len(self.items_)
        for j, x in enumerate(ids):
            self.items_[x] = base + j
        self.n_items_ = len(self.items_) + 1
        self.item_vec_ = np.vstack([vec, np.zeros((1, self.dim))])
        pad = np.zeros((len(ids), self.dim))
        st = self.full_
        self.full_ = _Stats(
            st.n_u,
            st.s_u,
            np.r_[st.n_i[:-1], np.zeros(len(ids)), st.n_i[-1:]],
            np.r_[st.s_i[:-1], np.zeros(len(ids)), st.s_i[-1:]],
            st.taste,
            st.u_txt,
            np.vstack([st.i_txt[:-1], pad, st.i_txt[-1:]]),
            st.n_u_txt,
            np.r_[st.n_i_txt[:-1], np.zeros(len(ids)), st.n_i_txt[-1:]],
        )


def evaluate_rating(
    store: Store, *, test_fraction: float = 0.2, seed: int = 0, threads: int = 1
) -> dict[str, Any]:
    """RMSE / MAE of global mean, bias-only and text-aware models on one random split."""
    from shopsight.evaluation.metrics import mae, rmse

    df, item_text = load_ratings(store)
    if len(df) < 20:
        raise DataError(f"{store.path}: too few ratings ({len(df)}) to evaluate")
    rng = np.random.default_rng(seed)
    test_mask = rng.random(len(df)) < test_fraction
    train, test = df[~test_mask].reset_index(drop=True), df[test_mask].reset_index(drop=True)
    y = test["rating"].to_numpy(dtype=np.float64)
    # Pairs whose user and item both appear in training: elsewhere every model predicts a mean,
    # and equal RMSEs across models would read as a result.
    warm = int(
        (test["user_id"].isin(train["user_id"]) & test["item_id"].isin(train["item_id"])).sum()
    )
    if warm == 0:
        raise DataError(
            f"{store.path}: none of the {len(test)} test ratings has both its user and its item "
            f"among the {len(train)} training ratings, so every model would predict a mean; "
            "ingest more ratings (or reviews with a rating) per user and item"
        )
    out: dict[str, Any] = {
        "n_train": len(train),
        "n_test": len(test),
        "n_test_known_user_and_item": warm,
        "has_review_text": bool((df["text"].str.strip() != "").any()),
        "models": {},
    }
    mean = np.full(len(test), float(train["rating"].mean()))
    out["models"]["global_mean"] = {"rmse": rmse(y, mean), "mae": mae(y, mean)}
    for name, use_text in (("biases_only", False), ("with_text", True)):
        m = TextRatingModel(use_text, seed=seed, threads=threads).fit(train, item_text)
        p = m.predict(test)
        out["models"][name] = {"rmse": rmse(y, p), "mae": mae(y, p)}
    return out
