"""Amazon product reviews and product metadata (McAuley lab dumps), JSON lines, plain or gzipped.

Understands three generations of the dumps, one record per line:

- 2014 (``reviews_*.json.gz`` / ``meta_*.json.gz``): often "loose JSON", i.e. Python dict reprs
  with single quotes, read with :func:`ast.literal_eval`; ``helpful: [up, total]``,
  ``categories`` as a list of paths, ``imUrl``, ``related``, ``salesRank``.
- 2018 (``*_5.json.gz`` / ``meta_*.json.gz``): strict JSON; ``vote: "1,234"``, ``category`` as
  one path, ``price: "$25.00"`` (or empty, or scraped page junk), HTML in descriptions.
- 2023 (``*.jsonl``): ``user_id``/``parent_asin``/``rating``/``timestamp`` in milliseconds;
  metadata keyed by ``parent_asin`` with ``images`` as objects.

Reviews land in ``reviews`` (and, via ``reviews_as_events``, one ``review`` event each);
metadata lands in ``items``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from shopsight.data.formats import ReadOptions, register
from shopsight.data.formats._util import (
    check_text_file,
    clip,
    error_row,
    head_lines,
    iter_lines,
    parse_bool,
    parse_int,
    parse_number,
    parse_price,
    parse_record,
    parse_timestamp,
    raw_text,
    strip_html,
    text_or_none,
    to_json,
)
from shopsight.data.staging import FormatError, StagedSource, batched, empty_row

_KEY = r"""["']{}["']\s*:"""
_REVIEWER = re.compile(_KEY.format("reviewerID") + "|" + _KEY.format("user_id"))
_ITEM = re.compile(_KEY.format("asin") + "|" + _KEY.format("parent_asin"))
_META_HINTS = re.compile(
    "|".join(
        _KEY.format(k)
        for k in (
            "title",
            "categories",
            "category",
            "main_cat",
            "main_category",
            "also_buy",
            "related",
            "imUrl",
            "salesRank",
            "description",
            "brand",
        )
    )
)
_REVIEW_DATE_FORMATS = ("%m %d, %Y",)  # 2014/2018 reviewTime: "09 13, 2009"
_META_DATE_FORMATS = ("%B %d, %Y", "%b %d, %Y")  # "June 3, 2014"


def _first_record_text(head: bytes) -> str:
    lines = head_lines(head, limit=1)
    return lines[0].lstrip() if lines else ""


def _records(path: Path) -> Iterator[tuple[int, str, dict[str, object] | None, str | None]]:
    """(line, text, record or None, error) for each non-blank line; truncation becomes an error."""
    for ln in iter_lines(path):
        if ln.error is not None:
            yield ln.number, ln.text, None, ln.error
            continue
        if not ln.text.strip():
            continue
        obj, err = parse_record(ln.text)
        yield ln.number, ln.text, obj, err


def _check_records(
    path: Path, head: bytes, need: str, what: str, unwanted: str | None = None
) -> None:
    """FormatError unless some record among the first lines has a key matching ``need`` (and,
    when ``unwanted`` is given, not every record has a key matching it)."""
    parsed = [parse_record(t)[0] for t in head_lines(head, limit=20)]
    objs = [o for o in parsed if o is not None]
    if not objs:
        raise FormatError(f"{path}: no JSON records in the first lines, expected {what}")

    def has(o: dict[str, object], pattern: str) -> bool:
        return any(re.fullmatch(pattern, k) for k in o)

    if not any(has(o, need) for o in objs) or (
        unwanted is not None and all(has(o, unwanted) for o in objs)
    ):
        keys = ", ".join(sorted(objs[0])[:8])
        raise FormatError(f"{path}: records have keys {keys}..., expected {what}")


# --------------------------------------------------------------------------- reviews


def review_row(obj: dict[str, object], line: int, text: str) -> dict[str, object]:
    """Staging ``reviews`` row from one review record of any dump generation."""
    row = empty_row("reviews")
    row["user_id"] = text_or_none(obj.get("reviewerID", obj.get("user_id")))
    # 2023 metadata is keyed by parent_asin, so reviews must point at it to join.
    row["item_id"] = text_or_none(obj.get("parent_asin") or obj.get("asin"))
    rating = obj.get("overall", obj.get("rating"))
    row["rating"] = parse_number(rating)
    row["rating_raw"] = raw_text(rating)
    row["summary"] = strip_html(obj.get("summary", obj.get("title")))
    row["text"] = strip_html(obj.get("reviewText", obj.get("text")))
    ts = obj.get("unixReviewTime", obj.get("timestamp"))
    if ts is None or str(ts).strip() == "":
        ts = obj.get("reviewTime")
    row["timestamp"] = parse_timestamp(ts, _REVIEW_DATE_FORMATS)
    row["timestamp_raw"] = raw_text(ts)
    helpful = obj.get("helpful")
    if "vote" in obj:
        row["helpful_votes"] = parse_int(obj["vote"])
    elif "helpful_vote" in obj:
        row["helpful_votes"] = parse_int(obj["helpful_vote"])
    elif isinstance(helpful, list | tuple) and helpful:
        row["helpful_votes"] = parse_int(helpful[0])
    verified = obj.get("verified", obj.get("verified_purchase"))
    row["verified"] = parse_bool(verified) if verified is not None else None
    row["line"] = line
    row["raw"] = clip(text)
    return row


class AmazonReviews:
    name = "amazon-reviews"
    description = "Amazon review dumps (2014 loose JSON, 2018, 2023), JSON lines, optionally .gz"
    priority = 10

    def sniff(self, path: Path, head: bytes) -> bool:
        first = _first_record_text(head)
        return (
            first.startswith("{")
            and bool(_REVIEWER.search(first))
            and bool(_ITEM.search(first))
            and not path.name.lower().startswith("meta")
        )

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        _check_records(path, head, "reviewerID|user_id", "Amazon reviews (reviewerID, asin, ...)")
        return [
            StagedSource(
                "reviews",
                batches=batched("reviews", self._rows(path)),
                rating_range=(1.0, 5.0),
                reviews_as_events=True,
            )
        ]

    def _rows(self, path: Path) -> Iterator[dict[str, object]]:
        for line, text, obj, err in _records(path):
            if obj is None:
                yield error_row("reviews", line, text, err or "unreadable record")
            else:
                yield review_row(obj, line, text)


# --------------------------------------------------------------------------- metadata


_MAX_LEVEL = 60


def _looks_like_sentence(level: str) -> bool:
    """Category labels are short noun phrases; feature bullets scraped into the list are not."""
    return len(level) > _MAX_LEVEL or level.endswith((".", "!")) or ". " in level


def _category_path(value: object) -> tuple[str | None, list[list[str]], list[str]]:
    """(" > " path, every path, dropped sentences) from a 2018/2023 flat list or 2014 list of
    lists.

    The 2018 dumps repeat levels ("Gift Cards", "Gift Cards") and append feature bullets to
    the category list ("No expiration, no fees."); a repeated level is dropped and the path is
    cut at the first sentence-like level, which is returned so it can be kept elsewhere.
    """
    if not isinstance(value, list | tuple) or not value:
        return None, [], []
    paths_in = [value] if not isinstance(value[0], list | tuple) else list(value)
    paths: list[list[str]] = []
    dropped: list[str] = []
    for p in paths_in:
        levels: list[str] = []
        for level in p if isinstance(p, list | tuple) else [p]:
            s = strip_html(level)
            if not s:
                continue
            s = s.replace("\n", " ")
            if dropped or _looks_like_sentence(s):
                dropped.append(s)
            elif not levels or levels[-1] != s:
                levels.append(s)
        if levels:
            paths.append(levels)
    return (" > ".join(paths[0]) if paths else None), paths, dropped


def _image_urls(obj: dict[str, object]) -> list[str]:
    urls: list[str] = []
    for key in ("imageURLHighRes", "image", "images", "imUrl"):
        v = obj.get(key)
        entries = v if isinstance(v, list | tuple) else [v]
        for e in entries:
            if isinstance(e, dict):  # 2023: {"hi_res": ..., "large": ..., "thumb": ...}
                e = e.get("hi_res") or e.get("large") or e.get("thumb")
            s = text_or_none(e)
            if s and s not in urls:
                urls.append(s)
    return urls


def _details(value: object) -> dict[str, object] | None:
    """2018 ``details`` keys look like ``"\\n    Product Dimensions: \\n    "``: tidy them."""
    if not isinstance(value, dict):
        return None
    out: dict[str, object] = {}
    for k, v in value.items():
        key = " ".join(str(k).split()).rstrip(":").strip()
        if key and v not in (None, ""):
            out[key] = strip_html(v) if isinstance(v, str) else v
    return out or None


def _joined_text(value: object) -> str | None:
    if isinstance(value, list | tuple):
        parts = [strip_html(v) for v in value]
        return "\n".join(p for p in parts if p) or None
    return strip_html(value)


def meta_row(
    obj: dict[str, object], line: int, text: str, notes: dict[str, int]
) -> dict[str, object]:
    """Staging ``items`` row from one metadata record of any dump generation."""
    row = empty_row("items")
    row["item_id"] = text_or_none(obj.get("asin") or obj.get("parent_asin"))
    title = strip_html(obj.get("title"))
    row["title"] = title.replace("\n", " ") if title else None
    row["description"] = _joined_text(obj.get("description"))
    brand = strip_html(obj.get("brand") or obj.get("store"))
    row["brand"] = brand.replace("\n", " ") if brand else None
    cats = obj.get("category") or obj.get("categories")
    row["category"], paths, dropped = _category_path(cats)

    attrs: dict[str, object] = {"category_extra": dropped or None}
    if dropped:
        notes["category_sentences"] = notes.get("category_sentences", 0) + 1
    price_value = obj.get("price")
    price_text = price_value if isinstance(price_value, str) else None
    if price_text is not None and re.search(r"[<>{}]", price_text):
        # 2018 dumps hold scraped page fragments (CSS/HTML) in some price fields: not a price
        # at all, so no price rather than a quarantined product.
        notes["price_markup"] = notes.get("price_markup", 0) + 1
        attrs["price_unparsed"] = clip(price_text)[:200]
    else:
        price, currency = parse_price(price_value)
        row["price"] = price
        row["price_raw"] = raw_text(price_value)
        if price is not None:
            row["currency"] = currency or "USD"  # the dumps are from amazon.com
            if isinstance(price_value, str) and re.search(r"\d\s*[-–]\s*\$?\d", price_value):
                attrs["price_range"] = price_value.strip()

    images = _image_urls(obj)
    row["image"] = images[0] if images else None
    details = _details(obj.get("details"))
    dated = obj.get("date") or (details or {}).get("Date First Available")
    if isinstance(dated, str) and "<" not in dated:
        row["first_seen"] = parse_timestamp(dated, _META_DATE_FORMATS)
    related = obj.get("related") if isinstance(obj.get("related"), dict) else {}
    assert isinstance(related, dict)
    attrs.update(
        {
            "images": images if len(images) > 1 else None,
            "categories": paths if len(paths) > 1 else None,
            "also_buy": obj.get("also_buy") or related.get("also_bought"),
            "also_view": obj.get("also_view") or related.get("also_viewed"),
            "bought_together": obj.get("bought_together") or related.get("bought_together"),
            "buy_after_viewing": related.get("buy_after_viewing"),
            "rank": obj.get("rank") or obj.get("salesRank"),
            "feature": obj.get("feature") or obj.get("features"),
            "main_category": obj.get("main_cat") or obj.get("main_category"),
            "details": details,
            "tech1": strip_html(obj.get("tech1")),
            "tech2": strip_html(obj.get("tech2")),
            "average_rating": obj.get("average_rating"),
            "rating_number": obj.get("rating_number"),
        }
    )
    row["attributes"] = to_json(attrs)
    row["line"] = line
    row["raw"] = clip(text)
    return row


class AmazonMeta:
    name = "amazon-meta"
    description = "Amazon product metadata dumps (meta_*.json[.gz], 2014/2018/2023)"
    priority = 11

    def sniff(self, path: Path, head: bytes) -> bool:
        first = _first_record_text(head)
        if not first.startswith("{") or _REVIEWER.search(first) or not _ITEM.search(first):
            return False
        return path.name.lower().startswith("meta") or bool(_META_HINTS.search(first))

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        _check_records(
            path,
            head,
            "asin|parent_asin",
            "Amazon product metadata (asin, title, ...)",
            unwanted="reviewerID|user_id",
        )
        notes: list[str] = []
        return [
            StagedSource("items", batches=batched("items", self._rows(path, notes)), notes=notes)
        ]

    def _rows(self, path: Path, notes: list[str]) -> Iterator[dict[str, object]]:
        counts: dict[str, int] = {}
        for line, text, obj, err in _records(path):
            if obj is None:
                yield error_row("items", line, text, err or "unreadable record")
            else:
                yield meta_row(obj, line, text, counts)
        if counts.get("price_markup"):
            notes.append(
                f"{counts['price_markup']} price field(s) held scraped HTML/CSS, not a price: "
                "price left empty (text kept in attributes.price_unparsed)"
            )
        if counts.get("category_sentences"):
            notes.append(
                f"{counts['category_sentences']} category list(s) ended in feature sentences: "
                "path cut before them (sentences kept in attributes.category_extra)"
            )


register(AmazonReviews())
register(AmazonMeta())

__all__ = ["AmazonMeta", "AmazonReviews", "meta_row", "review_row"]
