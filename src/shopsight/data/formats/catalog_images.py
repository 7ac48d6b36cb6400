"""A product catalogue CSV whose rows point at image files ``images/<id>.jpg`` beside it.

The layout of the "Fashion Product Images" set (``styles.csv`` + ``images/``): ``id, gender,
masterCategory, subCategory, articleType, baseColour, season, year, usage, productDisplayName``.

- ``title`` = ``productDisplayName`` (or ``title``/``name``), ``category`` = the hierarchy
  columns present, joined as a path (``Apparel > Topwear > Tshirts``), ``brand``/``price``/
  ``description`` when such columns exist.
- ``attributes`` = every other column (``gender``, ``baseColour``, ``season``, ``year`` as a
  number, ``usage``) plus ``articleType``, the finest category level, for direct filtering.
- ``image`` = absolute path of ``images/<id>.<jpg|jpeg|png|webp>`` when the file exists; else
  NULL and ``attributes.image_missing = true``.

The original ``styles.csv`` has unquoted commas inside some display names, so those lines have
more fields than the header: the overflow belongs to the last (free-text) column and is joined
back into it with commas; the count is reported in the source notes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from shopsight.data.formats import ReadOptions, register
from shopsight.data.formats._util import (
    base_name,
    check_text_file,
    clip,
    error_row,
    head_lines,
    iter_delimited,
    parse_int,
    parse_price,
    raw_text,
    text_or_none,
    to_json,
)
from shopsight.data.staging import FormatError, StagedSource, batched, empty_row

IMAGE_DIR = "images"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_ID = ("id", "item_id", "product_id", "sku")
_TITLE = ("productdisplayname", "title", "name", "product_name")
_HIERARCHY = ("mastercategory", "subcategory", "articletype")
_ROLES = {"brand": ("brand",), "price": ("price",), "description": ("description",)}
_FASHION_MARKERS = frozenset({"productdisplayname", "mastercategory"})
_IMAGE_COLUMNS = frozenset({"image", "image_path", "image_url", "img", "imurl"})


def _header(head: bytes) -> list[str] | None:
    first = head_lines(head, limit=1)
    if not first:
        return None
    return [h.strip().lstrip("\ufeff") for h in next(csv.reader(io.StringIO(first[0])))]


def _find(lower: list[str], names: tuple[str, ...]) -> int | None:
    for n in names:
        if n in lower:
            return lower.index(n)
    return None


class CatalogImages:
    name = "catalog-images"
    description = "catalogue CSV with an images/<id>.jpg folder beside it (fashion styles.csv)"
    priority = 20

    def sniff(self, path: Path, head: bytes) -> bool:
        if not base_name(path).endswith(".csv"):
            return False
        header = _header(head)
        if header is None:
            return False
        lower = [h.lower() for h in header]
        if _find(lower, _ID) is None:
            return False
        if set(lower) >= _FASHION_MARKERS:
            return True
        # Another catalogue: an id and a title column, no image column of its own, and an
        # images/ folder beside it holding a picture for the first row.
        if _find(lower, _TITLE) is None or set(lower) & _IMAGE_COLUMNS:
            return False
        rows = head_lines(head, limit=2)
        if len(rows) < 2:
            return False
        first = next(csv.reader(io.StringIO(rows[1])), [])
        id_col = _find(lower, _ID) or 0
        item = first[id_col].strip() if len(first) > id_col else ""
        folder = path.parent / IMAGE_DIR
        return bool(item) and any((folder / f"{item}{ext}").is_file() for ext in IMAGE_EXTENSIONS)

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        header = _header(head)
        lower = [h.lower() for h in header or []]
        id_col = _find(lower, _ID)
        if header is None or id_col is None:
            raise FormatError(
                f"{path}: expected a catalogue CSV header with an id column "
                "(id, gender, masterCategory, ..., productDisplayName)"
            )
        notes: list[str] = []
        rows = self._rows(path, header, id_col, notes)
        return [StagedSource("items", batches=batched("items", rows), notes=notes)]

    @staticmethod
    def _image_index(path: Path) -> tuple[Path, dict[str, str]]:
        """stem -> file name of every image beside the CSV (one directory listing, not a stat
        per row)."""
        folder = (path.parent / IMAGE_DIR).resolve()
        index: dict[str, str] = {}
        if folder.is_dir():
            rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
            found = [(e.suffix.lower(), e.stem, e.name) for e in folder.iterdir()]
            # When one id has several files, the earlier extension in IMAGE_EXTENSIONS wins.
            for _, stem, name in sorted(
                (x for x in found if x[0] in rank), key=lambda x: rank[x[0]]
            ):
                index.setdefault(stem, name)
        return folder, index

    def _rows(
        self, path: Path, header: list[str], id_col: int, notes: list[str]
    ) -> Iterator[dict[str, object]]:
        lower = [h.lower() for h in header]
        width = len(header)
        title_col = _find(lower, _TITLE)
        hierarchy = [lower.index(h) for h in _HIERARCHY if h in lower]
        if not hierarchy and "category" in lower:
            hierarchy = [lower.index("category")]
        roles = {r: _find(lower, names) for r, names in _ROLES.items()}
        used = {id_col, title_col, *hierarchy, *roles.values()} - {None}
        attr_cols = [i for i in range(width) if i not in used]
        if "articletype" in lower:
            attr_cols.append(lower.index("articletype"))
        folder, images = self._image_index(path)
        overflow = missing = 0
        for rec in iter_delimited(path, ","):
            if rec.line == 1:
                continue
            f = rec.fields
            if f is None:
                yield error_row("items", rec.line, rec.raw, rec.error or "unreadable record")
                continue
            if len(f) > width:
                # Unquoted commas in the free-text last column: join the overflow back into it.
                f = [*f[: width - 1], ",".join(f[width - 1 :])]
                overflow += 1
            elif len(f) < width:
                reason = (
                    f"expected {width} comma-separated fields ({', '.join(header)}), got {len(f)}"
                )
                yield error_row("items", rec.line, rec.raw, reason)
                continue
            item = text_or_none(f[id_col])
            attrs: dict[str, object] = {}
            for i in attr_cols:
                v = text_or_none(f[i])
                year = parse_int(v) if lower[i] == "year" else None
                attrs[header[i]] = year if year is not None else v
            image = images.get(item) if item else None
            if image is None:
                attrs["image_missing"] = True
                missing += 1
            row = empty_row("items")
            levels = [text_or_none(f[i]) for i in hierarchy]
            price_col, brand_col, desc_col = roles["price"], roles["brand"], roles["description"]
            if price_col is not None:
                row["price"], row["currency"] = parse_price(f[price_col])
                row["price_raw"] = raw_text(f[price_col])
            row.update(
                item_id=item,
                title=text_or_none(f[title_col]) if title_col is not None else None,
                category=" > ".join(lv for lv in levels if lv) or None,
                brand=text_or_none(f[brand_col]) if brand_col is not None else None,
                description=text_or_none(f[desc_col]) if desc_col is not None else None,
                image=str(folder / image) if image else None,
                attributes=to_json(attrs),
                line=rec.line,
                raw=clip(rec.raw),
            )
            yield row
        if overflow:
            notes.append(
                f"{overflow} line(s) had unquoted commas in {header[-1]}: extra fields joined back"
            )
        if missing:
            notes.append(f"{missing} item(s) without an image file in {folder}")


register(CatalogImages())

__all__ = ["IMAGE_DIR", "CatalogImages"]
