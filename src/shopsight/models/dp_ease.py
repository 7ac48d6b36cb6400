"""``dp``: EASE on a differentially private item-item Gram matrix, with a private popularity.

After McSherry & Mironov (KDD 2009: release item covariances with calibrated noise, then any
item-item method is post-processing) and the *joint* DP reading of Chien et al. (ICML 2021):
only the shared item-side statistics are released with noise; a user's scores then combine
those released statistics with that user's own history, which no other user sees.

Two Gaussian-mechanism releases, both on a bounded contribution per privacy unit:

1. **Item counts**. Each user's binary history is clipped to at most ``max_items_per_user``
   (``C``) items, sampled uniformly (seeded) when they have more. Adding or removing one user
   changes the count vector by at most ``sqrt(C)`` in L2. The noisy counts are the private
   popularity, the ranking every cold user gets, and pick the ``top_items`` (``K``) items whose
   Gram is released next (post-processing: no extra cost).
2. **Gram of the top items**. Each user's history restricted to those ``K`` items is clipped
   again to ``C`` items (a fresh sample); the upper triangle (diagonal included) of ``X'X``
   changes by at most ``sqrt(C (C + 1) / 2)`` when one user comes or goes. Symmetric Gaussian
   noise is added to that triangle and mirrored.

With ``unit="interaction"`` the neighbouring datasets differ in one user-item pair instead:
sensitivities ``1`` (counts) and ``sqrt(C)`` (Gram). Rows are clipped to ``C`` either way.

**Accounting** is Opacus's (no formula of ours): ``get_noise_multiplier`` with
``sample_rate=1, steps=1`` gives the noise multiplier ``sigma`` of one Gaussian mechanism
reaching ``(epsilon, delta)``; the two releases get ``sigma / sqrt(share)`` and
``sigma / sqrt(1 - share)`` (``popularity_share`` of the budget to the counts), which compose
to the same privacy loss as that one mechanism (Gaussian mechanisms compose by adding
``1 / sigma^2``); the accountant is then asked for the epsilon of that two-step history at
``delta``, and that figure is what the model stores and reports as spent.

**Fitting** is post-processing: the noisy Gram is projected on the positive semi-definite cone
(eigenvalues clipped at 0), a diagonal ``l2 + noise_l2 * 2 sqrt(K) * noise_std`` is added (the
spectral norm of the noise matrix is about ``2 sqrt(K) * noise_std``, so the regulariser grows
with the noise) and EASE's closed form is solved on it. Items outside the top ``K`` rank
below them, in private-popularity order.

What the guarantee covers: everything the folder releases about *other* users (the weights,
the item ranking, the popularity). Kept as-is, because serving a user needs them: the user's
own history (scoring, seen-item exclusion) and the user id list, both server-side. Assumed
public: the catalogue (the item id list). ``delta`` defaults to ``1 / (10 n)`` for ``n``
privacy units in the training data (users with a history, or interactions).
``epsilon=None`` releases the same statistics without noise (clipping kept): not private.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp

from shopsight.errors import DataError, InputError
from shopsight.models.base import FloatArray, IntArray, Recommender, topk
from shopsight.models.itemknn import feedback_matrix, feedback_vector
from shopsight.models.private_randomness import noise_seed_or_secret
from shopsight.training.trainer import derive_seed

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset

__all__ = [
    "Calibration",
    "PrivateEASE",
    "Release",
    "calibrate",
    "clip_rows",
    "count_sensitivity",
    "epsilon_spent",
    "gram_sensitivity",
    "release_statistics",
]

Unit = Literal["user", "interaction"]
Accountant = Literal["prv", "rdp"]


def count_sensitivity(unit: Unit, clip: int) -> float:
    """L2 change of the count vector when one unit comes or goes (rows clipped to ``clip``)."""
    return math.sqrt(clip) if unit == "user" else 1.0


def gram_sensitivity(unit: Unit, clip: int) -> float:
    """L2 change of the Gram's upper triangle (diagonal included), same neighbours."""
    return math.sqrt(clip * (clip + 1) / 2) if unit == "user" else math.sqrt(clip)


