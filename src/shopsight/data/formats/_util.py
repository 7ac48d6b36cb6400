"""Parsing helpers shared by the readers of the public dataset formats.

Everything here *parses*; nothing validates business rules (the engine does that in SQL for all
formats). A helper that cannot parse returns ``None`` and the reader keeps the raw text beside it.
"""

from __future__ import annotations

import ast
import csv
import gzip
import html
import json
import math
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from shopsight.data.staging import STAGING, FormatError, batch_from_rows, empty_row

EPOCH = datetime(1970, 1, 1)
# Base of ordinal timestamps: sources that only give an order (position k) get ORDINAL_BASE + k s.
ORDINAL_BASE = datetime(2000, 1, 1)
_CHUNK = 1 << 20
RAW_LIMIT = 2000  # quarantine keeps at most this many characters of a record


# --------------------------------------------------------------------------- lines and files


@dataclass(frozen=True)
class Line:
    """One line of a text file: 1-based ``number``, decoded ``text`` (no line break).

    ``error`` is set only on the extra entry that reports a broken (truncated or corrupt) gzip
    stream; its ``text`` is whatever partial line decompressed before the break.
    """

    number: int
    text: str
    error: str | None = None


def decode(raw: bytes, encoding: str = "utf-8") -> str:
    """Decode one line; bytes that are not valid in ``encoding`` fall back to Latin-1.

    MovieLens files are Latin-1 and some re-saved copies are UTF-8; Latin-1 never fails, so a
    line always decodes and an odd character never costs a record.
    """
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _chunks(path: Path) -> Iterator[tuple[bytes, str | None]]:
    """Decompressed (or plain) byte chunks; a final ``(b"", reason)`` when a gzip stream breaks."""
    with path.open("rb") as fh:
        first = fh.read(_CHUNK)
        if first[:2] != b"\x1f\x8b":
            chunk = first
            while chunk:
                yield chunk, None
                chunk = fh.read(_CHUNK)
            return
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = first
        while True:
            try:
                # Bounded output per call: a highly compressed chunk cannot blow up memory.
                out = d.decompress(data, 8 * _CHUNK)
            except zlib.error:
                yield b"", "corrupt gzip stream"
                return
            if out:
                yield out, None
            data = d.unconsumed_tail
            if d.eof:
                # Concatenated gzip members (what `cat a.gz b.gz` makes) are one valid stream.
                rest = d.unused_data or fh.read(_CHUNK)
                if not rest.strip(b"\x00"):
                    return
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = rest
            elif not data:
                data = fh.read(_CHUNK)
                if not data:
                    yield b"", "truncated gzip stream"
                    return


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[Line]:
    """Stream the lines of a plain or gzipped text file in bounded memory.

    A truncated or corrupt gzip yields every complete line that decompressed, then one
    :class:`Line` with ``error="truncated gzip stream after line N"`` (number N+1) holding the
    partial last line, so the reader can quarantine it instead of failing the file.
    """
    buf = b""
    n = 0
    for chunk, broken in _chunks(path):
        if broken is not None:
            yield Line(n + 1, decode(buf, encoding)[:RAW_LIMIT], f"{broken} after line {n}")
            return
        buf += chunk
        parts = buf.split(b"\n")
        buf = parts.pop()
        for raw in parts:
            n += 1
            yield Line(n, decode(raw.removesuffix(b"\r"), encoding))
    if buf:
        yield Line(n + 1, decode(buf.removesuffix(b"\r"), encoding))


_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13))


def read_head(path: Path, n: int = 65536) -> bytes:
    """First bytes of a file, decompressed when gzipped (a truncated gzip still gives a head)."""
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.is_dir():
        raise FormatError(f"{path}: is a directory, expected a file")
    with path.open("rb") as fh:
        raw = fh.read(n)
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                return gz.read(n)
        except (OSError, EOFError):
            # Truncated or corrupt stream: give what decompresses; the reader reports the rest.
            import zlib

            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                return d.decompress(raw, n)
            except zlib.error as exc:
                raise FormatError(f"{path}: corrupt gzip stream ({exc})") from exc
    return raw


def looks_binary(head: bytes) -> bool:
    """Text files have no NUL bytes and decode as UTF-8 (allowing a cut last character)."""
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4
    return False


