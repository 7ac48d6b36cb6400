"""MovieLens releases from GroupLens, in their original layouts.

Three formats, one per generation of files:

- ``movielens-100k``: ``u.data`` and the folds ``u1..u5.base/test``, ``ua/ub.base/test``
  (``user<TAB>item<TAB>rating<TAB>epoch``), ``u.item`` (``|``-separated, Latin-1, 19 genre
  flags) and ``u.user`` (``id|age|gender|occupation|zip``).
- ``movielens-dat``: ML-1M/10M ``ratings.dat``, ``movies.dat``, ``users.dat``, ``tags.dat``
  (``::``-separated).
- ``movielens-csv``: the newer releases (ml-latest, 20M, 25M, 32M): ``ratings.csv``,
  ``movies.csv``, ``tags.csv``, recognised by their exact headers.

Mapping choices:

- A rating is a ``rate`` event whose ``value`` is the rating (rating range 1-5 for 100K/1M,
  0.5-5 for the half-star releases).
- An item's ``category`` is its genres joined by ``|``, MovieLens's own notation, e.g.
  ``"Animation|Children's|Comedy"``: genres are a set, not a hierarchy, so they are not forced
  into a ``" > "`` path; the list is also in ``attributes.genres``.
- A user's ``age_band`` is the ten-year band of the exact age (``25-34``; the exact age is in
  ``attributes.age``); ML-1M only gives bands, kept with its own labels (``45-49``, ``56+``).
- A tag is free text a user attached to a movie: it becomes a ``tag`` event with the tag in
  ``query``. It is not a review (no rating, no prose; a user often gives one movie several tags
  at once, which review deduplication would collapse) and not an interaction: ``tag`` is an
  annotation type that the interaction log leaves out unless asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from shopsight.data.formats import ReadOptions, register
from shopsight.data.formats._util import (
    Payload,
    Record,
    age_band,
    base_name,
    check_text_file,
    clip,
    error_row,
    event_batches,
    head_lines,
    iter_delimited,
    parse_int,
    parse_timestamp,
    raw_text,
    split_lines,
    text_or_none,
    to_json,
)
from shopsight.data.staging import FormatError, StagedSource, batched, empty_row

# u.genre of ML-100K, in flag order (used when u.genre is not beside u.item).
GENRES_100K: tuple[str, ...] = (
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
)
# ML-1M users.dat codes.
AGE_CODES_1M: dict[str, str] = {
    "1": "<18",
    "18": "18-24",
    "25": "25-34",
    "35": "35-44",
    "45": "45-49",
    "50": "50-55",
    "56": "56+",
}
OCCUPATIONS_1M: tuple[str, ...] = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_RATINGS_100K = re.compile(r"u(?:\.data|[1-5]\.(?:base|test)|[ab]\.(?:base|test))")


# --------------------------------------------------------------------------- shared row makers


def _wrong_width(rec: Record, target: str, expected: str, n: int) -> dict[str, object]:
    got = len(rec.fields or [])
    return error_row(target, rec.line, rec.raw, f"expected {n} fields ({expected}), got {got}")


def tag_row(rec: Record, user: str, item: str, tag: str, ts: str) -> dict[str, object]:
    row = empty_row("events")
    row.update(
        user_id=text_or_none(user),
        item_id=text_or_none(item),
        event_type="tag",
        ts_ordinal=False,
        query=text_or_none(tag),
        timestamp=parse_timestamp(ts),
        timestamp_raw=raw_text(ts),
        line=rec.line,
        raw=clip(rec.raw),
    )
    return row


def movie_row(
    rec: Record, item: str, title: str, genres: list[str], extra: Mapping[str, object]
) -> dict[str, object]:
    row = empty_row("items")
    named = [g for g in genres if g and g not in ("unknown", "(no genres listed)")]
    t = text_or_none(title)
    year = _YEAR.search(t) if t else None
    row.update(
        item_id=text_or_none(item),
        title=t,
        category="|".join(named) or None,
        attributes=to_json(
            {**extra, "genres": named, "year": int(year.group(1)) if year else None}
        ),
        line=rec.line,
        raw=clip(rec.raw),
    )
    return row


RowMaker = Callable[..., dict[str, object]]


def rate_batches(records: Iterator[Record], width: int, expected: str) -> Iterator[pa.RecordBatch]:
    """``rate`` events (value = rating) from ``user, item, rating, timestamp`` records, parsed
    column-wise: these are the files with tens of millions of lines."""

    def payloads() -> Iterator[tuple[int, str, Payload]]:
        for rec in records:
            f = rec.fields
            if f is None:
                yield rec.line, rec.raw, rec.error or "unreadable record"
            elif len(f) != width:
                yield rec.line, rec.raw, f"expected {width} fields ({expected}), got {len(f)}"
            else:
                yield rec.line, rec.raw, (f[0], f[1], f[2], f[3])

    return event_batches(payloads(), "rate")


def _rows(
    records: Iterator[Record], target: str, width: int, expected: str, make: RowMaker
) -> Iterator[dict[str, object]]:
    """Staging rows from records: broken records and wrong widths become error rows."""
    for rec in records:
        if rec.fields is None:
            yield error_row(target, rec.line, rec.raw, rec.error or "unreadable record")
        elif len(rec.fields) != width:
            yield _wrong_width(rec, target, expected, width)
        else:
            yield make(rec, *rec.fields)


def _require_width(path: Path, head: bytes, delimiter: str, width: int, layout: str) -> None:
    """FormatError when no line among the first ones has the layout's number of fields."""
    lines = head_lines(head, limit=50)
    if not lines:
        raise FormatError(f"{path}: empty file, expected {layout}")
    if not any(len(t.split(delimiter)) == width for t in lines):
        got = len(lines[0].split(delimiter))
        raise FormatError(f"{path}: expected {layout} ({width} fields), first line has {got}")


