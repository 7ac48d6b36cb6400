"""Small samples of each real dataset shape in ../shared/data, for the acceptance matrix.

``movielens_latest_layout`` writes a MovieLens *latest*-layout folder (``ratings.csv``,
``movies.csv``, ``tags.csv`` with their exact headers): ../shared has no ml-latest release, so
the ratings and movies are those of MovieLens-100K's first ``n_users`` users, and the tags are
drawn deterministically from each movie's genres, several per (user, movie) at one time, as in
ml-latest (where a user tags a movie with several words in one sitting). It is a non-100K *file*
(a different layout and a subset of users) with the quirk that matters: many tags per pair.
"""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

GENRE_TAGS = {
    "Comedy": ["funny", "witty", "dark comedy"],
    "Drama": ["moving", "slow", "great acting"],
    "Action": ["explosions", "fast-paced"],
    "Thriller": ["suspense", "twist ending"],
    "Romance": ["romantic", "cheesy"],
    "Sci-Fi": ["space", "dystopia", "aliens"],
    "Horror": ["scary", "gore"],
    "Animation": ["pixar", "kids"],
    "Children's": ["family"],
    "War": ["ww2", "history"],
}
GENRES_100K = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def movielens_latest_layout(ml100k: Path, out: Path, n_users: int = 610, seed: int = 7) -> Path:
    """Write ratings.csv / movies.csv / tags.csv under ``out`` (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    genres: dict[str, list[str]] = {}
    with (out / "movies.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["movieId", "title", "genres"])
        for line in (ml100k / "u.item").read_text(encoding="latin-1").splitlines():
            f = line.split("|")
            named = [g for g, flag in zip(GENRES_100K, f[5:], strict=False) if flag == "1"]
            named = [g for g in named if g != "unknown"]
            genres[f[0]] = named
            w.writerow([f[0], f[1], "|".join(named) or "(no genres listed)"])
    rng = random.Random(seed)
    rated: list[tuple[str, str, str]] = []
    with (out / "ratings.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for line in (ml100k / "u.data").read_text().splitlines():
            u, i, r, t = line.split("\t")
            if int(u) <= n_users:
                w.writerow([u, i, f"{float(r):.1f}", t])
                rated.append((u, i, t))
    with (out / "tags.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["userId", "movieId", "tag", "timestamp"])
        for u, i, t in rng.sample(rated, k=min(len(rated), max(1, len(rated) // 50))):
            words = [x for g in genres.get(i, []) for x in GENRE_TAGS.get(g, [])] or ["seen it"]
            for word in rng.sample(words, k=min(len(words), rng.randint(1, 4))):
                w.writerow([u, i, word, int(t) + rng.randint(0, 3)])
    return out


def head_lines(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` lines of a (possibly gzipped) text file, same compression."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt", encoding="utf-8") as fi, opener(dst, "wt", encoding="utf-8") as fo:  # type: ignore[operator]
        for k, line in enumerate(fi):
            if k >= n:
                break
            fo.write(line)
    return dst
