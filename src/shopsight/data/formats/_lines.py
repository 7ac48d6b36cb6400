"""Line streaming and Python-side field parsing shared by the readers that parse in Python."""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from shopsight.data.formats import ReadOptions
from shopsight.data.staging import STAGING, empty_row


def iter_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, error) for each line; gzip is detected by magic bytes.

    A truncated or corrupt gzip stream yields every line that decompressed, then one final
    entry whose error says where the stream broke; undecodable bytes are replaced, and the line
    is flagged, rather than aborting the file.
    """
    with path.open("rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    lineno = 0
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            for raw in fh:
                lineno += 1
                try:
                    yield lineno, raw.decode("utf-8").rstrip("\r\n"), None
                except UnicodeDecodeError as exc:
                    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    yield lineno, text, f"encoding: not valid UTF-8 ({exc.reason})"
    except (EOFError, OSError, zlib.error) as exc:
        yield lineno + 1, "", f"file: truncated or corrupt stream after line {lineno} ({exc})"


def parse_timestamp(value: object) -> datetime | None:
    """ISO-8601 (offset-aware converted to UTC, naive read as UTC) or epoch seconds/ms."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, bool):
        return None
    try:
        d = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        d = math.nan
        s = str(value).strip()
        if not s:
            return None
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt
    if math.isnan(d) or math.isinf(d) or abs(d) > 1e15:
        return None
    micros = int(d * 1000) if abs(d) >= 1e11 else int(d * 1_000_000)
    try:
        return datetime(1970, 1, 1) + __import__("datetime").timedelta(microseconds=micros)
    except OverflowError:
        return None


def parse_float(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    s = str(value).strip().replace("$", "").replace(",", "")
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        return None


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def python_row(
    target: str,
    obj: dict[str, object],
    cols: dict[str, str],
    options: ReadOptions,
    lineno: int,
    text: str,
) -> dict[str, object]:
    """Staging row from a parsed record, using the same rules as the SQL fast path."""
    row = empty_row(target)
    names = set(STAGING[target].names)

    def get(canon: str) -> object:
        if canon in cols:
            return obj.get(cols[canon])
        return options.defaults.get(canon)

    for canon in names - {"line", "raw", "error"}:
        if canon.endswith("_raw"):
            continue
        v = get(canon)
        if canon in ("timestamp", "first_seen", "last_seen", "signup_date"):
            row[canon] = parse_timestamp(v)
        elif canon in ("value", "price", "rating"):
            row[canon] = parse_float(v)
        elif canon == "helpful_votes":
            f = parse_float(v)
            row[canon] = int(f) if f is not None and not math.isnan(f) else None
        elif canon == "verified":
            row[canon] = v if isinstance(v, bool) else None
        elif canon == "ts_ordinal":
            row[canon] = False
        else:
            row[canon] = _as_text(v)
        raw_twin = f"{canon}_raw"
        if raw_twin in names:
            row[raw_twin] = _as_text(v)
    row["line"] = lineno
    row["raw"] = text[:2000]
    return row