# --------------------------------------------------------------------------- ML-100K


class MovieLens100K:
    name = "movielens-100k"
    description = "MovieLens 100K original files: u.data, u1..u5.base/test, u.item, u.user"
    priority = 10

    _LAYOUTS: ClassVar[dict[str, tuple[str, int, str]]] = {
        "ratings": ("\t", 4, "user<TAB>item<TAB>rating<TAB>timestamp"),
        "items": ("|", 5 + len(GENRES_100K), "id|title|release|video release|url|19 genre flags"),
        "users": ("|", 5, "id|age|gender|occupation|zip"),
    }

    @staticmethod
    def _kind_from_name(path: Path) -> str | None:
        n = base_name(path)
        if _RATINGS_100K.fullmatch(n):
            return "ratings"
        return {"u.item": "items", "u.user": "users"}.get(n)

    def _kind(self, path: Path, head: bytes) -> str | None:
        kind = self._kind_from_name(path)
        if kind is not None:
            return kind
        first = head_lines(head, limit=1)
        for k, (delim, width, _) in self._LAYOUTS.items():
            if first and len(first[0].split(delim)) == width:
                return k
        return None

    def sniff(self, path: Path, head: bytes) -> bool:
        kind = self._kind_from_name(path)
        if kind is None:
            return False
        delim, width, _ = self._LAYOUTS[kind]
        first = head_lines(head, limit=1)
        return bool(first) and len(first[0].split(delim)) == width

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        kind = self._kind(path, head)
        if kind is None:
            raise FormatError(
                f"{path}: not a MovieLens 100K file (expected u.data, u.item or u.user layout)"
            )
        delim, width, layout = self._LAYOUTS[kind]
        _require_width(path, head, delim, width, layout)
        records = split_lines(path, delim)
        if kind == "ratings":
            batches = rate_batches(records, width, layout)
            return [StagedSource("events", batches=batches, rating_range=(1, 5))]
        if kind == "items":
            genres = _genres_beside(path)
            rows = _rows(records, "items", 5 + len(genres), layout, _item_100k(genres))
            return [StagedSource("items", batches=batched("items", rows))]
        rows = _rows(records, "users", width, layout, _user_100k)
        return [StagedSource("users", batches=batched("users", rows))]


def _genres_beside(path: Path) -> tuple[str, ...]:
    """Genre names from ``u.genre`` next to ``u.item`` (in flag order), else the 100K list."""
    g = path.parent / "u.genre"
    if not g.is_file():
        return GENRES_100K
    pairs = []
    for rec in split_lines(g, "|"):
        f = rec.fields
        if f and len(f) == 2 and parse_int(f[1]) is not None:
            pairs.append((int(f[1]), f[0]))
    return tuple(name for _, name in sorted(pairs)) or GENRES_100K


def _release_date(text: str) -> str | None:
    try:
        return datetime.strptime(text.strip(), "%d-%b-%Y").date().isoformat()
    except ValueError:
        return text_or_none(text)


def _item_100k(genres: tuple[str, ...]) -> RowMaker:
    def make(
        rec: Record, item: str, title: str, release: str, video: str, url: str, *flags: str
    ) -> dict[str, object]:
        named = [g for g, f in zip(genres, flags, strict=True) if f.strip() == "1"]
        extra = {
            "release_date": _release_date(release),
            "video_release_date": _release_date(video),
            "imdb_url": text_or_none(url),
        }
        return movie_row(rec, item, title, named, extra)

    return make


