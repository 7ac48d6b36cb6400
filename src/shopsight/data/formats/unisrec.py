"""UniSRec / RecBole sequence-split layout: ``<name>.text``, ``<name>.{train,valid,test}.inter``
and the id maps ``<name>.item2index`` / ``<name>.user2index``.

``.text`` (``item_id:token  text:token_seq``) -> ``items``. UniSRec writes each item's text as
``"{title}. {category levels joined by spaces}. {brand}. "``; when a text has exactly those three
parts, title and brand are split out (``attributes.category_text`` keeps the flattened levels,
which are not a path any more); otherwise the whole text is the title. ``description`` always
holds the full text, the input UniSRec itself encodes.

``.inter`` files (``user_id:token  item_id_list:token_seq  item_id:token``) hold one row per
prediction target: a user's history (the last <= 50 items) and the next item. Train has a row
for every target but the last two, valid the second last, test the last, so the histories
repeat each other. Each user's full sequence is rebuilt once from all three files: start at the
row with the shortest history, then repeatedly take the row whose history is the tail of the
sequence built so far (this also recovers users longer than the 50-item window, whose histories
are cut). Every position is *owned* by exactly one row: a target by its own row, the leading
history items by the first row. Staging one file emits only the positions its rows own, so
ingesting all three files gives exactly one event per (user, position) and re-ingesting any
file adds nothing. Rows that do not continue their user's sequence are quarantined.

Events are ``purchase`` (these are Amazon review histories; ``--default event_type=...``
overrides) with ordinal times 2000-01-01 + position seconds (``ts_ordinal``). Index tokens are
mapped back to the original user and item ids with the ``.user2index``/``.item2index`` files
when present, so events join the ``.text`` items (keyed by ASIN).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shopsight.data.formats import ReadOptions, register
from shopsight.data.formats._util import (
    Payload,
    base_name,
    check_text_file,
    clip,
    error_row,
    event_batches,
    head_lines,
    iter_lines,
    text_or_none,
    to_json,
)
from shopsight.data.formats.recbole import Header, parse_header
from shopsight.data.formats.sequences import DEFAULT_EVENT_TYPE
from shopsight.data.staging import FormatError, StagedSource, batched, empty_row

SPLITS: tuple[str, ...] = ("train", "valid", "test")
_MAPS = (".item2index", ".user2index")


@dataclass(frozen=True)
class Layout:
    """Where a file sits in a UniSRec layout: the shared stem and its own split (if any)."""

    folder: Path
    stem: str
    split: str | None

    def inter(self, split: str) -> Path:
        return self.folder / f"{self.stem}.{split}.inter"

    def id_map(self, kind: str) -> Path:
        return self.folder / f"{self.stem}.{kind}2index"


def layout_of(path: Path) -> Layout:
    name = path.name
    for split in SPLITS:
        suffix = f".{split}.inter"
        if name.endswith(suffix):
            return Layout(path.parent, name[: -len(suffix)], split)
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return Layout(path.parent, stem, None)


def read_id_map(path: Path) -> dict[str, str]:
    """index token -> original id, from ``original<TAB>index`` lines; empty when absent."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for ln in iter_lines(path):
        parts = ln.text.split("\t")
        if ln.error is None and len(parts) == 2 and parts[0] and parts[1].strip():
            out[parts[1].strip()] = parts[0]
    return out


def split_text(text: str) -> tuple[str | None, str | None, str | None]:
    """(title, flattened categories, brand) from a UniSRec item text; see the module doc."""
    t = text.strip()
    parts = t.split(". ")
    if len(parts) == 3 and t.endswith("."):
        title, cats, brand = parts[0].strip(), parts[1].strip(), parts[2][:-1].strip()
        if title and cats and brand:
            return title, cats, brand
    return (t.removesuffix(".").strip() or None), None, None


# --------------------------------------------------------------------------- sequences


@dataclass
class _Row:
    rank: int  # split order: train 0, valid 1, test 2
    line: int
    hist_len: int
    hist_key: int  # hash of the history tuple: the full history is only kept for start rows
    target: str


@dataclass
class _User:
    rows: list[_Row] = field(default_factory=list)
    start: _Row | None = None
    start_hist: list[str] = field(default_factory=list)


SEQ_COLUMNS = ("user_id", "item_id_list", "item_id")


def _columns(header: Header | None, path: Path) -> tuple[int, int, int]:
    if header is None or any(n not in header.names for n in SEQ_COLUMNS):
        raise FormatError(
            f"{path}: expected a header user_id:token<TAB>item_id_list:token_seq<TAB>item_id:token"
        )
    return header.index("user_id"), header.index("item_id_list"), header.index("item_id")


def _scan(path: Path, rank: int, users: dict[str, _User]) -> int:
    """Add one split file's rows to ``users``; returns the longest history seen."""
    cols: tuple[int, int, int] | None = None
    width = 0
    longest = 0
    for ln in iter_lines(path):
        if ln.error is not None:
            break
        if cols is None:
            header = parse_header(ln.text)
            cols = _columns(header, path)
            width = len(header.names) if header else 0
            continue
        f = ln.text.split("\t")
        if len(f) != width:
            continue  # reported as an error row when its own file is staged
        user, hist, target = f[cols[0]].strip(), f[cols[1]].split(), f[cols[2]].strip()
        if not user or not target:
            continue
        row = _Row(rank, ln.number, len(hist), hash(tuple(hist)), target)
        u = users.setdefault(user, _User())
        u.rows.append(row)
        if u.start is None or (row.hist_len, row.rank, row.line) < (
            u.start.hist_len,
            u.start.rank,
            u.start.line,
        ):
            u.start, u.start_hist = row, hist
        longest = max(longest, len(hist))
    return longest