def is_binary(head: bytes) -> bool:
    """Binary: NUL bytes, or many control bytes. Unlike a strict UTF-8 check this accepts the
    Latin-1 text of older datasets (MovieLens ``u.item``/``movies.dat``)."""
    if not looks_binary(head):
        return False
    if b"\x00" in head:
        return True
    return len(head.translate(None, _CONTROL)) < 0.95 * len(head)


def check_text_file(path: Path) -> bytes:
    """The file's (decompressed) head; FormatError when missing, a directory, or binary."""
    head = read_head(path)
    if is_binary(head):
        raise FormatError(f"{path}: binary data, not a text file")
    return head


def head_lines(head: bytes, limit: int = 50, encoding: str = "utf-8") -> list[str]:
    """Complete lines at the start of ``head`` (the last, possibly cut one is dropped when the
    head is a full read buffer), without empty lines."""
    parts = head.split(b"\n")
    if len(head) >= 65536 and len(parts) > 1:
        parts = parts[:-1]
    out = []
    for p in parts:
        s = decode(p.removesuffix(b"\r"), encoding)
        if s.strip():
            out.append(s)
        if len(out) >= limit:
            break
    return out


def base_name(path: Path) -> str:
    """Lower-cased file name without a trailing ``.gz``."""
    return path.name.lower().removesuffix(".gz")


def clip(text: str) -> str:
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "…"


def error_row(target: str, line: int, raw: str, error: str) -> dict[str, object]:
    """A staging row the engine quarantines as is, with ``error`` as the reason."""
    row = empty_row(target)
    row["line"] = line
    row["raw"] = clip(raw)
    row["error"] = error
    return row


# --------------------------------------------------------------------------- records


def parse_record(text: str) -> tuple[dict[str, object] | None, str | None]:
    """A JSON object from one line, or ``(None, reason)``.

    Falls back to :func:`ast.literal_eval` for the "loose JSON" of the 2014 Amazon dumps
    (Python dict reprs with single quotes, ``True``/``False``); ``literal_eval`` evaluates
    literals only, never code.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("{'") or "': " in text:
            try:
                obj = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return None, f"invalid JSON: {exc.msg} at column {exc.colno}"
        else:
            return None, f"invalid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, None


def to_json(obj: dict[str, object]) -> str | None:
    """Compact JSON object with empty values dropped; ``None`` when nothing is left."""
    kept = {k: v for k, v in obj.items() if v not in (None, "", [], {})}
    if not kept:
        return None
    return json.dumps(kept, ensure_ascii=False, sort_keys=True, default=str)


def text_or_none(value: object) -> str | None:
    """Stripped string, ``None`` for missing or blank values."""
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def raw_text(value: object) -> str | None:
    """The raw-text twin of a parsed field: ``None`` for missing/blank, else ``str(value)``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value)


# --------------------------------------------------------------------------- numbers


def parse_number(value: object) -> float | None:
    """A finite-or-not float from a number or numeric text; ``None`` when it is not one."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    s = str(value).strip()
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        return None


def parse_int(value: object) -> int | None:
    """An integer from ``12``, ``"12"``, ``"1,234"`` or ``12.0``; ``None`` otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = value.strip().replace(",", "")
    f = parse_number(value)
    if f is None or math.isnan(f) or math.isinf(f) or f != int(f):
        return None
    return int(f)


def parse_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower() if value is not None else ""
    if s in ("true", "t", "yes", "y", "1"):
        return True
    if s in ("false", "f", "no", "n", "0"):
        return False
    return None


_CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR"}
_CURRENCY_CODES = ("USD", "EUR", "GBP", "JPY", "INR", "CAD", "AUD", "CHF", "CNY", "SEK")
_AMOUNT = re.compile(r"^\d{1,3}(?:[,.' ]\d{3})*(?:[.,]\d+)?$|^\d+(?:[.,]\d+)?$")