def _user_100k(
    rec: Record, user: str, age: str, gender: str, occupation: str, zipcode: str
) -> dict[str, object]:
    row = empty_row("users")
    row.update(
        user_id=text_or_none(user),
        age_band=age_band(age),
        gender=text_or_none(gender),
        region=text_or_none(zipcode),
        attributes=to_json({"age": parse_int(age), "occupation": text_or_none(occupation)}),
        line=rec.line,
        raw=clip(rec.raw),
    )
    return row


# --------------------------------------------------------------------------- ML-1M / 10M .dat


def _user_1m(
    rec: Record, user: str, gender: str, age: str, occupation: str, zipcode: str
) -> dict[str, object]:
    occ = parse_int(occupation)
    row = empty_row("users")
    row.update(
        user_id=text_or_none(user),
        age_band=AGE_CODES_1M.get(age.strip()),
        gender=text_or_none(gender),
        region=text_or_none(zipcode),
        attributes=to_json(
            {
                "age_code": parse_int(age),
                "occupation": OCCUPATIONS_1M[occ] if occ is not None and 0 <= occ < 21 else None,
                "occupation_code": occ,
            }
        ),
        line=rec.line,
        raw=clip(rec.raw),
    )
    return row


def _movie_pipe_genres(rec: Record, item: str, title: str, genres: str) -> dict[str, object]:
    return movie_row(rec, item, title, genres.split("|"), {})


class MovieLensDat:
    name = "movielens-dat"
    description = "MovieLens 1M/10M '::'-separated ratings.dat, movies.dat, users.dat, tags.dat"
    priority = 10

    _LAYOUTS: ClassVar[dict[str, tuple[str, int, str]]] = {
        "ratings.dat": ("events", 4, "UserID::MovieID::Rating::Timestamp"),
        "tags.dat": ("events", 4, "UserID::MovieID::Tag::Timestamp"),
        "movies.dat": ("items", 3, "MovieID::Title::Genres"),
        "users.dat": ("users", 5, "UserID::Gender::Age::Occupation::Zip-code"),
    }

    def sniff(self, path: Path, head: bytes) -> bool:
        layout = self._LAYOUTS.get(base_name(path))
        first = head_lines(head, limit=1)
        return layout is not None and bool(first) and len(first[0].split("::")) == layout[1]

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        name = base_name(path)
        if name not in self._LAYOUTS:
            raise FormatError(
                f"{path}: not a MovieLens .dat file (expected {', '.join(self._LAYOUTS)})"
            )
        target, width, layout = self._LAYOUTS[name]
        _require_width(path, head, "::", width, layout)
        records = split_lines(path, "::")
        if name == "ratings.dat":
            # ML-1M is 1-5 stars, ML-10M half stars 0.5-5.
            batches = rate_batches(records, width, layout)
            return [StagedSource(target, batches=batches, rating_range=(0.5, 5))]
        make: dict[str, RowMaker] = {
            "tags.dat": tag_row,
            "movies.dat": _movie_pipe_genres,
            "users.dat": _user_1m,
        }
        rows = _rows(records, target, width, layout, make[name])
        return [StagedSource(target, batches=batched(target, rows))]


# --------------------------------------------------------------------------- CSV releases


class MovieLensCsv:
    name = "movielens-csv"
    description = (
        "MovieLens CSV releases (ml-latest, 20M, 25M, 32M): ratings.csv, movies.csv, tags.csv"
    )
    priority = 10

    _HEADERS: ClassVar[dict[str, tuple[str, str]]] = {
        "userid,movieid,rating,timestamp": ("events", "ratings"),
        "userid,movieid,tag,timestamp": ("events", "tags"),
        "movieid,title,genres": ("items", "movies"),
    }

    def _header(self, head: bytes) -> str | None:
        first = head_lines(head, limit=1)
        if not first:
            return None
        h = first[0].lstrip("\ufeff").strip().replace(" ", "").replace('"', "").lower()
        return h if h in self._HEADERS else None

    def sniff(self, path: Path, head: bytes) -> bool:
        return self._header(head) is not None

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        header = self._header(head)
        if header is None:
            known = " / ".join(self._HEADERS)
            raise FormatError(f"{path}: not a MovieLens CSV file (expected a header {known})")
        target, kind = self._HEADERS[header]
        width = len(header.split(","))
        records = (r for r in iter_delimited(path, ",") if r.line > 1)
        if kind == "ratings":
            batches = rate_batches(records, width, header)
            return [StagedSource(target, batches=batches, rating_range=(0.5, 5))]
        make = tag_row if kind == "tags" else _movie_pipe_genres
        rows = _rows(records, target, width, header, make)
        return [StagedSource(target, batches=batched(target, rows))]


register(MovieLens100K())
register(MovieLensDat())
register(MovieLensCsv())

__all__ = ["GENRES_100K", "MovieLens100K", "MovieLensCsv", "MovieLensDat"]