def clip_rows(x: sp.csr_matrix, clip: int, rng: np.random.Generator) -> sp.csr_matrix:
    """Binary rows with at most ``clip`` ones each: a uniform sample of a longer row's items."""
    x = x.tocsr()
    lengths = np.diff(x.indptr)
    if not len(lengths) or lengths.max(initial=0) <= clip:
        out = x.copy()
        out.data = np.ones_like(out.data, dtype=np.float64)
        return out
    # A random key per entry; keep each row's `clip` smallest keys (uniform without replacement).
    keys = rng.random(x.nnz)
    rows = np.repeat(np.arange(x.shape[0]), lengths)
    order = np.lexsort((keys, rows))
    rank = np.arange(x.nnz) - np.repeat(x.indptr[:-1], lengths)
    keep = np.zeros(x.nnz, bool)
    keep[order[rank < clip]] = True
    cols = x.indices[keep]
    counts = np.minimum(lengths, clip)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_matrix((np.ones(len(cols)), cols, indptr), shape=x.shape)


@dataclass(frozen=True)
class Calibration:
    """Noise multipliers of the two releases and the (epsilon, delta) the accountant reports."""

    epsilon: float
    delta: float
    sigma: float  # one mechanism reaching (epsilon, delta)
    sigma_counts: float
    sigma_gram: float
    accountant: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quiet(w: Any) -> None:
    # Benign with sample_rate=1: RDP noting a larger order could tighten its (valid) bound, and
    # PRV's log(1 - q) = -inf branch, which its np.where then discards.
    w.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
    w.filterwarnings("ignore", category=RuntimeWarning, module="opacus")


def _opacus_accountant(name: Accountant) -> Any:
    from opacus.accountants import PRVAccountant, RDPAccountant

    return PRVAccountant() if name == "prv" else RDPAccountant()


def epsilon_spent(sigmas: list[float], delta: float, accountant: Accountant = "prv") -> float:
    """The accountant's epsilon for full-batch Gaussian releases with these noise multipliers."""
    acc = _opacus_accountant(accountant)
    acc.history = [(float(s), 1.0, 1) for s in sigmas]
    with warnings.catch_warnings():
        _quiet(warnings)
        return float(acc.get_epsilon(delta=delta))