def _amount(s: str) -> float | None:
    s = s.strip()
    if not _AMOUNT.match(s):
        return None
    last_dot, last_comma = s.rfind("."), s.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        dec = "." if last_dot > last_comma else ","
    elif last_comma >= 0:
        # "1,299" is a thousands separator; "12,50" is a decimal comma.
        dec = "," if len(s) - last_comma - 1 != 3 else ""
    elif last_dot >= 0:
        dec = "." if len(s) - last_dot - 1 != 3 or s.count(".") == 1 else ""
    else:
        dec = ""
    if dec:
        whole, frac = s.rsplit(dec, 1)
    else:
        whole, frac = s, ""
    whole = re.sub(r"[,.' ]", "", whole)
    return float(f"{whole}.{frac}" if frac else whole)


def parse_price(value: object) -> tuple[float | None, str | None]:
    """(amount, ISO currency or None) from ``12``, ``"$25.00"``, ``"$1,299.99"``, ``"EUR 9,50"``.

    A range like ``"$9.99 - $19.99"`` gives its lower bound (the "from" price a shop displays).
    Blank or unparseable text gives ``(None, None)``; the caller keeps the raw text.
    """
    if value is None or isinstance(value, bool):
        return None, None
    if isinstance(value, int | float):
        f = float(value)
        return (f, None) if math.isfinite(f) else (None, None)
    s = str(value).strip()
    if not s:
        return None, None
    currency = None
    for sym, code in _CURRENCY_SYMBOLS.items():
        if sym in s:
            currency = code
            s = s.replace(sym, "")
    for code in _CURRENCY_CODES:
        if re.search(rf"\b{code}\b", s, flags=re.IGNORECASE):
            currency = code
            s = re.sub(rf"\b{code}\b", "", s, flags=re.IGNORECASE)
    parts = re.split(r"(?<=\d)\s*[-–]\s*(?=\d)", s.strip())
    amounts = [_amount(p) for p in parts]
    if not amounts or any(a is None for a in amounts):
        return None, None
    return min(a for a in amounts if a is not None), currency


# --------------------------------------------------------------------------- text


