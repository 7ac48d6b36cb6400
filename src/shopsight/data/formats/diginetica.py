"""Diginetica (CIKM Cup 2016) session logs, ``;``-separated with a header.

- ``train-item-views.csv`` (``session_id;user_id;item_id;timeframe;eventdate``, or the camel-case
  ``sessionId;userId;itemId;timeframe;eventdate``) -> ``view`` events.
- ``train-purchases.csv`` (``sessionId;userId;timeframe;eventdate;ordernumber;itemId``) ->
  ``purchase`` events (no price in the file, so no value).

Most sessions are anonymous (``NA`` user): they get the session-scoped user id
``anon:<session_id>`` so every event has a user, and an anonymous shopper is never merged
across sessions. ``timeframe`` is the time since the session's first event in milliseconds and
``eventdate`` the session's day, so ``timestamp = eventdate 00:00 + timeframe ms`` (UTC; the
competition gives no time zone). ``session_id`` is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from shopsight.data.formats import ReadOptions, register
from shopsight.data.formats._util import (
    check_text_file,
    clip,
    error_row,
    head_lines,
    iter_delimited,
    parse_int,
    text_or_none,
)
from shopsight.data.staging import FormatError, StagedSource, batched, empty_row

ANONYMOUS = frozenset({"", "na", "nan", "null", "none"})
_VIEWS = ("session", "user", "item", "timeframe", "eventdate")
_PURCHASES = ("session", "user", "timeframe", "eventdate", "ordernumber", "item")


def _canon(header: list[str]) -> tuple[str, ...]:
    """``session_id``/``sessionId`` -> ``session`` etc., so both spellings match."""
    return tuple(
        h.strip().lstrip("\ufeff").lower().replace("_", "").removesuffix("id") for h in header
    )


def event_time(eventdate: str, timeframe: str) -> datetime | None:
    try:
        day = datetime.strptime(eventdate.strip(), "%Y-%m-%d")
    except ValueError:
        return None
    ms = parse_int(timeframe)
    if ms is None:
        return None
    try:
        return day + timedelta(milliseconds=ms)
    except OverflowError:
        return None


class Diginetica:
    name = "diginetica"
    description = "Diginetica / CIKM Cup 2016 item views and purchases (';'-separated)"
    priority = 10

    def _kind(self, head: bytes) -> str | None:
        first = head_lines(head, limit=1)
        if not first:
            return None
        cols = _canon(first[0].split(";"))
        return {_VIEWS: "view", _PURCHASES: "purchase"}.get(cols)

    def sniff(self, path: Path, head: bytes) -> bool:
        return self._kind(head) is not None

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        kind = self._kind(head)
        if kind is None:
            raise FormatError(
                f"{path}: not a Diginetica file (expected header "
                "session_id;user_id;item_id;timeframe;eventdate or "
                "sessionId;userId;timeframe;eventdate;ordernumber;itemId)"
            )
        notes: list[str] = []
        rows = self._rows(path, kind, notes)
        return [StagedSource("events", batches=batched("events", rows), notes=notes)]

    @staticmethod
    def _rows(path: Path, kind: str, notes: list[str]) -> Iterator[dict[str, object]]:
        cols = _VIEWS if kind == "view" else _PURCHASES
        at = {c: i for i, c in enumerate(cols)}
        anonymous = 0
        for rec in iter_delimited(path, ";"):
            if rec.line == 1:
                continue
            f = rec.fields
            if f is None:
                yield error_row("events", rec.line, rec.raw, rec.error or "unreadable record")
                continue
            if len(f) != len(cols):
                reason = (
                    f"expected {len(cols)} ';'-separated fields ({';'.join(cols)}), got {len(f)}"
                )
                yield error_row("events", rec.line, rec.raw, reason)
                continue
            session = text_or_none(f[at["session"]])
            user = text_or_none(f[at["user"]])
            if (user is None or user.lower() in ANONYMOUS) and session is not None:
                user = f"anon:{session}"
                anonymous += 1
            date, frame = f[at["eventdate"]], f[at["timeframe"]]
            row = empty_row("events")
            row.update(
                user_id=user,
                item_id=text_or_none(f[at["item"]]),
                event_type=kind,
                session_id=session,
                timestamp=event_time(date, frame),
                timestamp_raw=f"{date.strip()} +{frame.strip()}ms"
                if date.strip() or frame.strip()
                else None,
                ts_ordinal=False,
                line=rec.line,
                raw=clip(rec.raw),
            )
            yield row
        notes.append(f"{anonymous} event(s) without a user got the session id anon:<session_id>")


register(Diginetica())

__all__ = ["ANONYMOUS", "Diginetica", "event_time"]