def calibrate(
    epsilon: float, delta: float, share: float, accountant: Accountant = "prv"
) -> Calibration:
    """Noise multipliers for the counts (``share`` of the budget) and the Gram (the rest)."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        _quiet(warnings)
        sigma = float(
            get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=1.0,
                steps=1,
                accountant=accountant,
            )
        )
    s_counts, s_gram = sigma / math.sqrt(share), sigma / math.sqrt(1.0 - share)
    spent = epsilon_spent([s_counts, s_gram], delta, accountant)
    return Calibration(spent, delta, sigma, s_counts, s_gram, accountant)


@dataclass
class Release:
    """What leaves the private side: noisy counts, the chosen items and their noisy Gram."""

    counts: npt.NDArray[np.float64]  # (n_items,)
    items: IntArray  # the top-K items by noisy count, best first
    gram: npt.NDArray[np.float64]  # (K, K), symmetric
    count_std: float  # standard deviation of the noise added to each count
    gram_std: float  # ... and to each Gram entry of the upper triangle
    calibration: Calibration | None  # None: no noise (not private)


def release_statistics(
    x: sp.csr_matrix,
    *,
    clip: int,
    top_items: int,
    calibration: Calibration | None,
    unit: Unit,
    rng: np.random.Generator,
    min_count_ratio: float = 0.0,
) -> Release:
    """The two Gaussian releases of the module docstring, on a users x items 0/1 matrix.

    The Gram covers the ``top_items`` items of highest noisy count, less those whose noisy
    count is under ``min_count_ratio`` times the Gram's noise standard deviation (their rows
    would be mostly noise). Both choices read only the released counts.
    """
    n_items = x.shape[1]
    c = calibration
    x1 = clip_rows(x, clip, rng)
    counts = np.asarray(x1.sum(axis=0), dtype=np.float64).ravel()
    count_std = 0.0 if c is None else c.sigma_counts * count_sensitivity(unit, clip)
    if count_std:
        counts = counts + rng.normal(0.0, count_std, n_items)
    gram_std = 0.0 if c is None else c.sigma_gram * gram_sensitivity(unit, clip)
    # stable order on (-count, index), like topk()
    items = np.lexsort((np.arange(n_items), -counts))[: min(top_items, n_items)]
    items = items[counts[items] >= min_count_ratio * gram_std].astype(np.int64)
    k = len(items)
    x2 = clip_rows(x[:, items], clip, rng)
    gram = np.asarray((x2.T @ x2).todense(), dtype=np.float64)
    if gram_std:
        noise = np.triu(rng.normal(0.0, gram_std, (k, k)))
        gram += noise + np.triu(noise, 1).T
    return Release(counts, items, gram, count_std, gram_std, c)


#: ``max_items_per_user="auto"`` chooses among these by a private median of history lengths
AUTO_CLIPS: tuple[int, ...] = (8, 16, 32)
#: ... spending this share of epsilon (pure DP, composed with the Gaussian releases by addition)
AUTO_CLIP_SHARE = 0.05


def choose_clip(
    lengths: IntArray,
    epsilon: float | None,
    rng: np.random.Generator,
    candidates: tuple[int, ...] = AUTO_CLIPS,
) -> tuple[int, npt.NDArray[np.float64]]:
    """The candidate clip whose bin holds the median history length, chosen privately.

    Candidate ``c`` stands for the lengths nearer to it than to its neighbours on a log
    scale (8: below 11.3, 16: 11.3-22.6, 32: above). Its utility is minus the number of
    users that would have to change sides for the median to fall in its bin,
    ``-max(0, #(length < low) - n/2, n/2 - #(length < high))``: 0 for the median's bin. One
    user more or less (or one interaction, moving a user across a bound) changes it by at
    most 1, so the exponential mechanism, probability ``exp(epsilon u / 2)``, is
    ``epsilon``-DP. ``epsilon=None``: the best, exactly (not private). Returns the choice and
    the utilities.

    Why a median: a clip above most users' histories adds noise (the sensitivity grows with
    the clip) for items they do not have; one far below them drops their signal. On Amazon
    Beauty (6 training items a user at the median) the fixed 32 scored validation NDCG@10
    0.0068-0.0073 against 0.0117-0.0129 with this choice (8), two noise draws each;
    MovieLens-100K (65) and the synthetic shop (161) keep 32.
    """
    c = np.asarray(candidates, np.float64)
    mids = np.sqrt(c[1:] * c[:-1])  # geometric midpoints between neighbours
    low = np.r_[-np.inf, mids]
    high = np.r_[mids, np.inf]
    x = np.asarray(lengths, np.float64)
    half = len(x) / 2.0
    below_low = np.array([(x < b).sum() for b in low], np.float64)
    below_high = np.array([(x < b).sum() for b in high], np.float64)
    utility = -np.maximum(0.0, np.maximum(below_low - half, half - below_high))
    if epsilon is None:
        return candidates[int(np.argmax(utility))], utility
    prob = np.exp(epsilon * (utility - utility.max()) / 2.0)
    return candidates[int(rng.choice(len(prob), p=prob / prob.sum()))], utility


class PrivateEASE(Recommender):
    """EASE on a differentially private Gram, private popularity for cold users (see module).

    Defaults were chosen on validation splits (``bench/dp.py --tune``), not on test data.
    """

    name = "dp"

    def __init__(
        self,
        epsilon: float | None = 4.0,
        delta: float | None = None,
        unit: Unit = "user",
        max_items_per_user: int | Literal["auto"] = "auto",
        top_items: int = 200,
        popularity_share: float = 0.1,
        min_count_ratio: float = 1.0,
        l2: float = 50.0,
        noise_l2: float = 3.0,
        accountant: Accountant = "prv",
        seed: int = 0,
        max_items: int = 30_000,
        noise_seed: int | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.unit = unit
        self.max_items_per_user = max_items_per_user
        self.top_items = top_items
        self.popularity_share = popularity_share
        self.min_count_ratio = min_count_ratio
        self.l2 = l2
        self.noise_l2 = noise_l2
        self.accountant = accountant
        self.seed = seed
        self.max_items = max_items
        self.noise_seed = noise_seed

    def _check_params(self) -> None:
        def bad(name: str, expected: str) -> InputError:
            return InputError(f"dp.{name}={getattr(self, name)!r}: expected {expected}")

        if self.epsilon is not None and not (
            isinstance(self.epsilon, int | float)
            and math.isfinite(self.epsilon)
            and self.epsilon > 0
        ):
            raise bad("epsilon", "a positive number (or None: not private)")
        if self.delta is not None and not 0 < self.delta < 1:
            raise bad("delta", "a number in (0, 1)")
        if self.unit not in ("user", "interaction"):
            raise bad("unit", "user or interaction")
        if self.max_items_per_user != "auto" and not (
            isinstance(self.max_items_per_user, int) and self.max_items_per_user >= 1
        ):
            raise bad("max_items_per_user", "an integer >= 1 or 'auto'")
        if not (isinstance(self.top_items, int) and self.top_items >= 1):
            raise bad("top_items", "an integer >= 1")
        if not 0 < self.popularity_share < 1:
            raise bad("popularity_share", "a fraction in (0, 1)")
        if not self.min_count_ratio >= 0:
            raise bad("min_count_ratio", "a number >= 0")
        if not self.l2 > 0:
            raise bad("l2", "a positive number")
        if not self.noise_l2 >= 0:
            raise bad("noise_l2", "a number >= 0")
        if self.accountant not in ("prv", "rdp"):
            raise bad("accountant", "prv or rdp")

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        self._check_params()
        k = min(self.top_items, dataset.n_items)
        if k > self.max_items:
            raise InputError(
                f"dp: a dense {k} x {k} Gram exceeds max_items={self.max_items}; "
                "lower top_items or raise max_items"
            )
        self.history_: sp.csr_matrix = feedback_matrix(dataset.implicit, "binary")
        x = self.history_
        units = int((np.diff(x.indptr) > 0).sum()) if self.unit == "user" else int(x.nnz)
        if units == 0:
            raise DataError("dp: no interactions to train on")
        calibration = None
        # the clip choice, the clipping samples and the noise: secret unless noise_seed is given
        private_seed, noise_source = noise_seed_or_secret(self.noise_seed)
        rng = np.random.default_rng(derive_seed(private_seed, 0xDE))
        clip_choice: dict[str, Any] | None = None
        gaussian_epsilon = None if self.epsilon is None else float(self.epsilon)
        if self.max_items_per_user == "auto":
            lengths = np.diff(x.indptr)
            lengths = lengths[lengths > 0]
            spend = None if gaussian_epsilon is None else AUTO_CLIP_SHARE * gaussian_epsilon
            clip, _ = choose_clip(lengths, spend, rng)
            if gaussian_epsilon is not None:
                gaussian_epsilon *= 1.0 - AUTO_CLIP_SHARE
            clip_choice = {
                "candidates": list(AUTO_CLIPS),
                "chosen": clip,
                "mechanism": "exponential, bin of the median history length",
                "epsilon": spend,
            }
        else:
            clip = int(self.max_items_per_user)
        if gaussian_epsilon is not None:
            delta = self.delta if self.delta is not None else 1.0 / (10 * units)
            calibration = calibrate(gaussian_epsilon, delta, self.popularity_share, self.accountant)
        rel = release_statistics(
            x,
            clip=clip,
            top_items=k,
            calibration=calibration,
            unit=self.unit,
            rng=rng,
            min_count_ratio=self.min_count_ratio,
        )
        k = len(rel.items)
        self.items_: IntArray = rel.items
        # Cold users get the noisy counts; the exact ones must not stay in the model.
        self.item_popularity_ = rel.counts.astype(np.float32)
        self.weights_: FloatArray = _ease_on_gram(
            rel.gram, self.l2 + self.noise_l2 * 2.0 * math.sqrt(k) * rel.gram_std
        )
        spent = None
        if calibration is not None:
            spent = calibration.epsilon + float((clip_choice or {}).get("epsilon") or 0.0)
        self.clip_: int = clip
        self.privacy_: dict[str, Any] = {
            "private": calibration is not None,
            "unit": self.unit,
            # the Gaussian releases' epsilon (accountant) plus the clip choice's (pure DP)
            "epsilon": spent,
            "delta": None if calibration is None else calibration.delta,
            "target_epsilon": self.epsilon,
            "accountant": None if calibration is None else f"opacus {self.accountant}",
            "noise_multiplier": None if calibration is None else calibration.sigma,
            "releases": {
                "item_counts": {
                    "budget_share": self.popularity_share,
                    "noise_multiplier": None if calibration is None else calibration.sigma_counts,
                    "sensitivity": count_sensitivity(self.unit, clip),
                    "noise_std": rel.count_std,
                },
                "gram": {
                    "budget_share": 1.0 - self.popularity_share,
                    "noise_multiplier": None if calibration is None else calibration.sigma_gram,
                    "sensitivity": gram_sensitivity(self.unit, clip),
                    "noise_std": rel.gram_std,
                    "items": k,
                },
            },
            "clip_items_per_user": clip,
            "clip_choice": clip_choice,
            "noise": noise_source if calibration is not None else None,
            "units": units,
        }
        self._rank_ = _popularity_rank(self.item_popularity_)

    # -- scoring ------------------------------------------------------------------------------
    def _spread(self, scores_k: npt.NDArray[np.float32]) -> FloatArray:
        """Full-catalogue scores: the K items' scores, the others below them by popularity."""
        n, k = self.n_items_, len(self.items_)
        out = np.empty((scores_k.shape[0], n), np.float32)
        if k < n:
            floor = scores_k.min(axis=1, keepdims=True) if k else np.zeros((len(out), 1))
            out[:] = floor - 2.0 + self._rank_[None, :]
        out[:, self.items_] = scores_k
        return out

    def _score(self, users: IntArray) -> FloatArray:
        h = self.history_[users][:, self.items_]
        return self._spread(np.asarray(h @ self.weights_, dtype=np.float32))

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        if not len(items):
            return self.item_popularity_.copy()
        h = feedback_vector(items, weights, self.n_items_, "binary")[:, self.items_]
        return self._spread(np.asarray(h @ self.weights_, dtype=np.float32).reshape(1, -1))[0]

    def similar_items(self, items: npt.ArrayLike, k: int = 10) -> tuple[IntArray, FloatArray]:
        """Items an item predicts most strongly (its row of the weights); outside the top
        items, the most popular others (private counts)."""
        self._check_fitted()
        it = np.atleast_1d(np.asarray(items, dtype=np.int64))
        pos = np.full(self.n_items_, -1, np.int64)
        pos[self.items_] = np.arange(len(self.items_))
        rows = np.zeros((len(it), len(self.items_)), np.float32)
        inside = pos[it] >= 0
        rows[inside] = self.weights_[pos[it[inside]]]
        s = self._spread(rows)
        s[~inside] = self._rank_[None, :]
        s[np.arange(len(it)), it] = -np.inf
        return topk(s, k)

    # -- persistence --------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        h = self.history_.tocsr()
        return {
            "weights": self.weights_,
            "items": self.items_,
            "history.data": h.data.astype(np.float32),
            "history.indices": h.indices.astype(np.int64),
            "history.indptr": h.indptr.astype(np.int64),
        }

    def _meta(self) -> dict[str, Any]:
        privacy = getattr(self, "privacy_", None)
        return {"privacy": privacy} if privacy is not None else {}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.weights_ = arrays["weights"]
        self.items_ = arrays["items"].astype(np.int64)
        self.history_ = sp.csr_matrix(
            (arrays["history.data"], arrays["history.indices"], arrays["history.indptr"]),
            shape=(self.n_users_, self.n_items_),
        )
        if "privacy" in meta:
            self.privacy_ = meta["privacy"]
        self._rank_ = _popularity_rank(self.item_popularity_)


def _popularity_rank(pop: FloatArray) -> FloatArray:
    """Scores in [0, 1) ordering items by popularity (ties: lower index first)."""
    n = len(pop)
    order = np.lexsort((np.arange(n), -pop))
    rank = np.empty(n, np.float32)
    rank[order] = (n - 1 - np.arange(n)) / max(n, 1)
    return rank


def _ease_on_gram(gram: npt.NDArray[np.float64], lam: float) -> FloatArray:
    """EASE's closed form on a (noisy) Gram: PSD projection, diagonal ``lam``, zero diagonal."""
    k = gram.shape[0]
    if k == 0:
        return np.zeros((0, 0), np.float32)
    w, v = np.linalg.eigh(gram)
    g = (v * np.maximum(w, 0.0)) @ v.T
    g[np.diag_indices(k)] += lam
    c, low = scipy.linalg.cho_factor(g, overwrite_a=True, check_finite=False)
    p = scipy.linalg.cho_solve((c, low), np.eye(k), overwrite_b=True, check_finite=False)
    diag = np.diag(p).copy()
    p /= -diag[None, :]
    p[np.diag_indices(k)] = 0.0
    return np.ascontiguousarray(p, dtype=np.float32)
