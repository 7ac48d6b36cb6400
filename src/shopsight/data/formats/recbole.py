"""RecBole atomic files: ``<dataset>.inter``, ``.item``, ``.user``.

Tab-separated, with a typed header such as ``user_id:token\\titem_id:token\\trating:float\\t
timestamp:float``; ``token_seq``/``float_seq`` values are space-separated lists.

Mapping (``--map canonical=column`` overrides any of it):

- ``.inter`` -> ``events``. ``user_id``, ``item_id``, ``timestamp`` (epoch seconds), ``rating``,
  ``session_id`` by name. The event type comes from an ``event_type``/``behavior_type``/
  ``action_type``/``event``/``type`` column when there is one (raw values such as ``pv``/``buy``
  are mapped by the engine's aliases); otherwise ``--default event_type=...``; otherwise ``rate``
  when there is a rating column (RecBole's explicit-feedback datasets) and ``view`` when there
  is not (an implicit interaction log says the user met the item, not that they bought it).
  The rating is the event value only for ``rate``/``review`` events, checked against the wide
  canonical range 0-10 (RecBole datasets use 1-5, 0-5 and 1-10 scales). Session datasets without a
  user column get the session-scoped user ``anon:<session_id>``. Without a timestamp column, each
  user's rows are kept in file order as ordinal times (``ts_ordinal``).
- ``.item`` -> ``items``: title, description, brand, category, price, image by common column
  names; every other column goes to ``attributes`` with its RecBole type. A ``token_seq``
  category holding commas (Amazon ``'Beauty', 'Skin Care'``) is a path (``" > "``); one with
  plain tokens (``class``/``genre``: ``Action Comedy``) is a genre set joined by ``|``.
- ``.user`` -> ``users``: age (-> ten-year ``age_band``), gender, zip/region; the rest in
  ``attributes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shopsight.data.formats import ReadOptions, register
from shopsight.data.formats._util import (
    Line,
    age_band,
    base_name,
    check_text_file,
    clip,
    error_row,
    head_lines,
    iter_lines,
    ordinal_time,
    parse_int,
    parse_number,
    parse_price,
    parse_timestamp,
    raw_text,
    text_or_none,
    to_json,
)
from shopsight.data.schema import RATING_MAX, RATING_MIN
from shopsight.data.staging import FormatError, StagedSource, batched, empty_row

_FIELD = re.compile(r"([^:\t]+):(token|token_seq|float|float_seq)")
_SUFFIX_TARGET = {".inter": "events", ".item": "items", ".user": "users"}

# canonical role -> accepted RecBole column names (first present wins).
_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "events": {
        "user_id": ("user_id", "uid", "user"),
        "item_id": ("item_id", "iid", "item"),
        "timestamp": ("timestamp", "time", "ts"),
        "rating": ("rating", "score", "overall"),
        "session_id": ("session_id", "session"),
        "event_type": (
            "event_type",
            "behavior_type",
            "behaviour_type",
            "action_type",
            "event",
            "type",
            "behavior",
            "action",
        ),
        "query": ("query", "search_query"),
    },
    "items": {
        "item_id": ("item_id", "iid", "item"),
        "title": ("title", "movie_title", "item_name", "name", "product_name"),
        "description": ("description", "desc"),
        "brand": ("brand", "store"),
        "category": ("categories", "category", "genre", "class", "cate_id", "category_id"),
        "price": ("price",),
        "image": ("image", "img", "image_url", "imurl"),
    },
    "users": {
        "user_id": ("user_id", "uid", "user"),
        "age": ("age",),
        "gender": ("gender", "sex"),
        "region": ("zip_code", "zip", "region", "country", "city", "location"),
        "signup_date": ("signup_date", "register_time", "registration_time"),
    },
}


@dataclass(frozen=True)
class Header:
    names: list[str]
    types: list[str]

    def index(self, name: str) -> int:
        return self.names.index(name)


def parse_header(text: str) -> Header | None:
    """Typed RecBole header, or None when any field lacks a ``name:type``."""
    fields = text.lstrip("\ufeff").rstrip("\r\n").split("\t")
    names, types = [], []
    for f in fields:
        m = _FIELD.fullmatch(f.strip())
        if m is None:
            return None
        names.append(m.group(1))
        types.append(m.group(2))
    return Header(names, types) if names else None


def _resolve(header: Header, target: str, options: ReadOptions) -> dict[str, int]:
    """canonical role -> column index, explicit ``--map`` first."""
    lower = {n.lower(): i for i, n in enumerate(header.names)}
    out: dict[str, int] = {}
    for canon, col in options.mapping.items():
        key = col.split(":", 1)[0].lower()
        if key not in lower:
            raise FormatError(
                f"--map {canon}={col}: no column {col!r} (columns: {', '.join(header.names)})"
            )
        out[canon] = lower[key]
    for role, names in _ROLES[target].items():
        if role in out:
            continue
        for n in names:
            if n in lower and lower[n] not in out.values():
                out[role] = lower[n]
                break
    return out


def _typed(value: str, kind: str) -> object:
    """A RecBole value as JSON-able Python: float, list of floats/tokens, or the token."""
    if kind == "float":
        f = parse_number(value)
        return f if f is not None else text_or_none(value)
    if kind == "float_seq":
        return [parse_number(v) for v in value.split()]
    if kind == "token_seq":
        return value.split()
    return text_or_none(value)


def _category(value: str, kind: str) -> str | None:
    if kind != "token_seq":
        return text_or_none(value)
    if "," in value:  # Amazon-style "'Beauty', 'Skin Care', 'Face'" -> a path
        levels = [p.strip().strip("[]'\" ") for p in value.split(",")]
        return " > ".join(p for p in levels if p) or None
    return "|".join(value.split()) or None


class RecBoleAtomic:
    name = "recbole"
    description = "RecBole atomic files (.inter, .item, .user) with typed headers"
    priority = 20

    def sniff(self, path: Path, head: bytes) -> bool:
        target = _SUFFIX_TARGET.get(Path(base_name(path)).suffix)
        first = head_lines(head, limit=1)
        if target is None or not first:
            return False
        header = parse_header(first[0])
        return header is not None and "item_id_list" not in header.names

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        first = head_lines(head, limit=1)
        header = parse_header(first[0]) if first else None
        if header is None:
            raise FormatError(
                f"{path}: no RecBole header (expected tab-separated name:type fields, "
                "e.g. user_id:token)"
            )
        if "item_id_list" in header.names:
            raise FormatError(
                f"{path}: a sequence split file (item_id_list column); read it with --format unisrec"
            )
        suffix = Path(base_name(path)).suffix
        target = options.target or _SUFFIX_TARGET.get(suffix)
        if target not in ("events", "items", "users"):
            raise FormatError(
                f"{path}: cannot tell the RecBole file kind from {suffix!r} "
                "(expected .inter, .item or .user, or pass --target)"
            )
        cols = _resolve(header, target, options)
        notes: list[str] = []
        if target == "events":
            if "user_id" not in cols and "session_id" not in cols:
                raise FormatError(f"{path}: no user_id or session_id column in the RecBole header")
            if "item_id" not in cols:
                raise FormatError(f"{path}: no item_id column in the RecBole header")
            rows = self._events(path, header, cols, options, notes)
            return [
                StagedSource(
                    "events",
                    batches=batched("events", rows),
                    rating_range=(RATING_MIN, RATING_MAX),
                    notes=notes,
                )
            ]
        key = "item_id" if target == "items" else "user_id"
        if key not in cols:
            raise FormatError(f"{path}: no {key} column in the RecBole header")
        make = self._item if target == "items" else self._user
        return [
            StagedSource(
                target, batches=batched(target, self._rows(path, header, cols, target, make))
            )
        ]

    # -- shared ---------------------------------------------------------------------------
    @staticmethod
    def _lines(path: Path, header: Header, target: str) -> Iterator[tuple[Line, list[str] | None]]:
        """(line, fields) for each data line; fields None after an error row was yielded."""
        width = len(header.names)
        for ln in iter_lines(path):
            if ln.number == 1 or not ln.text.strip():
                continue
            fields = ln.text.split("\t") if ln.error is None else None
            yield ln, fields if fields is not None and len(fields) == width else None

    @staticmethod
    def _bad(ln: Line, target: str, width: int) -> dict[str, object]:
        if ln.error is not None:
            return error_row(target, ln.number, ln.text, ln.error)
        got = len(ln.text.split("\t"))
        return error_row(
            target, ln.number, ln.text, f"expected {width} tab-separated fields, got {got}"
        )

    def _rows(
        self,
        path: Path,
        header: Header,
        cols: dict[str, int],
        target: str,
        make: Callable[[Header, dict[str, int], list[str]], dict[str, object]],
    ) -> Iterator[dict[str, object]]:
        for ln, fields in self._lines(path, header, target):
            if fields is None:
                yield self._bad(ln, target, len(header.names))
            else:
                row = make(header, cols, fields)
                row["line"] = ln.number
                row["raw"] = clip(ln.text)
                yield row

    @staticmethod
    def _extra(header: Header, cols: dict[str, int], fields: list[str]) -> dict[str, object]:
        used = set(cols.values())
        return {
            n: _typed(fields[i], header.types[i])
            for i, n in enumerate(header.names)
            if i not in used
        }

    # -- files ----------------------------------------------------------------------------
    def _events(
        self,
        path: Path,
        header: Header,
        cols: dict[str, int],
        options: ReadOptions,
        notes: list[str],
    ) -> Iterator[dict[str, object]]:
        ignored = [n for i, n in enumerate(header.names) if i not in cols.values()]
        if ignored:
            notes.append(f"columns not stored (events have no attributes): {', '.join(ignored)}")
        default_type = options.defaults.get("event_type") or (
            "rate" if "rating" in cols else "view"
        )
        ordinal = "timestamp" not in cols
        if ordinal:
            notes.append("no timestamp column: each user's rows keep file order as ordinal times")
        seen: dict[str, int] = {}
        width = len(header.names)

        def get(f: list[str], role: str) -> str | None:
            return f[cols[role]] if role in cols else None

        for ln, f in self._lines(path, header, "events"):
            if f is None:
                yield self._bad(ln, "events", width)
                continue
            row = empty_row("events")
            user = text_or_none(get(f, "user_id"))
            session = text_or_none(get(f, "session_id"))
            if user is None and session is not None:
                user = f"anon:{session}"
            et = text_or_none(get(f, "event_type")) or default_type
            rating = get(f, "rating")
            if et.lower() in ("rate", "rating", "review"):
                row["value"] = parse_number(rating)
                row["value_raw"] = raw_text(rating)
            if ordinal:
                k = seen.get(user or "", 0)
                seen[user or ""] = k + 1
                row["timestamp"] = ordinal_time(k)
                row["ts_ordinal"] = True
            else:
                ts = get(f, "timestamp")
                row["timestamp"] = parse_timestamp(ts)
                row["timestamp_raw"] = raw_text(ts)
                row["ts_ordinal"] = False
            row.update(
                user_id=user,
                item_id=text_or_none(get(f, "item_id")),
                event_type=et,
                session_id=session,
                query=text_or_none(get(f, "query")),
                line=ln.number,
                raw=clip(ln.text),
            )
            yield row

    def _item(self, header: Header, cols: dict[str, int], f: list[str]) -> dict[str, object]:
        row = empty_row("items")

        def get(role: str) -> str | None:
            return f[cols[role]] if role in cols else None

        row["item_id"] = text_or_none(get("item_id"))
        for role in ("title", "description", "brand", "image"):
            row[role] = text_or_none(get(role))
        if "category" in cols:
            row["category"] = _category(f[cols["category"]], header.types[cols["category"]])
        price = get("price")
        row["price"], currency = parse_price(price)
        row["price_raw"] = raw_text(price)
        row["currency"] = currency
        row["attributes"] = to_json(self._extra(header, cols, f))
        return row

    def _user(self, header: Header, cols: dict[str, int], f: list[str]) -> dict[str, object]:
        row = empty_row("users")

        def get(role: str) -> str | None:
            return f[cols[role]] if role in cols else None

        age = get("age")
        extra = self._extra(header, cols, f)
        if age is not None:
            extra["age"] = parse_int(age) if parse_int(age) is not None else text_or_none(age)
        row.update(
            user_id=text_or_none(get("user_id")),
            age_band=age_band(age),
            gender=text_or_none(get("gender")),
            region=text_or_none(get("region")),
            signup_date=parse_timestamp(get("signup_date")),
            attributes=to_json(extra),
        )
        return row


register(RecBoleAtomic())

__all__ = ["Header", "RecBoleAtomic", "parse_header"]