def _chain(u: _User, window: int) -> tuple[list[tuple[_Row, int, str]], list[_Row]]:
    """(row, position, item) for every position of the user's sequence, and unplaced rows."""
    assert u.start is not None
    by_key: dict[tuple[int, int], list[_Row]] = defaultdict(list)
    for r in sorted(u.rows, key=lambda r: (r.rank, r.line)):
        if r is not u.start:
            by_key[(r.hist_len, r.hist_key)].append(r)
    seq = [*u.start_hist, u.start.target]
    owned = [(u.start, k, item) for k, item in enumerate(seq)]
    left = len(u.rows) - 1
    while left:
        h = min(len(seq), window)
        bucket = by_key.get((h, hash(tuple(seq[-h:]))))
        if not bucket:
            break
        r = bucket.pop(0)
        owned.append((r, len(seq), r.target))
        seq.append(r.target)
        left -= 1
    unplaced = [r for rows in by_key.values() for r in rows]
    return owned, unplaced


def sequence_plan(
    path: Path, layout: Layout
) -> tuple[dict[int, list[tuple[str, int, str]]], dict[int, str], int]:
    """For the rows of ``path``: line -> [(user, position, item)], line -> error, #users."""
    users: dict[str, _User] = {}
    window = 0
    for rank, split in enumerate(SPLITS):
        p = path if split == layout.split else layout.inter(split)
        if p.is_file():
            window = max(window, _scan(p, rank, users))
    own_rank = SPLITS.index(layout.split) if layout.split in SPLITS else -1
    plan: dict[int, list[tuple[str, int, str]]] = defaultdict(list)
    errors: dict[int, str] = {}
    for user, u in users.items():
        owned, unplaced = _chain(u, window)
        for r, k, item in owned:
            if r.rank == own_rank:
                plan[r.line].append((user, k, item))
        for r in unplaced:
            if r.rank == own_rank:
                errors[r.line] = (
                    f"sequence: history does not continue user {user}'s sequence rebuilt from "
                    f"the {'/'.join(SPLITS)} files"
                )
    return plan, errors, len(users)


# --------------------------------------------------------------------------- format


class UniSRecLayout:
    name = "unisrec"
    description = "UniSRec/RecBole split layout: <name>.text items, <name>.train/valid/test.inter"
    priority = 15

    def sniff(self, path: Path, head: bytes) -> bool:
        n = base_name(path)
        if n.endswith(_MAPS):
            return True
        first = head_lines(head, limit=1)
        header = parse_header(first[0]) if first else None
        if header is None:
            return False
        if "item_id_list" in header.names:
            return True
        return n.endswith(".text") and {"item_id", "text"} <= set(header.names)

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        if base_name(path).endswith(_MAPS):
            raise FormatError(
                f"{path}: a UniSRec id map, read with the .inter files beside it; "
                "it holds no rows of its own"
            )
        first = head_lines(head, limit=1)
        header = parse_header(first[0]) if first else None
        if header is not None and {"item_id", "text"} <= set(header.names):
            return [StagedSource("items", batches=batched("items", self._items(path, header)))]
        _columns(header, path)
        layout = layout_of(path)
        event_type = options.defaults.get("event_type", DEFAULT_EVENT_TYPE)
        notes: list[str] = [f"event_type={event_type}"]
        batches = event_batches(self._events(path, layout, notes), event_type)
        return [StagedSource("events", batches=batches, notes=notes)]

    @staticmethod
    def _items(path: Path, header: Header) -> Iterator[dict[str, object]]:
        i_id, i_text = header.index("item_id"), header.index("text")
        width = len(header.names)
        for ln in iter_lines(path):
            if ln.number == 1 or (ln.error is None and not ln.text.strip()):
                continue
            f = ln.text.split("\t")
            if ln.error is not None or len(f) != width:
                reason = ln.error or f"expected {width} tab-separated fields, got {len(f)}"
                yield error_row("items", ln.number, ln.text, reason)
                continue
            text = f[i_text]
            title, cats, brand = split_text(text)
            row = empty_row("items")
            row.update(
                item_id=text_or_none(f[i_id]),
                title=title,
                description=text_or_none(text),
                brand=brand,
                attributes=to_json({"category_text": cats}),
                line=ln.number,
                raw=clip(ln.text),
            )
            yield row

    @staticmethod
    def _events(path: Path, layout: Layout, notes: list[str]) -> Iterator[tuple[int, str, Payload]]:
        plan, errors, n_users = sequence_plan(path, layout)
        present = [s for s in SPLITS if s == layout.split or layout.inter(s).is_file()]
        user_map = read_id_map(layout.id_map("user"))
        item_map = read_id_map(layout.id_map("item"))
        notes.append(
            f"sequences of {n_users} users rebuilt from {'/'.join(present)}; "
            f"ids {'mapped through the 2index files' if item_map else 'kept as index tokens'}; "
            "ordinal timestamps"
        )
        width = len(SEQ_COLUMNS)
        for ln in iter_lines(path):
            if ln.error is not None:
                yield ln.number, ln.text, ln.error
                continue
            if ln.number == 1 or not ln.text.strip():
                continue
            if ln.number in errors:
                yield ln.number, ln.text, errors[ln.number]
                continue
            if ln.number not in plan:
                got = len(ln.text.split("\t"))
                yield (
                    ln.number,
                    ln.text,
                    f"expected {width} tab-separated fields, got {got}"
                    if got != width
                    else "sequence: user_id or target item_id missing",
                )
                continue
            for user, k, item in plan[ln.number]:
                yield ln.number, ln.text, (user_map.get(user, user), item_map.get(item, item), k)


register(UniSRecLayout())

__all__ = ["Layout", "UniSRecLayout", "layout_of", "read_id_map", "sequence_plan", "split_text"]