class _TextExtractor(HTMLParser):
    """Visible text of an HTML fragment: tags dropped, block tags become line breaks."""

    _BLOCK = frozenset(
        {"br", "p", "div", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6"}
    )
    _SKIP = frozenset({"script", "style", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BREAKS = re.compile(r"\s*\n\s*")


def strip_html(value: object) -> str | None:
    """Plain text from a string that may hold HTML tags and entities; ``None`` when blank.

    Runs of spaces collapse to one; line breaks (from ``<br>``, ``<p>``, ``<li>``...) are kept
    as single newlines so paragraphs survive for text features.
    """
    if value is None:
        return None
    s = str(value)
    if "<" in s or "&" in s:
        parser = _TextExtractor()
        try:
            parser.feed(s)
            parser.close()
            s = "".join(parser.parts)
        except (AssertionError, ValueError):  # pathological markup: keep the entity-decoded text
            s = html.unescape(re.sub(r"<[^>]*>", " ", s))
    s = _SPACES.sub(" ", s)
    s = _BREAKS.sub("\n", s).strip()
    return s or None


# --------------------------------------------------------------------------- time


def from_epoch(value: object) -> datetime | None:
    """Naive-UTC datetime from epoch seconds; values >= 1e11 are read as milliseconds and
    >= 1e14 as microseconds (no real timestamp in seconds is that large)."""
    f = parse_number(value)
    if f is None or not math.isfinite(f):
        return None
    a = abs(f)
    micros = f if a >= 1e14 else f * 1_000 if a >= 1e11 else f * 1_000_000
    try:
        return EPOCH + timedelta(microseconds=round(micros))
    except OverflowError:
        return None


def parse_timestamp(value: object, formats: tuple[str, ...] = ()) -> datetime | None:
    """Epoch seconds/ms, ISO-8601 (an offset is converted to UTC), or one of ``formats``
    (``strptime`` patterns); naive UTC datetime or ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, int | float):
        return from_epoch(value)
    s = str(value).strip()
    if not s:
        return None
    if parse_number(s) is not None:
        return from_epoch(s)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        for fmt in formats:
            try:
                dt = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
        else:
            return None
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt


def ordinal_time(position: int) -> datetime:
    """Timestamp standing for the ``position``-th interaction of a sequence without times."""
    return ORDINAL_BASE + timedelta(seconds=position)


# --------------------------------------------------------------------------- people

_AGE_BANDS = (
    (18, "<18"),
    (25, "18-24"),
    (35, "25-34"),
    (45, "35-44"),
    (55, "45-54"),
    (65, "55-64"),
)


def age_band(age: object) -> str | None:
    """Ten-year marketing bands: ``<18``, ``18-24``, ``25-34``, ... ``55-64``, ``65+``."""
    a = parse_number(age)
    if a is None or not math.isfinite(a) or a < 0:
        return None
    for upper, label in _AGE_BANDS:
        if a < upper:
            return label
    return "65+"


# --------------------------------------------------------------------------- delimited text


@dataclass(frozen=True)
class Record:
    """One delimited record: first ``line`` number, parsed ``fields`` (``None`` on error), the
    ``raw`` text it came from, and ``error`` when it could not be parsed at all."""

    line: int
    fields: list[str] | None
    raw: str
    error: str | None = None


def iter_delimited(path: Path, delimiter: str, encoding: str = "utf-8") -> Iterator[Record]:
    """Stream CSV-style records (quotes honoured, a quoted field may span lines); blank lines
    are skipped and a truncated gzip ends with an error record, as :func:`iter_lines`."""
    texts: list[str] = []
    broken: list[Line] = []

    def feed() -> Iterator[str]:
        for ln in iter_lines(path, encoding):
            if ln.error is not None:
                broken.append(ln)
                return
            texts.append(ln.text)
            yield ln.text + "\n"  # csv needs the break to keep it inside a quoted field

    reader = csv.reader(feed(), delimiter=delimiter)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield Record(start, None, "\n".join(texts), f"csv: {exc}")
        else:
            if fields:
                yield Record(start, fields, "\n".join(texts))
        texts.clear()
        start = reader.line_num + 1
    for ln in broken:
        yield Record(ln.number, None, ln.text, ln.error)


def split_lines(path: Path, delimiter: str, encoding: str = "utf-8") -> Iterator[Record]:
    """Like :func:`iter_delimited` for formats without quoting (``u.data``, ``::`` files):
    a plain split of each non-blank line."""
    for ln in iter_lines(path, encoding):
        if ln.error is not None:
            yield Record(ln.number, None, ln.text, ln.error)
        elif ln.text.strip():
            yield Record(ln.number, ln.text.split(delimiter), ln.text)


# --------------------------------------------------------------------------- columnar batches
# Big interaction files (tens of millions of ratings) are parsed column-wise: Python only splits
# lines, Arrow casts whole columns. Each vectorised cast falls back to the per-value Python
# parser for a batch it cannot take whole, so both paths give the same values.

_MIN_US = -62_135_596_800_000_000  # datetime.min and datetime.max as epoch microseconds
_MAX_US = 253_402_300_799_999_999
_ORDINAL_BASE_US = int((ORDINAL_BASE - EPOCH).total_seconds()) * 1_000_000


def texts(values: list[str | None]) -> pa.Array:
    """Trimmed strings, NULL for blank or missing."""
    arr = pc.utf8_trim_whitespace(pa.array(values, pa.string()))
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def floats(values: pa.Array) -> pa.Array:
    """float64 from numeric text (NULL where :func:`parse_number` gives None)."""
    try:
        return pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([parse_number(v) for v in values.to_pylist()], pa.float64())


def timestamps(values: pa.Array) -> pa.Array:
    """timestamp[us] from epoch seconds/ms/us or ISO text, as :func:`parse_timestamp`."""
    try:
        f = pc.cast(values, pa.float64())
        a = pc.abs(f)
        micros = pc.if_else(
            pc.greater_equal(a, 1e14),
            f,
            pc.if_else(pc.greater_equal(a, 1e11), pc.multiply(f, 1e3), pc.multiply(f, 1e6)),
        )
        ints = pc.cast(pc.round(micros), pa.int64())  # NaN/inf/overflow raise: fall back
        lo, hi = pc.min_max(ints).values()
        if lo.is_valid and (lo.as_py() < _MIN_US or hi.as_py() > _MAX_US):
            raise OverflowError
        return ints.cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([parse_timestamp(v) for v in values.to_pylist()], pa.timestamp("us"))


def ordinal_times(positions: list[int]) -> pa.Array:
    """:func:`ordinal_time` for a column of positions."""
    us = pc.add(pc.multiply(pa.array(positions, pa.int64()), 1_000_000), _ORDINAL_BASE_US)
    return us.cast(pa.timestamp("us"))


Column: TypeAlias = pa.Array | list[Any] | str | bool | None


def batch_from_columns(target: str, n: int, columns: dict[str, Column]) -> pa.RecordBatch:
    """Staging batch of ``n`` rows from columns: an Arrow array, a list, or a constant for every
    row; staging columns not given are NULL."""
    schema = STAGING[target]
    extra = set(columns) - set(schema.names)
    if extra:
        raise KeyError(f"not a staging column of {target}: {sorted(extra)}")
    arrays = []
    for f in schema:
        v = columns.get(f.name)
        if v is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(v, pa.Array):
            arrays.append(v if v.type == f.type else v.cast(f.type))
        elif isinstance(v, list):
            arrays.append(pa.array(v, f.type))
        else:
            arrays.append(pa.repeat(pa.scalar(v, f.type), n))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# What a reader hands :func:`event_batches` per record: (user, item, value, time) texts,
# (user, item, position) for an ordinal event, or the error that makes the record unreadable.
Payload: TypeAlias = (
    tuple[str | None, str | None, str | None, str | None] | tuple[str, str, int] | str
)


def event_batches(
    rows: Iterable[tuple[int, str, Payload]],
    event_type: str,
    size: int = 50_000,
) -> Iterator[pa.RecordBatch]:
    """Staging batches from ``(line, raw, payload)``: a payload tuple is ``(user, item, value,
    time)`` or ``(user, item, position)`` for ordinal events; a payload string is the error
    that makes the record unreadable."""
    buf = EventColumns(event_type)
    errors: list[dict[str, object]] = []
    for line, raw, payload in rows:
        if isinstance(payload, str):
            errors.append(error_row("events", line, raw, payload))
            if len(errors) >= size:
                yield batch_from_rows("events", errors)
                errors = []
        elif len(payload) == 3:
            buf.add_ordinal(payload[0], payload[1], payload[2], line, raw)
        else:
            buf.add(payload[0], payload[1], payload[2], payload[3], line, raw)
        if len(buf) >= size:
            yield buf.batch()
    if len(buf):
        yield buf.batch()
    if errors:
        yield batch_from_rows("events", errors)


class EventColumns:
    """Buffers events column-wise; :meth:`batch` parses them in bulk.

    Add rows with :meth:`add` (raw texts) or :meth:`add_ordinal` (a position instead of a time);
    one buffer holds one kind. ``value`` is parsed from ``value_raw``, ``timestamp`` from
    ``timestamp_raw`` (epoch or ISO), ids are trimmed with blanks as NULL.
    """

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        self._clear()

    def _clear(self) -> None:
        self.user: list[str | None] = []
        self.item: list[str | None] = []
        self.value: list[str | None] = []
        self.time: list[str | None] = []
        self.position: list[int] = []
        self.line: list[int] = []
        self.raw: list[str] = []

    def __len__(self) -> int:
        return len(self.line)

    def add(
        self,
        user: str | None,
        item: str | None,
        value: str | None,
        time: str | None,
        line: int,
        raw: str,
    ) -> None:
        self.user.append(user)
        self.item.append(item)
        self.value.append(value)
        self.time.append(time)
        self.line.append(line)
        self.raw.append(raw)

    def add_ordinal(self, user: str, item: str, position: int, line: int, raw: str) -> None:
        self.user.append(user)
        self.item.append(item)
        self.position.append(position)
        self.line.append(line)
        self.raw.append(raw)

    def batch(self) -> pa.RecordBatch:
        """The buffered rows as one staging batch; the buffer is emptied."""
        n = len(self)
        cols: dict[str, Column] = {
            "user_id": texts(self.user),
            "item_id": texts(self.item),
            "event_type": self.event_type,
            "line": self.line,
            "raw": [clip(r) for r in self.raw],
        }
        if self.position:
            cols["timestamp"] = ordinal_times(self.position)
            cols["ts_ordinal"] = True
        else:
            value_raw = texts(self.value)
            time_raw = texts(self.time)
            cols.update(
                value=floats(value_raw),
                value_raw=value_raw,
                timestamp=timestamps(time_raw),
                timestamp_raw=time_raw,
                ts_ordinal=False,
            )
        self._clear()
        return batch_from_columns("events", n, cols)
